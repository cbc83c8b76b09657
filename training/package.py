"""Turn a training run into a release: weights, calibration, manifest, metrics, plots, model card."""

from __future__ import annotations

import json
import shutil
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
from skin_plugin.torch_classifier import TorchClassifier
from training.calibrate import fit_calibration, log_class_prior
from training.data import DEFAULT_DATA_DIR, read_metadata, read_split, split_level
from training.evaluate import evaluate, load_evaluation_set
from training.leakage import LEAKAGE_NAME
from training.model_card import write_model_card
from training.refit import RECIPE_VALIDATION_NAME, RecipeValidation, is_refit

RUN_FILES = ("split.csv", "history.json", "training_curves.png")


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
                    bootstrap: int = 1000, calibration_from: Path | None = None) -> ModelRelease:
    """Calibrate on validation, evaluate validation and test, write the release into ``out_dir``.

    A refit (trained on train + validation) is not calibrated or scored on validation: it takes the
    decision rule and validation figures of ``calibration_from``, the train-only release of its recipe,
    and is scored on test alone.
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
    for stale in (RECIPE_VALIDATION_NAME, "metrics_val.json", "metrics_val.confusion.png"):
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
        manifest["calibration"] = fit_calibration(logits, val_labels, log_prior).to_dict()
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))

    release = ModelRelease.load(out_dir)
    classifier = TorchClassifier(release)
    metrics = {}
    for name in release.held_out_splits:
        metrics[name] = evaluate(data_dir / "metadata.csv", data_dir / "images", classifier,
                                 out_dir / f"metrics_{name}.json", split_file, name, bootstrap=bootstrap)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    rewrite_model_card(out_dir, data_dir)
    return release


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
    path = release_dir / "MODEL_CARD.md"
    write_model_card(path, manifest, metrics, records, read_split(release_dir / "split.csv"), history, recipe,
                     leakage)
    return path
