"""Calibrated probabilities and the decision rule, shared by every inference backend (numpy only).

The network is trained with square-root class-balanced sampling, so its raw logits favour rare
classes. ``Calibration`` turns logits into probabilities at the training prevalence (temperature plus
a fitted share of the log class prior, both fitted on the validation split) and then applies the
decision rule: ``argmax(log p - decision_weight * log prior)``, where ``decision_weight`` (chosen on
validation) trades overall accuracy (0) for balanced accuracy (1). It also carries the release's review
operating point (``malignant_threshold``, see ``skin_plugin.review``), chosen on the same validation split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from skin_plugin.review import ReviewThresholds


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
    malignant_threshold: float | None = None
    """Flag an image for review when its malignancy score is at or above this; chosen on validation for
    ``target_sensitivity``. None in releases packaged before operating points existed."""
    target_sensitivity: float | None = None
    """Share of the malignant validation images ``malignant_threshold`` flags by construction."""

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

    @property
    def review(self) -> ReviewThresholds:
        """The review flag's thresholds at this release's operating point (product defaults for the rest)."""
        return ReviewThresholds(malignancy=self.malignant_threshold, target_sensitivity=self.target_sensitivity)

    def with_operating_point(self, malignant_threshold: float, target_sensitivity: float) -> Calibration:
        """The same calibration and decision rule with a review operating point."""
        return replace(self, malignant_threshold=float(malignant_threshold),
                       target_sensitivity=float(target_sensitivity))

    def to_dict(self) -> dict:
        """JSON-ready; the operating point keys are left out when there is none (as in older manifests)."""
        d = {**asdict(self), "log_prior": list(self.log_prior)}
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """From a manifest's ``calibration``; one without an operating point loads with None for it."""
        def optional(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(temperature=float(d["temperature"]), prior_weight=float(d["prior_weight"]),
                   log_prior=tuple(float(v) for v in d["log_prior"]),
                   decision_weight=float(d["decision_weight"]),
                   malignant_threshold=optional("malignant_threshold"),
                   target_sensitivity=optional("target_sensitivity"))

    @classmethod
    def identity(cls, num_classes: int) -> Calibration:
        """No calibration: plain softmax and argmax."""
        return cls(1.0, 0.0, (0.0,) * num_classes, 0.0)
