"""The result of scoring a batch: calibrated probabilities and decided labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray
    """Calibrated class probabilities, (N, C)."""
    labels: np.ndarray
    """Predicted class index per image (the release's decision rule), (N,)."""
