"""LesionCNN, the lightweight CNN of Mamun et al. 2025 (arXiv 2505.21597), and the ResNet50 baseline.

The paper states the budget (about 692K parameters and 30.04M multiply-accumulates) but not the
layers. LesionCNN meets that budget with MobileNetV2-style inverted residual blocks: the input is
reduced 4x by cheap layers before any wide layer, and most parameters sit in the low-resolution
stages, where each weight costs few multiply-accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from skin_plugin.constants import ACTIVATION, INPUT_CHANNELS, LEGACY_ACTIVATION, NUM_CLASSES


@dataclass(frozen=True)
class StageSpec:
    """A stage of inverted residual blocks: expansion ratio, output channels, blocks, first stride."""

    expansion: int
    channels: int
    blocks: int
    stride: int


LESIONCNN_STAGES: tuple[StageSpec, ...] = (
    StageSpec(expansion=2, channels=24, blocks=1, stride=1),   # 30x40
    StageSpec(expansion=3, channels=40, blocks=1, stride=2),   # 15x20
    StageSpec(expansion=4, channels=80, blocks=2, stride=2),   # 8x10
    StageSpec(expansion=6, channels=128, blocks=3, stride=2),  # 4x5: most of the parameters
)
STEM_CHANNELS = 16
HEAD_CHANNELS = 512
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU}
DEFAULT_ACTIVATION = ACTIVATION


def _conv_bn_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = DEFAULT_ACTIVATION) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(ACTIVATIONS[act](inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Pointwise expansion, 3x3 depthwise, linear pointwise projection; residual when shapes match."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int,
                 activation: str = DEFAULT_ACTIVATION) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            _conv_bn_act(cin, hidden, act=activation),
            _conv_bn_act(hidden, hidden, kernel=3, stride=stride, groups=hidden, act=activation),
            _conv_bn_act(hidden, cout, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class LesionCNN(nn.Module):
    """Lightweight 7-class dermoscopy classifier (<= 0.70M parameters, <= 30.1M MACs at 120x160)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2,
                 stages: tuple[StageSpec, ...] = LESIONCNN_STAGES,
                 activation: str = DEFAULT_ACTIVATION) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _conv_bn_act(INPUT_CHANNELS, STEM_CHANNELS, kernel=3, stride=2, act=activation),
            # Second 2x reduction kept cheap: depthwise then pointwise, no expansion.
            _conv_bn_act(STEM_CHANNELS, STEM_CHANNELS, kernel=3, stride=2, groups=STEM_CHANNELS,
                         act=activation),
        ]
        cin = STEM_CHANNELS
        for spec in stages:
            for i in range(spec.blocks):
                layers.append(InvertedResidual(cin, spec.channels, spec.expansion,
                                               spec.stride if i == 0 else 1, activation))
                cin = spec.channels
        layers.append(_conv_bn_act(cin, HEAD_CHANNELS, act=activation))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual block: blocks start as identity.
        for m in self.modules():
            if isinstance(m, InvertedResidual) and m.use_residual:
                nn.init.zeros_(m.block[-1][1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


LESIONCNN_NETWORK = "lesioncnn"
"""``network`` of every run and release before pretrained students (the from-scratch LesionCNN)."""
TRANSFER_NETWORK = "efficientnet-lite0"
"""The ImageNet transfer-learning comparison model (above the budget: compared, never shipped)."""


def network_names() -> tuple[str, ...]:
    """What a training config's ``network`` may name: LesionCNN, or a ProxylessNAS/MCUNet student."""
    from skin_plugin.proxyless import PROXYLESS_NETWORKS

    return (LESIONCNN_NETWORK, *PROXYLESS_NETWORKS, TRANSFER_NETWORK)


def build_network(network: str = LESIONCNN_NETWORK, activation: str = DEFAULT_ACTIVATION, dropout: float = 0.2,
                  pretrained: bool = False) -> nn.Module:
    """A 7-class network by name; ``pretrained`` loads ImageNet weights (students only)."""
    if network == LESIONCNN_NETWORK:
        if pretrained:
            raise ValueError("LesionCNN has no pretrained weights: it is trained from scratch")
        return LesionCNN(dropout=dropout, activation=activation)
    if network == TRANSFER_NETWORK:
        from skin_plugin.efficientnet_lite import EfficientNetLite0

        return EfficientNetLite0.pretrained(dropout=dropout) if pretrained else EfficientNetLite0(dropout=dropout)
    from skin_plugin.proxyless import ProxylessNet

    return ProxylessNet.from_name(network, dropout=dropout, pretrained=pretrained)


def load_network(path: str | Path, activation: str | None = None, network: str | None = None) -> nn.Module:
    """The network in eval mode with the weights in ``path``: a release's state dict
    (``skin_plugin/release/lesioncnn.pt``; pass the release's ``activation`` and ``network``) or a training
    checkpoint (``{"state_dict": ..., "config": {"activation": ..., "network": ...}}``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state.get("config")
    if activation is None:
        activation = DEFAULT_ACTIVATION if config is None else config.get("activation", LEGACY_ACTIVATION)
    if network is None:
        network = LESIONCNN_NETWORK if config is None else config.get("network", LESIONCNN_NETWORK)
    model = build_network(network, activation)
    model.load_state_dict(state.get("state_dict", state))
    return model.eval()


def load_lesioncnn(path: str | Path, activation: str | None = None) -> nn.Module:
    """``load_network`` for from-scratch LesionCNN weights (releases and checkpoints before students)."""
    return load_network(path, activation, LESIONCNN_NETWORK)


def resnet50_baseline(num_classes: int = NUM_CLASSES) -> nn.Module:
    """The paper's comparison model: MONAI's 2D ResNet50 (randomly initialised; no downloads).

    ``conv1_t_stride=2`` gives the standard ImageNet ResNet50 stem (MONAI's default stride is 1).
    """
    from monai.networks.nets import resnet50

    return resnet50(spatial_dims=2, n_input_channels=INPUT_CHANNELS, num_classes=num_classes,
                    conv1_t_stride=2)
