"""``skin-plugin compare``: score candidate LesionCNN weights on the validation split, as training does.

A candidate replaces the shipped release only if it scores better here: the mean of accuracy and balanced
accuracy under the decision rule calibrated on validation (``training.calibrate.calibrated_scores``, the
checkpoint criterion of training). The test split is never read. With several candidates, the mean of
their logits is scored too, to show whether an ensemble (e.g. as a distillation teacher) would add anything;
``--flip-tta`` shows what test-time augmentation would add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from skin_plugin.torch_classifier import predict_logits
from training.calibrate import calibrated_scores, log_class_prior
from training.data import read_metadata, read_split
from training.evaluate import load_evaluation_set
from training.train import load_frozen_lesioncnn


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's validation figures under its calibrated decision rule."""

    name: str
    accuracy: float
    balanced_accuracy: float
    score: float
    """Mean of accuracy and balanced accuracy: the adoption criterion."""
    decision_weight: float

    def to_dict(self) -> dict:
        return asdict(self)


def _score(name: str, logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray) -> CandidateScore:
    s = calibrated_scores(logits, labels, log_prior)
    return CandidateScore(name, s["val_cal_accuracy"], s["val_cal_balanced_accuracy"], s["val_score"],
                          s["val_decision_weight"])


def compare_candidates(weights: list[Path], split_file: Path, data_dir: Path,
                       flip_tta: bool = False) -> list[CandidateScore]:
    """Validation scores of each candidate (release weights or run checkpoints), then of their mean logits;
    ``flip_tta`` scores the mean logits of the four flips of each image instead (4x the compute)."""
    split = read_split(split_file)
    records = read_metadata(data_dir / "metadata.csv")
    log_prior = log_class_prior(np.array([r.label for r in records if split.get(r.image_id) == "train"]))
    val = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images", split_file, "val")
    if val.skipped:
        raise ValueError(f"{len(val.skipped)} validation image(s) unreadable: scores would not be comparable")
    images = torch.from_numpy(val.images).permute(0, 3, 1, 2)
    labels = np.array([r.label for r in val.records])
    all_logits, scores = [], []
    for path in weights:
        logits = predict_logits(load_frozen_lesioncnn(path), images, flip_tta=flip_tta).numpy()
        all_logits.append(logits)
        scores.append(_score(f"{path} (flip TTA)" if flip_tta else str(path), logits, labels, log_prior))
    if len(weights) > 1:
        scores.append(_score(f"mean of {len(weights)} candidates", np.mean(all_logits, axis=0), labels,
                             log_prior))
    return scores
