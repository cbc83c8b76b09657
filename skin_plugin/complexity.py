"""Parameter and multiply-accumulate counts, measured with fvcore's standard counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skin_plugin.constants import INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_shape: tuple[int, int, int]


def count_complexity(model: nn.Module,
                     input_shape: tuple[int, int, int] = (INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH),
                     ) -> Complexity:
    """Count trainable parameters and per-image MACs (fvcore counts one flop per MAC)."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, *input_shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    macs = int(analysis.total())
    model.train(was_training)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Complexity(params=params, macs=macs, input_shape=input_shape)
