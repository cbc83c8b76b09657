"""Packaging: importing ``skin_plugin`` keeps OpenVINO's converter and NNCF from sending usage telemetry;
the review operating point is chosen on validation (a refit: its train-only source's)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CONVERT_AND_COUNT_PROCESSES = """
import multiprocessing.process as mpp
import skin_plugin  # noqa: F401
started = []
original = mpp.BaseProcess.start
mpp.BaseProcess.start = lambda self: (started.append(self), original(self))[1]
import torch
import openvino as ov
from openvino.tools.ovc import telemetry_utils
ov.convert_model(torch.nn.Linear(4, 2), example_input=torch.zeros(1, 4))
from nncf.telemetry.wrapper import NNCFTelemetry, telemetry
print(telemetry_utils.tm.__name__, isinstance(telemetry, NNCFTelemetry), len(started))
"""


def test_model_conversion_and_nncf_send_no_telemetry():
    proc = subprocess.run([sys.executable, "-c", CONVERT_AND_COUNT_PROCESSES], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    converter_telemetry, nncf_telemetry_active, processes = proc.stdout.split()[-3:]
    assert converter_telemetry == "openvino.tools.ovc.telemetry_stub"
    assert nncf_telemetry_active == "False"
    assert processes == "0", "a telemetry sender process was started"


# --- the review operating point, chosen when packaging ------------------------------------------

def _train(small_ham: Path, run: Path, **kw) -> Path:
    """A one-batch training run: enough to package, cheap."""
    from training.train import TrainConfig, train

    train(TrainConfig(data_dir=str(small_ham), out_dir=str(run), cache_dir=str(run.parent / "cache"),
                      max_epochs=1, max_batches_per_epoch=1, batch_size=16, warmup_epochs=1, **kw))
    return run


@pytest.fixture(scope="module")
def runs(small_ham, tmp_path_factory) -> dict[str, Path]:
    """A train-only run packaged (its release in ``source``), and a refit run of the same recipe."""
    from training.package import package_release

    root = tmp_path_factory.mktemp("op")
    source = _train(small_ham, root / "source")
    package_release(source, source, small_ham, bootstrap=20)
    refit = _train(small_ham, root / "refit", fit_on="train+val", select_on="last")
    return {"source": source, "refit": refit}


def _val_probabilities(release_dir: Path, small_ham: Path) -> tuple[np.ndarray, np.ndarray]:
    from skin_plugin.release import ModelRelease
    from skin_plugin.torch_classifier import TorchClassifier
    from training.evaluate import load_evaluation_set

    val = load_evaluation_set(small_ham / "metadata.csv", small_ham / "images", release_dir / "split.csv", "val")
    pred = TorchClassifier(ModelRelease.load(release_dir)).predict(val.images)
    return pred.probabilities, np.array([r.label for r in val.records])


def _strip_operating_point(path: Path, key: str = "calibration") -> None:
    """Make a manifest (or recipe file) look packaged before operating points existed."""
    data = json.loads(path.read_text())
    for k in ("malignant_threshold", "target_sensitivity"):
        data[key].pop(k, None)
    path.write_text(json.dumps(data, indent=1))


def _old_copy(release: Path, dest: Path) -> Path:
    shutil.copytree(release, dest, ignore=shutil.ignore_patterns("cache"))
    _strip_operating_point(dest / "model.json")
    return dest


def test_a_train_only_release_chooses_its_operating_point_on_its_validation(runs, small_ham):
    from skin_plugin.release import ModelRelease
    from training.calibrate import fit_malignant_threshold

    release = ModelRelease.load(runs["source"])
    cal = release.calibration
    assert cal.target_sensitivity == 0.95
    probs, labels = _val_probabilities(runs["source"], small_ham)
    assert cal.malignant_threshold == fit_malignant_threshold(probs, labels, 0.95)
    metrics = json.loads((runs["source"] / "metrics.json").read_text())
    assert metrics["val"]["malignant"]["threshold"] == cal.malignant_threshold
    assert metrics["val"]["malignant"]["operating_point"]["sensitivity"] >= 0.95
    assert "malignant_sensitivity" in metrics["test"]["ci95"]
    assert (runs["source"] / "metrics_test.malignant_roc.png").stat().st_size > 0
    card = (runs["source"] / "MODEL_CARD.md").read_text()
    assert "## Review flag: malignant vs benign" in card and "metrics_test.malignant_roc.png" in card
    assert f"t = {cal.malignant_threshold:.4f}" in card
    assert "| malignant sensitivity at the operating point | 0.95 | 0.93 |" in card


def test_a_refit_takes_its_operating_point_from_its_train_only_sources_validation(runs, small_ham, tmp_path):
    """An older source (no operating point) gets one chosen on its own validation logits; the refit ships it,
    keeps it in recipe_validation.json, and can be packaged again from that file alone."""
    from skin_plugin.release import ModelRelease
    from training.calibrate import fit_malignant_threshold
    from training.package import package_release
    from training.refit import RecipeValidation

    old_source = _old_copy(runs["source"], tmp_path / "old-source")
    package_release(runs["refit"], tmp_path / "refit", small_ham, bootstrap=0, calibration_from=old_source)
    refit = ModelRelease.load(tmp_path / "refit")
    probs, labels = _val_probabilities(runs["source"], small_ham)
    assert refit.calibration.malignant_threshold == fit_malignant_threshold(probs, labels, 0.95)
    assert refit.calibration == ModelRelease.load(runs["source"]).calibration
    recipe = RecipeValidation.load(tmp_path / "refit" / "recipe_validation.json")
    assert recipe.calibration == refit.calibration.to_dict()
    assert recipe.metrics_val["malignant"]["operating_point"]["sensitivity"] >= 0.95
    card = (tmp_path / "refit" / "MODEL_CARD.md").read_text()
    assert "| val (LesionCNN" in card.split("## Review flag: malignant vs benign")[1]

    package_release(runs["refit"], tmp_path / "again", small_ham, bootstrap=0,
                    calibration_from=tmp_path / "refit" / "recipe_validation.json")
    assert ModelRelease.load(tmp_path / "again").calibration == refit.calibration
    for target in (0.9, 0.95):  # a recipe file without an operating point for the target cannot choose one
        stripped = tmp_path / f"stripped{target}" / "recipe_validation.json"
        stripped.parent.mkdir()
        shutil.copy(tmp_path / "refit" / "recipe_validation.json", stripped)
        if target == 0.95:
            _strip_operating_point(stripped)
        with pytest.raises(ValueError, match="records no review operating point.*give the train-only release"):
            package_release(runs["refit"], tmp_path / f"no{target}", small_ham, bootstrap=0,
                            calibration_from=stripped, target_sensitivity=target)


def test_an_existing_release_gets_its_operating_point_without_retraining(runs, small_ham, tmp_path):
    """``skin-plugin package --operating-point-only``: a train-only release from its own validation; a refit
    from its source (``--calibration-from``), checked against the source it records."""
    from typer.testing import CliRunner

    from skin_plugin.cli import app
    from skin_plugin.release import ModelRelease
    from training.package import choose_operating_point, package_release

    shipped = ModelRelease.load(runs["source"]).calibration
    old = _old_copy(runs["source"], tmp_path / "old")
    weights = (old / "lesioncnn.pt").read_bytes()
    result = CliRunner().invoke(app, ["package", "--operating-point-only", "--out", str(old), "--data",
                                      str(small_ham)])
    assert result.exit_code == 0, result.output
    assert ModelRelease.load(old).calibration == shipped and (old / "lesioncnn.pt").read_bytes() == weights
    assert "operating_point" in json.loads((old / "metrics.json").read_text())["test"]["malignant"]

    package_release(runs["refit"], tmp_path / "refit", small_ham, bootstrap=0, calibration_from=runs["source"])
    _strip_operating_point(tmp_path / "refit" / "model.json")
    _strip_operating_point(tmp_path / "refit" / "recipe_validation.json")
    with pytest.raises(ValueError, match="records no review operating point"):
        choose_operating_point(tmp_path / "refit", small_ham, bootstrap=0)
    with pytest.raises(ValueError, match="took its decision rule from"):
        other = _old_copy(runs["source"], tmp_path / "other")
        manifest = json.loads((other / "model.json").read_text())
        manifest["version"] = "0.0.1"
        (other / "model.json").write_text(json.dumps(manifest))
        choose_operating_point(tmp_path / "refit", small_ham, calibration_from=other, bootstrap=0)
    choose_operating_point(tmp_path / "refit", small_ham, calibration_from=_old_copy(runs["source"], tmp_path / "s"),
                           bootstrap=0)
    assert ModelRelease.load(tmp_path / "refit").calibration == shipped
    with pytest.raises(ValueError, match="calibration_from is for refits"):
        choose_operating_point(old, small_ham, calibration_from=runs["source"], bootstrap=0)
