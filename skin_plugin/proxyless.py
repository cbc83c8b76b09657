"""ProxylessNAS / MCUNet networks built from their published configs, for ImageNet-pretrained students.

``../shared/weights/imagenet`` holds plain state dicts with a ``ProxylessNASNets`` config beside each
(first conv, mobile inverted residual blocks, feature mix layer, classifier). ``ProxylessNet`` is written
from that format so that the state dicts load strictly (no missing or unexpected keys); the ImageNet head
is then replaced by a 7-class one. Licences and sources: ``../shared/weights/README.md`` (MCUNet, MIT).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from skin_plugin.constants import NUM_CLASSES

PRETRAINED_DIR = Path(__file__).resolve().parents[2] / "shared" / "weights" / "imagenet"
"""Where the ImageNet state dicts and configs lie (read-only data beside the repo; never downloaded)."""
PROXYLESS_NETWORKS = ("proxyless-w0.3-r176", "proxyless-w0.25-r112", "mcunet-256kb-1mb", "mcunet-320kb-1mb")
"""Network names accepted by ``ProxylessNet.from_name``: ``<name>_imagenet.json/.pth`` in ``PRETRAINED_DIR``."""


class ConvBNAct(nn.Module):
    """``ConvLayer`` of the config format: convolution, batch norm, optional ReLU6 (keys conv/bn)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBInvertedConv(nn.Module):
    """``MBInvertedConvLayer``: optional 1x1 expansion, kxk depthwise, linear 1x1 projection."""

    def __init__(self, spec: dict, bn_eps: float) -> None:
        super().__init__()
        cin, cout, k, s = spec["in_channels"], spec["out_channels"], spec["kernel_size"], spec["stride"]
        hidden = spec.get("mid_channels") or round(cin * spec["expand_ratio"])
        self.inverted_bottleneck = (ConvBNAct(cin, hidden, 1, bn_eps=bn_eps)
                                    if spec["expand_ratio"] != 1 else None)
        self.depth_conv = ConvBNAct(hidden, hidden, k, s, groups=hidden, bn_eps=bn_eps)
        self.point_linear = ConvBNAct(hidden, cout, 1, act=False, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class MobileInvertedResidualBlock(nn.Module):
    """A block: its conv (``None`` for the searched-away ``ZeroLayer``) plus an identity shortcut if any."""

    def __init__(self, spec: dict, bn_eps: float) -> None:
        super().__init__()
        conv = spec["mobile_inverted_conv"]
        self.mobile_inverted_conv = None if conv["name"] == "ZeroLayer" else MBInvertedConv(conv, bn_eps)
        self.has_shortcut = spec.get("shortcut") is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mobile_inverted_conv is None:
            return x  # ZeroLayer + identity shortcut
        out = self.mobile_inverted_conv(x)
        return x + out if self.has_shortcut else out


class LinearHead(nn.Module):
    """``LinearLayer`` of the config format (key ``linear``), with dropout before it."""

    def __init__(self, features: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))


def feature_channels(config: dict) -> int:
    """Channels of the pooled features: the feature mix layer's, else the last block's (MCUNet has none)."""
    mix = config.get("feature_mix_layer")
    return int(mix["out_channels"] if mix else config["blocks"][-1]["mobile_inverted_conv"]["out_channels"])


class ProxylessNet(nn.Module):
    """A ProxylessNAS/MCUNet network from its config: stem, blocks, feature mix, global pool, classifier."""

    def __init__(self, config: dict, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        eps = float(config.get("bn", {}).get("eps", 1e-3))
        first, mix = config["first_conv"], config["feature_mix_layer"]
        self.first_conv = ConvBNAct(first["in_channels"], first["out_channels"], first["kernel_size"],
                                    first["stride"], bn_eps=eps)
        self.blocks = nn.ModuleList(MobileInvertedResidualBlock(b, eps) for b in config["blocks"])
        self.feature_mix_layer = (None if mix is None else
                                  ConvBNAct(mix["in_channels"], mix["out_channels"], mix["kernel_size"], bn_eps=eps))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = LinearHead(feature_channels(config), num_classes, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        return x if self.feature_mix_layer is None else self.feature_mix_layer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))

    @classmethod
    def from_name(cls, name: str, num_classes: int = NUM_CLASSES, dropout: float = 0.2,
                  pretrained: bool = False, weights_dir: Path = PRETRAINED_DIR) -> ProxylessNet:
        """The network ``name`` with a ``num_classes`` head; ``pretrained`` loads its ImageNet weights
        strictly (every key must match) into the body; the new head starts from small random weights."""
        if name not in PROXYLESS_NETWORKS:
            raise ValueError(f"network {name!r}: choose one of {', '.join(PROXYLESS_NETWORKS)}")
        config = json.loads((weights_dir / f"{name}_imagenet.json").read_text())
        if not pretrained:
            return cls(config, num_classes, dropout)
        imagenet = cls(config, config["classifier"]["out_features"], dropout)
        state = torch.load(weights_dir / f"{name}_imagenet.pth", map_location="cpu", weights_only=True)
        imagenet.load_state_dict(state.get("state_dict", state), strict=True)
        imagenet.classifier = LinearHead(feature_channels(config), num_classes, dropout)
        nn.init.normal_(imagenet.classifier.linear.weight, 0, 0.01)
        nn.init.zeros_(imagenet.classifier.linear.bias)
        return imagenet
