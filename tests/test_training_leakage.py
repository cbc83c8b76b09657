"""The split-leakage study: one recipe on a lesion-level and an image-level split, scored side by side."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.leakage import LEAKAGE_NAME, split_leakage
from training.package import package_release
from training.train import TrainConfig, train


def _smoke_run(data: Path, out: Path, **settings) -> Path:
    train(TrainConfig(data_dir=str(data), out_dir=str(out), cache_dir=str(out / "cache"), max_epochs=2,
                      max_batches_per_epoch=2, batch_size=16, warmup_epochs=1, **settings))
    return out


@pytest.fixture(scope="module")
def lesion_run(small_ham, tmp_path_factory) -> Path:
    run = _smoke_run(small_ham, tmp_path_factory.mktemp("lesion_run"))
    package_release(run, run, small_ham, bootstrap=20)
    return run


@pytest.fixture(scope="module")
def image_run(small_ham, tmp_path_factory) -> Path:
    return _smoke_run(small_ham, tmp_path_factory.mktemp("image_run"), split_level="image")


def test_an_image_level_run_cannot_be_released(image_run, small_ham, tmp_path):
    with pytest.raises(ValueError, match="image-level split"):
        package_release(image_run, tmp_path, small_ham, bootstrap=20)
    assert not (tmp_path / "model.json").exists()


def test_the_cli_refuses_to_package_an_image_level_run(small_ham, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "train", "--out", str(tmp_path / "run"),
                           "--data", str(small_ham), "--split-level", "image", "--epochs", "1",
                           "--max-batches-per-epoch", "1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "train it with --no-package" in proc.stderr
    assert not (tmp_path / "run" / "lesioncnn.pt").exists()


def test_study_scores_both_runs_and_splits_the_image_level_figures_by_lesion_seen(lesion_run, image_run,
                                                                                  small_ham):
    study = split_leakage(lesion_run, image_run, small_ham)
    lesion, image = study["runs"]
    assert (lesion["split_level"], image["split_level"]) == ("lesion", "image")
    for score in lesion["scores"]:
        assert score["seen_lesions"] is None  # no lesion crosses a lesion-level split
        assert score["unseen_lesions"]["n_images"] == score["all"]["n_images"]
    for score in image["scores"]:
        parts = [s["n_images"] for s in (score["seen_lesions"], score["unseen_lesions"]) if s]
        assert sum(parts) == score["all"]["n_images"]
    for split, by_level in study["inflation"].items():
        i = ("val", "test").index(split)
        assert by_level["accuracy"] == pytest.approx(
            image["scores"][i]["all"]["accuracy"] - lesion["scores"][i]["all"]["accuracy"])


def test_study_refuses_runs_that_do_not_isolate_the_split(lesion_run, image_run, small_ham, tmp_path):
    with pytest.raises(ValueError, match="expected a lesion-level and an image-level run"):
        split_leakage(lesion_run, lesion_run, small_ham)
    other = _smoke_run(small_ham, tmp_path / "other", split_level="image", dropout=0.3)
    with pytest.raises(ValueError, match="recipes differ in dropout"):
        split_leakage(lesion_run, other, small_ham)


def test_cli_writes_the_study_into_the_release_and_its_model_card(lesion_run, image_run, small_ham, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(lesion_run, release)
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "leakage", "--lesion-run", str(lesion_run),
                           "--image-run", str(image_run), "--data", str(small_ham),
                           "--out", str(release / LEAKAGE_NAME)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    study = json.loads((release / LEAKAGE_NAME).read_text())
    assert (release / "split_leakage.png").stat().st_size > 0
    card = (release / "MODEL_CARD.md").read_text()
    test = study["runs"][1]["scores"][1]["all"]
    assert f"| image | test | {test['n_images']} | {100 * test['accuracy']:.1f}% |" in card
    assert "![split leakage](split_leakage.png)" in card
