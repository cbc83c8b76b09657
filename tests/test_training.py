"""Smoke training on a small lesion-grouped subset, then packaging and evaluation of the result."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skin_plugin.release import ModelRelease
from training.package import package_release
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def smoke_release(small_ham, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(run), cache_dir=str(run / "cache"),
                      max_epochs=2, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1)
    ckpt = train(cfg)
    assert ckpt.exists()
    package_release(run, run, small_ham, bootstrap=20)
    return run


def test_training_writes_run_artefacts(smoke_release):
    for name in ("lesioncnn.pt", "split.csv", "history.json", "training_curves.png", "model.json",
                 "metrics.json", "metrics_test.json", "metrics_test.confusion.png", "MODEL_CARD.md"):
        assert (smoke_release / name).stat().st_size > 0, name
    history = json.loads((smoke_release / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_packaged_release_loads_and_verifies(smoke_release):
    release = ModelRelease.load(smoke_release)
    release.verify()
    cal = release.calibration
    assert cal.temperature > 0 and 0.0 <= cal.decision_weight <= 1.0
    card = (smoke_release / "MODEL_CARD.md").read_text()
    assert "Not for clinical use" in card and "CC BY-NC-SA 4.0" in card


def test_evaluate_cli_on_any_labelled_folder(smoke_release, small_ham, tmp_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "evaluate",
                           "--metadata", str(small_ham / "metadata.csv"),
                           "--images", str(small_ham / "images"),
                           "--model", str(smoke_release), "--backend", "torch", "--json", str(out),
                           "--bootstrap", "10"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    for key in ("n_images", "accuracy", "balanced_accuracy", "macro_f1", "auc", "mel_auc", "ece",
                "per_class", "confusion_matrix"):
        assert key in report, key
    assert report["n_images"] == len((small_ham / "metadata.csv").read_text().splitlines()) - 1
    assert set(report["per_class"]["mel"]) >= {"sensitivity", "specificity", "precision", "f1", "support"}
    assert out.with_suffix(".confusion.png").exists()


def test_distillation_from_a_teacher(smoke_release, small_ham, tmp_path):
    """A student trained against the smoke release's weights; the model card says how it was trained."""
    import torch

    from training.train import distillation_loss

    logits = torch.randn(4, 7)
    assert float(distillation_loss(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(logits, -logits, 2.0)) > 0.1
    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path), cache_dir=str(smoke_release / "cache"),
                      max_epochs=1, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1,
                      teacher=str(smoke_release / "lesioncnn.pt"), distill_weight=0.7)
    train(cfg)
    package_release(tmp_path, tmp_path, small_ham, bootstrap=0)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "Knowledge distillation" in card and "0.7 · KL" in card
    version = json.loads((smoke_release / "model.json").read_text())["version"]
    assert f"from LesionCNN {version} (`lesioncnn.pt`, sha256" in card


def test_distillation_from_the_mean_of_two_teachers(smoke_release, small_ham, tmp_path):
    """Comma-separated teachers distil from their mean logits; the card lists them."""
    import torch

    from training.train import load_teacher

    pair = f"{smoke_release / 'lesioncnn.pt'},{smoke_release / 'lesioncnn.pt'}"
    x = torch.randn(2, 3, 120, 160)
    with torch.no_grad():
        assert torch.allclose(load_teacher(pair)(x), load_teacher(smoke_release / "lesioncnn.pt")(x), atol=1e-5)
    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path), cache_dir=str(smoke_release / "cache"),
                      max_epochs=1, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1,
                      teacher=pair, distill_weight=0.7)
    train(cfg)
    package_release(tmp_path, tmp_path, small_ham, bootstrap=0)
    assert "from the mean logits of 2 previously trained LesionCNNs" in (tmp_path / "MODEL_CARD.md").read_text()


def test_checkpoint_kept_on_the_calibrated_score(smoke_release, small_ham, tmp_path):
    """select_on="calibrated" keeps the epoch whose shipped decision rule scores best on validation."""
    import torch

    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path), cache_dir=str(smoke_release / "cache"),
                      max_epochs=3, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1,
                      activation="silu", select_on="calibrated")
    ckpt = torch.load(train(cfg), map_location="cpu", weights_only=True)
    scores = [row["val_score"] for row in cfg.history]
    assert ckpt["epoch"] == 1 + scores.index(max(scores))
    for row in cfg.history:
        assert row["val_score"] == pytest.approx(
            0.5 * (row["val_cal_accuracy"] + row["val_cal_balanced_accuracy"]))
    assert ckpt["config"]["activation"] == "silu"
    package_release(tmp_path, tmp_path, small_ham, bootstrap=0)
    release = ModelRelease.load(tmp_path)
    assert release.activation == "silu"
    from skin_plugin.torch_classifier import TorchClassifier

    assert any(isinstance(m, torch.nn.SiLU) for m in TorchClassifier(release).model.modules())
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "SiLU" in card and "under the calibrated decision rule are kept" in card


