"""Refit releases: a recipe chosen on validation, trained again on train + validation.

A refit has no validation split of its own, so its decision rule (temperature, prior share, decision
weight) and its validation figures come from the train-only run of the same recipe: the *recipe
validation*. It is kept in the refit release as ``recipe_validation.json`` and checked on the way in:
same split, same recipe, and a train-only source.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from skin_plugin.release import MANIFEST_NAME, ModelRelease, fitted_splits, sha256_file
from training.train import TrainConfig

RECIPE_VALIDATION_NAME = "recipe_validation.json"
RECIPE_KEYS = ("seed", "max_epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing",
               "sampling_power", "logit_adjust", "ema_decay", "dropout", "cutmix_prob", "cutmix_alpha", "teacher",
               "distill_weight", "distill_temperature", "activation", "network", "pretrained", "extra_sources",
               "aspect_jitter", "distill_views")
"""Training settings that make a recipe: a refit must share them with its train-only source."""
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def recipe_differences(a: dict, b: dict) -> list[str]:
    """The ``RECIPE_KEYS`` on which two training configs differ; a setting a config lacks (older runs did
    not record every one) counts as its ``TrainConfig`` default."""
    return [k for k in RECIPE_KEYS if a.get(k, _DEFAULTS[k]) != b.get(k, _DEFAULTS[k])]


def is_refit(training: dict) -> bool:
    """Whether a training config (a run's or a release's) fitted the weights on validation too."""
    return "val" in fitted_splits(training)


@dataclass(frozen=True)
class RecipeValidation:
    """The train-only run of a recipe: its identity, training config, calibration and validation figures."""

    name: str
    version: str
    weights_sha256: str
    split_sha256: str
    """sha256 of its ``split.csv``: the refit must use the same split."""
    training: dict
    calibration: dict
    metrics_val: dict

    @classmethod
    def from_release(cls, release: ModelRelease) -> RecipeValidation:
        if is_refit(release.manifest["training"]):
            raise ValueError(f"{release.directory}: {release.name} {release.version} is itself a refit; "
                             "the calibration must come from a train-only release")
        metrics = json.loads((release.directory / "metrics.json").read_text())
        m = release.manifest
        return cls(release.name, release.version, m["weights"]["sha256"],
                   sha256_file(release.directory / "split.csv"), m["training"], m["calibration"], metrics["val"])

    @classmethod
    def load(cls, path: Path) -> RecipeValidation:
        """From a train-only release (its folder or ``model.json``) or a refit's ``recipe_validation.json``."""
        path = Path(path)
        if path.name == RECIPE_VALIDATION_NAME:
            return cls(**json.loads(path.read_text()))
        return cls.from_release(ModelRelease.load(path if path.suffix == ".json" else path / MANIFEST_NAME))

    def check_refit(self, training: dict, split_file: Path) -> None:
        """Raise unless ``training`` (a refit's config) is this run's recipe, on the same split, with more data."""
        if sha256_file(split_file) != self.split_sha256:
            raise ValueError(f"{split_file} is not the split {self.name} {self.version} was trained and "
                             "calibrated on")
        differ = recipe_differences(self.training, training)
        if differ:
            raise ValueError(f"the refit's recipe differs from {self.name} {self.version}'s in "
                             + ", ".join(f"{k} ({training.get(k)!r} vs {self.training.get(k)!r})"
                                         for k in differ)
                             + ": its calibration would not carry over")

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.weights_sha256[:12]}…)"
