"""Pretrained students, extra training sources, cached teacher views and resumable runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from skin_plugin.complexity import count_complexity
from skin_plugin.networks import build_network, load_network
from skin_plugin.proxyless import PROXYLESS_NETWORKS, ProxylessNet
from tests.test_networks import MAX_MACS, MAX_PARAMS
from training.data import DEFAULT_EXTRA_DIR, read_extra_metadata, write_source_metadata
from training.train import TrainConfig, train

STUDENT = "proxyless-w0.3-r176"


@pytest.mark.parametrize("name", PROXYLESS_NETWORKS)
def test_imagenet_weights_load_strictly(name):
    """``from_name(pretrained=True)`` loads every key (strict) and swaps in a 7-class head."""
    model = build_network(name, pretrained=True)
    assert model(torch.zeros(2, 3, 120, 160)).shape == (2, 7)


def test_pretrained_body_differs_from_random_init():
    pretrained = ProxylessNet.from_name(STUDENT, pretrained=True).state_dict()
    scratch = ProxylessNet.from_name(STUDENT).state_dict()
    key = "first_conv.conv.weight"
    assert not torch.equal(pretrained[key], scratch[key])


def test_student_within_paper_budget():
    c = count_complexity(build_network(STUDENT))
    assert c.params <= MAX_PARAMS and c.macs <= MAX_MACS, c


def test_transfer_comparison_network_loads_its_wheel_weights():
    model = build_network("efficientnet-lite0", pretrained=True)
    assert count_complexity(model).macs > 5 * MAX_MACS  # the comparison model is far above the budget


def test_unknown_network_and_source_are_refused(tmp_path):
    with pytest.raises(ValueError, match="network"):
        TrainConfig(network="resnet9000")
    with pytest.raises(ValueError, match="extra source"):
        TrainConfig(extra_sources="PH3")
    with pytest.raises(ValueError, match="pretrained"):
        TrainConfig(pretrained=True)  # LesionCNN has no pretrained weights
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(distill_views=2)


def test_extra_sources_are_read_by_source():
    ph2 = read_extra_metadata(DEFAULT_EXTRA_DIR / "metadata.csv", ["PH2"])
    assert len(ph2) == 200 and {r.dx for r in ph2} == {"mel", "nv"}


def test_source_metadata_for_external_evaluation(tmp_path):
    out = write_source_metadata(DEFAULT_EXTRA_DIR / "metadata.csv", "PH2", tmp_path / "ph2.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and {r["source"] for r in rows} == {"PH2"}
    with pytest.raises(ValueError, match="no image of source"):
        write_source_metadata(DEFAULT_EXTRA_DIR / "metadata.csv", "NOPE", tmp_path / "x.csv")


def _config(small_ham: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data_dir=str(small_ham), out_dir=str(out), cache_dir=str(out.parent / "cache"), max_epochs=2,
                max_batches_per_epoch=2, batch_size=16, warmup_epochs=1, network=STUDENT, pretrained=True,
                aspect_jitter=0.3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(small_ham, tmp_path):
    straight = train(_config(small_ham, tmp_path / "straight"))
    interrupted = _config(small_ham, tmp_path / "resumed", max_minutes=0.0)  # stops after epoch 1
    train(interrupted)
    assert [h["epoch"] for h in interrupted.history] == [1]
    resumed = train(_config(small_ham, tmp_path / "resumed", resume=True))
    a = torch.load(straight, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        train(_config(small_ham, tmp_path / "resumed", resume=True, lr=1e-4))


def test_extra_images_and_cached_teacher_views(small_ham, tmp_path):
    teacher = train(_config(small_ham, tmp_path / "teacher", max_epochs=1))
    cfg = _config(small_ham, tmp_path / "student", extra_sources="PH2", teacher=str(teacher),
                  distill_weight=0.5, distill_views=2, pretrained=False, max_epochs=1)
    ckpt = train(cfg)
    model = load_network(ckpt)
    assert model(torch.zeros(1, 3, 120, 160)).shape == (1, 7)
    assert list((tmp_path / "cache").glob("teacher-views-*.pt"))


def test_comparison_scores_runs_and_releases_alike(small_ham, tmp_path):
    from training.comparison import Candidate, compare

    with pytest.raises(ValueError, match="LABEL=PATH"):
        Candidate.parse("no-label")
    with pytest.raises(ValueError, match="splits"):
        Candidate.parse("x=runs/a:train")
    run = tmp_path / "run"
    train(_config(small_ham, run, max_epochs=1))
    result = compare([Candidate.parse(f"student={run}:val,test")], tmp_path / "comparison.json", small_ham,
                     bootstrap=5)
    row = result["rows"][0]
    assert row["pretrained"] and row["network"] == STUDENT and set(row["metrics"]) == {"val", "test"}
    assert "operating_point" in row["metrics"]["val"]["malignant"]
