"""The shipped release: intact, honest (its figures reproduce), attributed."""

import json

import numpy as np
import pytest

from skin_plugin.release import RELEASE_DIR, ModelRelease
from skin_plugin.torch_classifier import TorchClassifier
from training.evaluate import evaluate


@pytest.fixture(scope="module")
def release() -> ModelRelease:
    return ModelRelease.load(RELEASE_DIR)


def test_release_weights_match_manifest(release):
    release.verify()


def test_model_card_and_attribution(release):
    card = (RELEASE_DIR / "MODEL_CARD.md").read_text()
    for needle in ("Not for clinical use", "CC BY-NC-SA 4.0", "Tschandl", "lesion", "split.csv"):
        assert needle in card, needle
    assert "Not for clinical use" in release.manifest["intended_use"]


def test_model_card_is_what_its_generator_writes(ham_dir, tmp_path):
    """The committed card is generated from the release's files, not edited by hand, and says which
    project targets the test figures miss."""
    import shutil

    from training.package import rewrite_model_card

    copy = tmp_path / "release"
    shutil.copytree(RELEASE_DIR, copy)
    card = rewrite_model_card(copy, ham_dir).read_text()
    assert card == (RELEASE_DIR / "MODEL_CARD.md").read_text()
    assert "## Project targets (test split)" in card
    test = json.loads((RELEASE_DIR / "metrics.json").read_text())["test"]
    from training.model_card import PROJECT_TARGETS

    _, name, aim, floor = next(t for t in PROJECT_TARGETS if t[0] == "balanced_accuracy")
    row = next(line for line in card.splitlines() if line.startswith(f"| {name} | {aim:.2f} | {floor:.2f} |"))
    assert f"| {test['balanced_accuracy']:.3f} |" in row
    assert ("below the floor" in row) == (test["balanced_accuracy"] < floor)


def test_readme_comparison_is_what_its_generator_writes(release):
    """The README's comparison block is the committed comparison.json rendered (no typed figures)."""
    from pathlib import Path

    from training.model_card import README_COMPARISON_MARKERS, readme_with_comparison

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(marker in readme for marker in README_COMPARISON_MARKERS)
    comparison_file = RELEASE_DIR / "comparison.json"
    if comparison_file.exists():
        assert readme_with_comparison(readme, json.loads(comparison_file.read_text())) == readme


def test_card_attributes_what_went_into_the_weights(release):
    card = (RELEASE_DIR / "MODEL_CARD.md").read_text()
    training = release.manifest["training"]
    if "ISIC2017" in training.get("extra_sources", ""):
        assert "Codella" in card and "CC BY-NC 4.0" in card
    if training.get("pretrained"):
        assert "MCUNet" in card and "MIT" in card


def test_shipped_test_metrics_reproduce(release, ham_dir, tmp_path):
    """Re-scoring the test split gives exactly the committed figures (no hand-typed numbers)."""
    shipped = json.loads((RELEASE_DIR / "metrics.json").read_text())["test"]
    fresh = evaluate(ham_dir / "metadata.csv", ham_dir / "images", TorchClassifier(release),
                     tmp_path / "test.json",
                     RELEASE_DIR / "split.csv", "test", bootstrap=0)
    assert fresh["n_images"] == shipped["n_images"]
    assert fresh["confusion_matrix"] == shipped["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "mel_auc", "ece"):
        assert np.isclose(fresh[key], shipped[key], atol=1e-6), key
    assert fresh["malignant"]["review_flag"]["reasons"] == shipped["malignant"]["review_flag"]["reasons"]
    for key in ("sensitivity", "specificity", "flag_rate", "mel_sensitivity"):
        assert np.isclose(fresh["malignant"]["operating_point"][key], shipped["malignant"]["operating_point"][key],
                          atol=1e-9), key


def test_shipped_release_records_the_operating_point_it_was_validated_with(release):
    """The review threshold was chosen on validation (a refit's: its train-only source's, whose figures at the
    point are kept), and the deployed IR carries it."""
    from skin_plugin.ir_manifest import IRManifest
    from training.refit import RecipeValidation, is_refit

    cal = release.calibration
    assert cal.malignant_threshold is not None and cal.target_sensitivity == 0.95
    assert IRManifest.load().calibration == cal
    validation = (RecipeValidation.load(RELEASE_DIR / "recipe_validation.json").metrics_val
                  if is_refit(release.manifest["training"])
                  else json.loads((RELEASE_DIR / "metrics.json").read_text())["val"])
    assert validation["malignant"]["threshold"] == cal.malignant_threshold
    assert validation["malignant"]["operating_point"]["sensitivity"] >= cal.target_sensitivity
