"""Calibrated probabilities and the decision rule, shared by every inference backend (numpy only).

The network is trained with square-root class-balanced sampling, so its raw logits favour rare
classes. ``Calibration`` turns logits into probabilities at the training prevalence (temperature plus
a fitted share of the log class prior, both fitted on the validation split) and then applies the
decision rule: ``argmax(log p - decision_weight * log prior)``, where ``decision_weight`` (chosen on
validation) trades overall accuracy (0) for balanced accuracy (1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    prior_weight: float
    """Share of the log class prior added to the tempered logits."""
    log_prior: tuple[float, ...]
    """Log class frequencies of the training split, in class order."""
    decision_weight: float

    def log_probabilities(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        return _log_softmax(z + self.prior_weight * np.asarray(self.log_prior))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, (N, C)."""
        return np.exp(self.log_probabilities(logits))

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Predicted class index per row of calibrated probabilities."""
        log_p = np.log(np.clip(probabilities, 1e-12, None))
        score = log_p - self.decision_weight * np.asarray(self.log_prior)
        return score.argmax(axis=1)

    def to_dict(self) -> dict:
        return {**asdict(self), "log_prior": list(self.log_prior)}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(temperature=float(d["temperature"]), prior_weight=float(d["prior_weight"]),
                   log_prior=tuple(float(v) for v in d["log_prior"]),
                   decision_weight=float(d["decision_weight"]))

    @classmethod
    def identity(cls, num_classes: int) -> Calibration:
        """No calibration: plain softmax and argmax."""
        return cls(1.0, 0.0, (0.0,) * num_classes, 0.0)
