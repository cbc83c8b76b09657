"""The embedded cluster of ``skin-plugin score``: a dead worker or Redis is detected, reported, and a rerun
completes the batch (issue 16 item 8). Real processes, ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from queue_support import wait_until

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 400
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children(pid: int) -> list[int]:
    return [int(k) for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def score(src: Path, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "skin_plugin.cli", "score", str(src), "--out", str(out),
                             "--workers", "1"], cwd=ROOT, env={**os.environ, "SKIN_BROKER_URL": ""},
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115


@pytest.mark.parametrize("victim", ["celery", "redis-server"])
def test_score_stops_with_a_clear_error_when_an_embedded_process_dies_and_a_rerun_completes(
        ham_dir, tmp_path, victim):
    """Before: with its Celery master killed, ``score`` waited forever (seen at 3,104/8,516 for 150 s)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for f in sorted((ham_dir / "images").glob("*.jpg"))[:N_IMAGES]:
        (src / f.name).symlink_to(f)
    proc = score(src, out, tmp_path / "first.log")
    wait_until(lambda: len(list((out / "json").glob("*.json"))) >= 10 or proc.poll() is not None, 180, 0.05,
               "the first reports")
    assert proc.poll() is None, "finished before the kill: use more images"
    target = next(p for p in children(proc.pid) if victim in cmdline(p))
    cluster = children(proc.pid) + children(target)
    os.kill(target, signal.SIGKILL)
    try:
        code = proc.wait(180)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("score did not notice that its embedded " + victim + " died")
    log = " ".join((tmp_path / "first.log").read_text().split())
    assert code == 3, log
    assert "exited (code -9): batch" in log and "stopped" in log and "run the same command again" in log
    wait_until(lambda: not any(alive(p) for p in cluster), 30, 0.1, "no embedded process left")

    rerun = score(src, out, tmp_path / "rerun.log")
    assert rerun.wait(600) == 0, (tmp_path / "rerun.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == N_IMAGES and not summary["failed"]
    assert len(list((out / "json").glob("*.json"))) == N_IMAGES
