"""The review flag: which scored images a clinician should look at first, and why (numpy only).

An image is flagged for review for any of these reasons, in report order:

- ``malignancy_score``: its malignancy score, the calibrated probability of a malignant class (the sum over
  the classes with ``LesionClass.malignant``), is at or above the release's operating point, a threshold
  chosen on validation for a target sensitivity (``training.calibrate.fit_malignant_threshold``);
- ``malignant_class``: its predicted class is malignant;
- ``melanoma_probability``: its melanoma probability is above ``ReviewThresholds.melanoma``;
- ``low_confidence``: its top class probability is below ``ReviewThresholds.low_confidence``.

A release packaged before operating points existed has no malignancy threshold: its images are flagged for
the other three reasons only (``ReviewThresholds.malignancy`` is None and reports say so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from skin_plugin.constants import CLASS_CODES, LESION_CLASSES, MELANOMA_INDEX

MALIGNANT_CODES: tuple[str, ...] = tuple(c.code for c in LESION_CLASSES if c.malignant)
MALIGNANT_INDICES: tuple[int, ...] = tuple(i for i, c in enumerate(LESION_CLASSES) if c.malignant)
REVIEW_REASONS: tuple[str, ...] = ("malignancy_score", "malignant_class", "melanoma_probability",
                                   "low_confidence")
DEFAULT_TARGET_SENSITIVITY = 0.95
"""Share of the malignant validation images the malignancy threshold is chosen to flag (``skin-plugin
package --target-sensitivity``)."""


def malignancy_scores(probabilities: np.ndarray) -> np.ndarray:
    """Malignancy score per row of calibrated class probabilities (N, C): the sum over malignant classes."""
    return np.asarray(probabilities, dtype=np.float64)[:, list(MALIGNANT_INDICES)].sum(axis=1)


def is_malignant(labels: np.ndarray) -> np.ndarray:
    """Whether each class index in ``labels`` is a malignant class."""
    return np.isin(np.asarray(labels), MALIGNANT_INDICES)


@dataclass(frozen=True)
class ReviewThresholds:
    """When a scored image is flagged for review (see the module docstring)."""

    malignancy: float | None = None
    """Flag if the malignancy score is at or above this: the release's operating point (None: the release
    records none)."""
    target_sensitivity: float | None = None
    """The share of malignant validation images ``malignancy`` was chosen to flag."""
    melanoma: float = 0.3
    """Flag if the melanoma probability is above this."""
    low_confidence: float = 0.5
    """Flag if the highest class probability is below this."""

    def __post_init__(self) -> None:
        values = [self.melanoma, self.low_confidence] + [
            v for v in (self.malignancy, self.target_sensitivity) if v is not None]
        if not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"thresholds must lie in [0, 1]: {self}")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def reason_masks(probabilities: np.ndarray, labels: np.ndarray, thresholds: ReviewThresholds
                 ) -> dict[str, np.ndarray]:
    """Per reason (``REVIEW_REASONS``), which rows of (N, C) probabilities with predicted class indices
    ``labels`` it flags."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(CLASS_CODES))
    return {
        "malignancy_score": (np.zeros(len(p), bool) if thresholds.malignancy is None
                             else malignancy_scores(p) >= thresholds.malignancy),
        "malignant_class": is_malignant(np.asarray(labels).reshape(-1)),
        "melanoma_probability": p[:, MELANOMA_INDEX] > thresholds.melanoma,
        "low_confidence": p.max(axis=1, initial=0.0) < thresholds.low_confidence,
    }


def review_flags(probabilities: np.ndarray, labels: np.ndarray, thresholds: ReviewThresholds) -> np.ndarray:
    """Whether each row is flagged for any reason."""
    return np.logical_or.reduce(list(reason_masks(probabilities, labels, thresholds).values()))


def review_reasons(probabilities: Mapping[str, float], label: str, thresholds: ReviewThresholds) -> list[str]:
    """The reasons one image (class code -> probability, predicted class code) is flagged; empty if none."""
    row = np.array([[float(probabilities[c]) for c in CLASS_CODES]])
    masks = reason_masks(row, np.array([CLASS_CODES.index(label)]), thresholds)
    return [reason for reason in REVIEW_REASONS if masks[reason][0]]


def malignancy_score(probabilities: Mapping[str, float]) -> float:
    """The malignancy score of one image (class code -> calibrated probability), at most 1."""
    return min(1.0, float(sum(float(probabilities[c]) for c in MALIGNANT_CODES)))
