"""Turn a training run into a release: weights, calibration, manifest, metrics, plots, model card.

The review operating point (``Calibration.malignant_threshold``) is chosen on validation like the rest of
the decision rule, from any network's calibrated validation probabilities: a train-only run's own, or for a
refit its train-only source's. ``choose_operating_point`` does it again for an existing release.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from skin_plugin.calibration import Calibration
from skin_plugin.complexity import count_complexity
from skin_plugin.constants import (
    CHANNEL_MEAN,
    CHANNEL_STD,
    CLASS_CODES,
    INPUT_CHANNELS,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    LEGACY_ACTIVATION,
    MODEL_NAME,
    MODEL_VERSION,
    NUM_CLASSES,
    RESIZE_MODE,
)
from skin_plugin.networks import LESIONCNN_NETWORK, build_network, resnet50_baseline
from skin_plugin.release import MANIFEST_NAME, WEIGHTS_NAME, ModelRelease, sha256_file
from skin_plugin.review import DEFAULT_TARGET_SENSITIVITY
from skin_plugin.torch_classifier import TorchClassifier
from training.calibrate import fit_calibration, log_class_prior, with_operating_point
from training.data import DEFAULT_DATA_DIR, read_metadata, read_split, split_level
from training.evaluate import evaluate, load_evaluation_set
from training.leakage import LEAKAGE_NAME
from training.model_card import write_model_card
from training.refit import RECIPE_VALIDATION_NAME, RecipeValidation, is_refit

RUN_FILES = ("split.csv", "history.json", "training_curves.png")
EXTERNAL_SOURCES = ("PH2",)
"""Image sets never trained on whose ``metrics_<name>.json`` in a release the model card shows."""
COMPARISON_NAME = "comparison.json"
"""The release's lever / transfer-learning comparison (``training.comparison``), shown by the card."""


def _complexities(config: dict) -> dict:
    lesion = count_complexity(build_network(config.get("network", LESIONCNN_NETWORK),
                                            config.get("activation", LEGACY_ACTIVATION)))
    resnet = resnet50_baseline()
    at_input = count_complexity(resnet)
    at_224 = count_complexity(resnet, (INPUT_CHANNELS, 224, 224))
    return {
        "lesioncnn": {"params": lesion.params, "macs": lesion.macs},
        "resnet50": {"params": at_input.params, "macs": at_input.macs, "macs_224x224": at_224.macs},
    }


def _architecture(config: dict) -> str:
    """One line naming the network of a training config."""
    network = config.get("network", LESIONCNN_NETWORK)
    if network == LESIONCNN_NETWORK:
        return "LesionCNN (inverted residual CNN within the budget of arXiv 2505.21597)"
    start = "ImageNet-pretrained (MCUNet/ProxylessNAS weights, MIT)" if config.get("pretrained") else "from scratch"
    return f"{network} (ProxylessNAS/MCUNet inverted residual network within the same budget), {start}"