@pytest.mark.parametrize("bad, message", [
    ({"select_on": "calibratd"}, "select_on 'calibratd': choose one of balanced_accuracy, calibrated, last"),
    ({"fit_on": "train+test"}, "fit_on 'train+test': choose one of train, train+val"),
    ({"fit_on": "train+val"}, "fit_on 'train+val' trains on validation: select_on must be 'last' "
                              "(choosing a checkpoint on training images would be circular)"),
    ({"activation": "gelu"}, "activation 'gelu': choose one of relu, silu"),
    ({"split_level": "patient"}, "split_level 'patient': choose one of lesion, image"),
    ({"sampling_power": 1.5}, "sampling_power 1.5 is outside 0..1"),
    ({"distill_weight": 0.5}, "distill_weight > 0 needs a teacher"),
    ({"logit_adjust": 1.0, "cutmix_prob": 0.5},
     "logit_adjust applies to the plain cross-entropy loss: not with cutmix or a teacher"),
])
def test_a_mistyped_setting_is_refused(bad, message):
    """A typo must not silently train with another checkpoint rule or network."""
    with pytest.raises(ValueError) as exc:
        TrainConfig(**bad)
    assert str(exc.value) == message


def test_every_checkpoint_rule_is_named_in_the_model_card():
    from training.model_card import SELECTION_NAMES
    from training.train import CHECKPOINT_RULES

    assert set(SELECTION_NAMES) == set(CHECKPOINT_RULES)


