"""The ``skin-plugin`` console script against the shipped release and the bundled samples."""

import json
import subprocess
import sys
from pathlib import Path

from skin_plugin.complexity import count_complexity
from skin_plugin.constants import CLASS_CODES, INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.networks import build_network
from skin_plugin.release import ModelRelease

CLI = [str(Path(sys.executable).parent / "skin-plugin")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("info", "train", "package", "evaluate", "score", "export", "bench", "to-dicom"):
        assert cmd in proc.stdout


def test_info_json_describes_the_shipped_model():
    proc = run("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["name"] == "LesionCNN"
    assert info["classes"] == list(CLASS_CODES)
    assert info["input_size"] == {"channels": 3, "height": INPUT_HEIGHT, "width": INPUT_WIDTH}
    release = ModelRelease.load()
    measured = count_complexity(build_network(release.network, release.activation))
    assert (info["params"], info["macs"]) == (measured.params, measured.macs)


def test_score_prints_a_prediction_per_sample(samples_dir, tmp_path):
    out = tmp_path / "pred.json"
    proc = run("score", str(samples_dir), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert len(results) == len(list(samples_dir.glob("*.jpg")))
    for r in results:
        assert r["label"] in CLASS_CODES and r["error"] is None
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert Path(r["input"]).stem in proc.stdout


def test_a_corrupt_file_fails_alone(samples_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = next(samples_dir.glob("*.jpg"))
    out = tmp_path / "pred.json"
    proc = run("score", str(good), str(bad), "--json", str(out))
    assert proc.returncode == 1
    results = {Path(r["input"]).name: r for r in json.loads(out.read_text())}
    assert results[good.name]["label"] in CLASS_CODES
    assert results["broken.jpg"]["label"] is None and "truncated" in results["broken.jpg"]["error"]


def test_train_refuses_an_unknown_checkpoint_rule(tmp_path):
    proc = run("train", "--out", str(tmp_path / "run"), "--select-on", "calibratd")
    assert proc.returncode == 2
    assert "select_on 'calibratd': choose one of balanced_accuracy, calibrated" in proc.stderr
    assert not (tmp_path / "run").exists()