def package_release(run_dir: Path, out_dir: Path, data_dir: Path = DEFAULT_DATA_DIR,
                    bootstrap: int = 1000, calibration_from: Path | None = None,
                    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> ModelRelease:
    """Calibrate on validation, evaluate validation and test, write the release into ``out_dir``.

    A refit (trained on train + validation) is not calibrated or scored on validation: it takes the
    decision rule and validation figures of ``calibration_from``, the train-only release of its recipe,
    and is scored on test alone. The review operating point flags ``target_sensitivity`` of the malignant
    validation images (``training.calibrate.fit_malignant_threshold``).
    """
    ckpt = torch.load(run_dir / "lesioncnn.pt", map_location="cpu", weights_only=False)
    if split_level(ckpt["config"]) != "lesion":
        raise ValueError(f"{run_dir} was trained on an image-level split: images of its validation and test "
                         "lesions were trained on, so its figures would be inflated; it cannot be released")
    recipe = None
    if is_refit(ckpt["config"]):
        if calibration_from is None:
            raise ValueError(f"{run_dir} was trained on validation too: give calibration_from, the "
                             "train-only release of the same recipe")
        recipe = RecipeValidation.load(calibration_from)  # read before out_dir may be overwritten
        recipe.check_refit(ckpt["config"], run_dir / "split.csv")
        recipe = recipe_with_operating_point(recipe, calibration_from, data_dir, target_sensitivity, bootstrap)
        if ckpt["epoch"] != ckpt["config"]["max_epochs"]:
            raise ValueError(f"{run_dir} stopped at epoch {ckpt['epoch']} of {ckpt['config']['max_epochs']} "
                             "(time budget?): a refit must run its recipe's whole schedule")
    elif calibration_from is not None:
        raise ValueError(f"{run_dir} was trained on the training split only: it is calibrated on "
                         "validation itself, calibration_from is for refits")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    torch.save(ckpt["state_dict"], weights)
    if run_dir.resolve() != out_dir.resolve():
        for name in RUN_FILES:
            shutil.copy2(run_dir / name, out_dir / name)
    split_file = out_dir / "split.csv"
    complexity = _complexities(ckpt["config"])
    manifest = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "architecture": _architecture(ckpt["config"]),
        "activation": ckpt["config"].get("activation", LEGACY_ACTIVATION),
        "classes": list(CLASS_CODES),
        "input": {"channels": INPUT_CHANNELS, "height": INPUT_HEIGHT, "width": INPUT_WIDTH,
                  "resize_mode": RESIZE_MODE, "mean": list(CHANNEL_MEAN), "std": list(CHANNEL_STD),
                  "scale": "0..255 -> 0..1, then (x - mean) / std"},
        "params": complexity["lesioncnn"]["params"],
        "macs": complexity["lesioncnn"]["macs"],
        "baseline": {"resnet50": complexity["resnet50"]},
        "weights": {"file": WEIGHTS_NAME, "sha256": sha256_file(weights)},
        "calibration": Calibration.identity(NUM_CLASSES).to_dict(),
        "training": {**ckpt["config"], "best_epoch": ckpt["epoch"]},
        "license": "CC BY-NC-SA 4.0 (derived from HAM10000, Tschandl et al. 2018)",
        "intended_use": "Research and engineering evaluation only. Not for clinical use.",
    }
    # Figures of another model: the studies and checks are made again for this one.
    for stale in (RECIPE_VALIDATION_NAME, "metrics_val.json", "metrics_val.confusion.png",
                  "metrics_val.malignant_roc.png", LEAKAGE_NAME, "split_leakage.png", COMPARISON_NAME,
                  *(f"metrics_{s.lower()}{ext}" for s in EXTERNAL_SOURCES
                    for ext in (".json", ".confusion.png", ".malignant_roc.png"))):
        (out_dir / stale).unlink(missing_ok=True)
    if recipe is not None:
        manifest["calibration"] = recipe.calibration
        manifest["training"]["calibration_from"] = recipe.label
        recipe.write(out_dir / RECIPE_VALIDATION_NAME)
    else:
        # Calibration is fitted on validation logits of the uncalibrated release.
        (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        split = read_split(split_file)
        train_labels = [r.label for r in read_metadata(data_dir / "metadata.csv") if split[r.image_id] == "train"]
        log_prior = log_class_prior(np.array(train_labels))
        val = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images", split_file, "val")
        logits = TorchClassifier(ModelRelease.load(out_dir)).logits(val.images)
        val_labels = np.array([r.label for r in val.records])
        calibration = fit_calibration(logits, val_labels, log_prior)
        manifest["calibration"] = with_operating_point(calibration, logits, val_labels, target_sensitivity).to_dict()
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return score_release(out_dir, data_dir, bootstrap)


def score_release(release_dir: Path, data_dir: Path = DEFAULT_DATA_DIR, bootstrap: int = 1000) -> ModelRelease:
    """Evaluate the release on its held-out splits (``metrics.json``, ``metrics_<split>.*``), write its card."""
    release = ModelRelease.load(release_dir)
    classifier = TorchClassifier(release)
    metrics = {}
    for name in release.held_out_splits:
        metrics[name] = evaluate(data_dir / "metadata.csv", data_dir / "images", classifier,
                                 release_dir / f"metrics_{name}.json", release_dir / "split.csv", name,
                                 bootstrap=bootstrap)
    (release_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    rewrite_model_card(release_dir, data_dir)
    return release


def _validation(release: ModelRelease, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A release's raw validation logits and labels (its own split)."""
    val = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images", release.directory / "split.csv", "val")
    return TorchClassifier(release).logits(val.images), np.array([r.label for r in val.records])


def recipe_with_operating_point(recipe: RecipeValidation, source: Path, data_dir: Path = DEFAULT_DATA_DIR,
                                target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                                bootstrap: int = 1000) -> RecipeValidation:
    """A refit's recipe validation with an operating point for ``target_sensitivity``.

    Kept as it is when it records one for that target; otherwise chosen on the validation logits of the
    train-only source release at ``source`` (its weights are needed: a ``recipe_validation.json`` alone
    cannot), whose validation figures at the new point are added to the recipe's.
    """
    calibration = Calibration.from_dict(recipe.calibration)
    if calibration.malignant_threshold is not None and calibration.target_sensitivity == target_sensitivity:
        return recipe
    if Path(source).name == RECIPE_VALIDATION_NAME:
        raise ValueError(f"{source} records no review operating point for target sensitivity "
                         f"{target_sensitivity}: give the train-only release {recipe.label} itself (its folder "
                         "with its weights), so the threshold is chosen on its validation logits")
    release = ModelRelease.load(source)
    if release.manifest["weights"]["sha256"] != recipe.weights_sha256:
        raise ValueError(f"{source} holds other weights than {recipe.label}")
    logits, labels = _validation(release, data_dir)
    chosen = with_operating_point(calibration, logits, labels, target_sensitivity)
    with tempfile.TemporaryDirectory() as tmp:  # its validation figures at the new operating point
        scored = ModelRelease(release.directory, {**release.manifest, "calibration": chosen.to_dict()})
        val = evaluate(data_dir / "metadata.csv", data_dir / "images", TorchClassifier(scored),
                       Path(tmp) / "val.json", release.directory / "split.csv", "val", bootstrap=bootstrap)
    ci95 = {**recipe.metrics_val.get("ci95", {}),
            **{k: v for k, v in val.get("ci95", {}).items() if k.startswith(("malignant_", "review_"))}}
    metrics_val = {**recipe.metrics_val, "malignant": val["malignant"], **({"ci95": ci95} if ci95 else {})}
    return replace(recipe, calibration=chosen.to_dict(), metrics_val=metrics_val)


def choose_operating_point(release_dir: Path, data_dir: Path = DEFAULT_DATA_DIR,
                           calibration_from: Path | None = None,
                           target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                           bootstrap: int = 1000) -> ModelRelease:
    """Choose an existing release's review operating point again on validation (its own, or for a refit its
    train-only source's, ``calibration_from`` or its ``recipe_validation.json``), then score it again and
    rewrite its card; weights and decision rule are unchanged (no retraining)."""
    release = ModelRelease.load(release_dir)
    manifest = release.manifest
    calibration = replace(release.calibration, malignant_threshold=None, target_sensitivity=None)
    if is_refit(manifest["training"]):
        source = Path(calibration_from or release.directory / RECIPE_VALIDATION_NAME)
        recipe = RecipeValidation.load(source)
        if recipe.label != manifest["training"].get("calibration_from"):
            raise ValueError(f"{source} is {recipe.label}, but {release.name} {release.version} took its decision "
                             f"rule from {manifest['training'].get('calibration_from')}")
        rule = Calibration.from_dict(recipe.calibration)
        if replace(rule, malignant_threshold=None, target_sensitivity=None) != calibration:
            raise ValueError(f"{source}'s decision rule differs from the one {release.directory} ships")
        recipe = recipe_with_operating_point(recipe, source, data_dir, target_sensitivity, bootstrap)
        chosen = Calibration.from_dict(recipe.calibration)
        recipe.write(release.directory / RECIPE_VALIDATION_NAME)
    elif calibration_from is not None:
        raise ValueError(f"{release.directory} was trained on the training split only: its operating point is "
                         "chosen on its own validation logits, calibration_from is for refits")
    else:
        logits, labels = _validation(release, data_dir)
        chosen = with_operating_point(calibration, logits, labels, target_sensitivity)
    (release.directory / MANIFEST_NAME).write_text(json.dumps({**manifest, "calibration": chosen.to_dict()},
                                                              indent=1))
    return score_release(release.directory, data_dir, bootstrap)


def rewrite_model_card(release_dir: Path, data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    """Write ``MODEL_CARD.md`` again from the release's own files (manifest, metrics, split, history)."""
    manifest = json.loads((release_dir / MANIFEST_NAME).read_text())
    metrics = json.loads((release_dir / "metrics.json").read_text())
    history = json.loads((release_dir / "history.json").read_text())
    records = read_metadata(data_dir / "metadata.csv")
    recipe_file = release_dir / RECIPE_VALIDATION_NAME
    recipe = RecipeValidation.load(recipe_file) if is_refit(manifest["training"]) else None
    leakage_file = release_dir / LEAKAGE_NAME
    leakage = json.loads(leakage_file.read_text()) if leakage_file.exists() else None
    external = {name: json.loads((release_dir / f"metrics_{name.lower()}.json").read_text())
                for name in EXTERNAL_SOURCES if (release_dir / f"metrics_{name.lower()}.json").exists()}
    comparison_file = release_dir / COMPARISON_NAME
    comparison = json.loads(comparison_file.read_text()) if comparison_file.exists() else None
    path = release_dir / "MODEL_CARD.md"
    write_model_card(path, manifest, metrics, records, read_split(release_dir / "split.csv"), history, recipe,
                     leakage, external, comparison)
    return path