def test_compare_scores_candidates_on_validation_as_packaging_does(smoke_release, small_ham, tmp_path):
    """``skin-plugin compare``: each candidate's calibrated validation figures, then their mean's."""
    weights = str(smoke_release / "lesioncnn.pt")
    out = tmp_path / "compare.json"
    proc = subprocess.run([str(Path(sys.executable).parent / "skin-plugin"), "compare", weights, weights,
                           "--split-file", str(smoke_release / "split.csv"), "--data", str(small_ham),
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(out.read_text())
    assert [s["name"] for s in scores] == [weights, weights, "mean of 2 candidates"]
    val = json.loads((smoke_release / "metrics_val.json").read_text())
    for s in scores:
        assert s["accuracy"] == pytest.approx(val["accuracy"], abs=1.01 / val["n_images"])
        assert s["score"] == pytest.approx(0.5 * (s["accuracy"] + s["balanced_accuracy"]))
    assert scores[0] == {**scores[2], "name": weights}  # the mean of one model twice is that model


def test_compare_refuses_a_missing_candidate(smoke_release, tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "skin-plugin"), "compare",
                           str(tmp_path / "nope.pt"), "--split-file", str(smoke_release / "split.csv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_flip_tta_logits_do_not_change_when_the_image_is_flipped():
    """The mean over the four flips is the same for an image and its mirror image (and differs from one view)."""
    import torch

    from skin_plugin.networks import LesionCNN
    from skin_plugin.torch_classifier import predict_logits

    torch.manual_seed(0)
    model = LesionCNN().eval()
    for m in model.modules():  # break the zero-initialised symmetry so that views really differ
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    images = torch.randint(0, 256, (3, 3, 120, 160), dtype=torch.uint8)
    tta = predict_logits(model, images, flip_tta=True)

    def relative_gap(a: torch.Tensor) -> float:
        return float((a - tta).abs().max() / tta.abs().max())

    for flipped in (images.flip(3), images.flip(2)):
        assert relative_gap(predict_logits(model, flipped, flip_tta=True)) < 1e-4
    assert relative_gap(predict_logits(model, images)) > 1e-2


@pytest.fixture(scope="module")
def smoke_refit(smoke_release, small_ham, tmp_path_factory) -> Path:
    """The smoke recipe trained again on train + validation, packaged with the smoke release's rule."""
    run = tmp_path_factory.mktemp("refit")
    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(run), cache_dir=str(smoke_release / "cache"),
                      max_epochs=2, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1,
                      fit_on="train+val", select_on="last")
    train(cfg)
    assert all("val_loss" not in row for row in cfg.history)  # no in-sample "validation" figures
    package_release(run, run / "release", small_ham, bootstrap=0, calibration_from=smoke_release)
    return run / "release"


def test_a_refit_carries_over_the_train_only_runs_decision_rule(smoke_release, smoke_refit):
    """A refit trained on validation is calibrated and validated by its train-only sibling, scored on test only."""
    from training.refit import RecipeValidation

    refit, source = ModelRelease.load(smoke_refit), ModelRelease.load(smoke_release)
    refit.verify()
    assert refit.fitted_splits == ("train", "val") and refit.held_out_splits == ("test",)
    assert source.held_out_splits == ("val", "test")
    assert refit.calibration == source.calibration
    assert refit.manifest["training"]["best_epoch"] == 2  # the last epoch
    assert refit.manifest["training"]["calibration_from"].startswith(f"LesionCNN {source.version} (sha256 ")
    assert json.loads((smoke_refit / "metrics.json").read_text()).keys() == {"test"}
    assert not (smoke_refit / "metrics_val.json").exists()
    recipe = RecipeValidation.load(smoke_refit / "recipe_validation.json")
    assert recipe.metrics_val == json.loads((smoke_release / "metrics.json").read_text())["val"]
    card = (smoke_refit / "MODEL_CARD.md").read_text()
    assert "**Refit.**" in card and f"| val (LesionCNN {source.version}, train only) |" in card
    assert "the EMA weights of the last epoch are kept (epoch 2)" in card


def test_a_refit_can_be_packaged_again_from_its_own_recipe_file(smoke_refit, small_ham, tmp_path):
    """``--calibration-from RELEASE/recipe_validation.json`` reproduces a refit release without its source."""
    package_release(smoke_refit.parent, tmp_path, small_ham, bootstrap=0,
                    calibration_from=smoke_refit / "recipe_validation.json")
    assert ModelRelease.load(tmp_path).calibration == ModelRelease.load(smoke_refit).calibration
    assert (tmp_path / "MODEL_CARD.md").read_text() == (smoke_refit / "MODEL_CARD.md").read_text()


def test_a_refit_refuses_a_rule_it_cannot_inherit(smoke_release, smoke_refit, small_ham, tmp_path):
    """No source, another recipe, another split, or a refit as the source: each is refused with its reason."""
    with pytest.raises(ValueError, match="trained on validation too: give calibration_from"):
        package_release(smoke_refit.parent, tmp_path / "a", small_ham, bootstrap=0)
    train_only = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path / "run"),
                             cache_dir=str(smoke_release / "cache"), max_epochs=1, max_batches_per_epoch=1,
                             batch_size=16, warmup_epochs=1)
    train(train_only)
    with pytest.raises(ValueError, match="calibration_from is for refits"):
        package_release(tmp_path / "run", tmp_path / "b", small_ham, bootstrap=0, calibration_from=smoke_release)
    with pytest.raises(ValueError, match="itself a refit"):
        package_release(smoke_refit.parent, tmp_path / "c", small_ham, bootstrap=0, calibration_from=smoke_refit)
    other = tmp_path / "other_recipe"
    shutil.copytree(smoke_release, other)
    manifest = json.loads((other / "model.json").read_text())
    manifest["training"]["dropout"] = 0.3
    (other / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"recipe differs .* in dropout \(0.2 vs 0.3\)"):
        package_release(smoke_refit.parent, tmp_path / "d", small_ham, bootstrap=0, calibration_from=other)
    manifest["training"]["dropout"] = 0.2
    (other / "model.json").write_text(json.dumps(manifest))
    with open(other / "split.csv", "a") as f:
        f.write("ISIC_0000000,HAM_0000000,HAM_0000000,nv,train\n")
    with pytest.raises(ValueError, match="is not the split"):
        package_release(smoke_refit.parent, tmp_path / "e", small_ham, bootstrap=0, calibration_from=other)
    truncated = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path / "truncated"),
                            cache_dir=str(smoke_release / "cache"), max_epochs=2, max_batches_per_epoch=2,
                            batch_size=16, warmup_epochs=1, fit_on="train+val", select_on="last", max_minutes=0)
    train(truncated)
    with pytest.raises(ValueError, match="stopped at epoch 1 of 2"):
        package_release(tmp_path / "truncated", tmp_path / "f", small_ham, bootstrap=0,
                        calibration_from=smoke_release)
    assert not any((tmp_path / x).exists() for x in "acdef")  # refused before anything was written


def test_logit_adjusted_loss(smoke_release, small_ham, tmp_path):
    """A run with the logit-adjusted loss trains, packages, and its card says how the imbalance was handled."""
    cfg = TrainConfig(data_dir=str(small_ham), out_dir=str(tmp_path), cache_dir=str(smoke_release / "cache"),
                      max_epochs=1, max_batches_per_epoch=2, batch_size=16, warmup_epochs=1,
                      sampling_power=0.0, logit_adjust=1.0)
    train(cfg)
    package_release(tmp_path, tmp_path, small_ham, bootstrap=0)
    assert ModelRelease.load(tmp_path).manifest["training"]["logit_adjust"] == 1.0
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "**logit-adjusted loss**" in card and "logits + 1 · log class prior" in card
    assert "weight n_c^-0 (0 = at their natural frequencies)" in card
