"""``skin-plugin leakage``: how much an image-level split inflates the figures of one training recipe.

HAM10000 holds several photos of many lesions. A split that assigns images one by one puts photos of a
validation or test lesion into training too, so the network is scored partly on lesions it has seen.
Every release is split by lesion (``training.data.make_split``). This study scores two runs of the same
recipe, one per split level, each on its own validation and test splits under the decision rule
calibrated on its own validation split, and breaks the image-level run's figures down by whether another
photo of the lesion was trained on. It explains part of the distance to figures published without
saying how the data were split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from skin_plugin.constants import MELANOMA_INDEX
from skin_plugin.release import MANIFEST_NAME
from skin_plugin.torch_classifier import predict_logits
from training.calibrate import fit_calibration, log_class_prior
from training.data import DEFAULT_DATA_DIR, read_split, split_level
from training.evaluate import EvaluationSet, load_evaluation_set
from training.metrics import balanced_accuracy, binary_auc
from training.refit import recipe_differences
from training.train import load_frozen_lesioncnn

LEAKAGE_NAME = "split_leakage.json"
SCORED_SPLITS = ("val", "test")
SUBSETS = ("all", "seen_lesions", "unseen_lesions")


@dataclass(frozen=True)
class SubsetScore:
    """Figures of one subset of a split under the run's calibrated decision rule."""

    n_images: int
    accuracy: float
    balanced_accuracy: float
    mel_auc: float | None


@dataclass(frozen=True)
class SplitScore:
    split: str
    all: SubsetScore
    seen_lesions: SubsetScore | None
    """Images of lesions with another photo in the training split (none in a lesion-level split)."""
    unseen_lesions: SubsetScore | None


@dataclass(frozen=True)
class RunScore:
    run: str
    split_level: str
    epoch: int
    scores: tuple[SplitScore, ...]


def run_training_config(run_dir: Path) -> tuple[dict, int]:
    """A run's or release's training config and the epoch its weights come from."""
    manifest = run_dir / MANIFEST_NAME
    if manifest.exists():
        training = json.loads(manifest.read_text())["training"]
        return training, int(training["best_epoch"])
    ckpt = torch.load(run_dir / "lesioncnn.pt", map_location="cpu", weights_only=False)
    return ckpt["config"], int(ckpt["epoch"])


def _subset(labels: np.ndarray, pred: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> SubsetScore | None:
    if not mask.any():
        return None
    y, p = labels[mask], pred[mask]
    return SubsetScore(int(mask.sum()), float(np.mean(y == p)), balanced_accuracy(y, p),
                       binary_auc(y == MELANOMA_INDEX, probs[mask, MELANOMA_INDEX]))


def score_run(run_dir: Path, dataset: EvaluationSet) -> RunScore:
    """Calibrate the run on its validation split, then score validation and test, split by lesion seen.

    ``dataset`` holds every image of the study, decoded once for both runs."""
    training, epoch = run_training_config(run_dir)
    split = read_split(run_dir / "split.csv")
    records = dataset.records
    train_records = [r for r in records if split[r.image_id] == "train"]
    train_lesions = {r.lesion_id for r in train_records}
    log_prior = log_class_prior(np.array([r.label for r in train_records]))
    model = load_frozen_lesioncnn(run_dir / "lesioncnn.pt")
    labels = np.array([r.label for r in records])
    rows, logits = {}, {}
    for name in SCORED_SPLITS:
        rows[name] = np.array([i for i, r in enumerate(records) if split[r.image_id] == name])
        images = torch.from_numpy(dataset.images[rows[name]]).permute(0, 3, 1, 2)
        logits[name] = predict_logits(model, images).numpy()
    cal = fit_calibration(logits["val"], labels[rows["val"]], log_prior)
    scores = []
    for name in SCORED_SPLITS:
        probs = cal.probabilities(logits[name])
        pred = cal.decide(probs)
        seen = np.array([records[i].lesion_id in train_lesions for i in rows[name]])
        y = labels[rows[name]]
        scores.append(SplitScore(name, _subset(y, pred, probs, np.ones_like(seen)),
                                 _subset(y, pred, probs, seen), _subset(y, pred, probs, ~seen)))
    return RunScore(str(run_dir), split_level(training), epoch, tuple(scores))


def split_leakage(lesion_run: Path, image_run: Path, data_dir: Path = DEFAULT_DATA_DIR) -> dict:
    """Score both runs; refuse runs that are not one recipe on the two split levels."""
    lesion_cfg, _ = run_training_config(lesion_run)
    image_cfg, _ = run_training_config(image_run)
    levels = (split_level(lesion_cfg), split_level(image_cfg))
    if levels != ("lesion", "image"):
        raise ValueError(f"expected a lesion-level and an image-level run, got {levels[0]} and {levels[1]}")
    differ = recipe_differences(lesion_cfg, image_cfg)
    if differ:
        raise ValueError(f"the runs' recipes differ in {', '.join(differ)}: the study would not isolate the split")
    dataset = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images")
    if dataset.skipped:
        raise ValueError(f"{len(dataset.skipped)} image(s) unreadable: the two runs would not be scored alike")
    runs = [score_run(lesion_run, dataset), score_run(image_run, dataset)]
    inflation = {split: {k: getattr(image.all, k) - getattr(lesion.all, k) for k in ("accuracy", "balanced_accuracy")}
                 for split, lesion, image in zip(SCORED_SPLITS, runs[0].scores, runs[1].scores, strict=True)}
    return {"runs": [asdict(r) for r in runs], "inflation": inflation}


def study_rows(study: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(split level, scored split, subset key, figures) of every subset worth a row: all images of each
    held-out split, and for the image-level run also its seen and unseen lesions."""
    for run in study["runs"]:
        for score in run["scores"]:
            for subset in SUBSETS:
                if score[subset] is not None and (subset == "all" or run["split_level"] == "image"):
                    yield run["split_level"], score["split"], subset, score[subset]


def plot_leakage(study: dict, path: Path) -> None:
    """Bars of accuracy and balanced accuracy per split level and scored split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, acc, bal = [], [], []
    for run in study["runs"]:
        for score in run["scores"]:
            labels.append(f"{run['split_level']}-level\n{score['split']}")
            acc.append(score["all"]["accuracy"])
            bal.append(score["all"]["balanced_accuracy"])
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for offset, values, name in ((-0.2, acc, "accuracy"), (0.2, bal, "balanced accuracy")):
        bars = ax.bar(x + offset, values, width=0.4, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_title("One recipe, split by lesion vs by image")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
