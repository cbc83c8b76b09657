"""Faults with the real thing: killed workers and a restarted Redis lose no job and double none."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from queue_support import RedisServer, Worker, wait_until, worker_settings

from skin_plugin.pipeline import DUPLICATE_INSTANCE
from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore


def many_inputs(fullres_dicoms: list[Path], tmp: Path, copies: int = 2) -> list[Path]:
    """The 150 DICOMs and renamed byte-identical copies (each instance scored once, its copy reported
    as a duplicate input)."""
    files = list(fullres_dicoms)
    for c in range(1, copies):
        d = tmp / f"copy{c}"
        d.mkdir(parents=True)
        for f in fullres_dicoms:
            target = d / f.name
            target.write_bytes(f.read_bytes())
            files.append(target)
    return files


def assert_every_job_once(store: BatchStore, batch: str, out: Path, n: int) -> None:
    status = store.status(batch)
    assert status.total == n and status.completed == n, status
    records = store.job_records(batch)
    assert len(records) == n and len({r["job_id"] for r in records}) == n
    # each source instance scored once, with one JSON report; its copies failed as duplicates
    scored = {r["frames"][0]["sop_instance_uid"] for r in records if not r["error"]}
    assert status.done == len(scored) and all(r["error"] == DUPLICATE_INSTANCE for r in records if r["error"])
    assert len(list((out / "json").glob("*.json"))) == status.done
    assert not list(out.rglob("*.tmp"))
    assert (out / "summary.json").is_file()


def test_a_worker_process_killed_mid_batch_loses_no_job(redis_url, fullres_dicoms, tmp_path):
    # 5 chunks of 30: once the first is recorded, both children are busy with the next ones for a while
    # (chunks of 10 took ~50 ms on a fast machine, and both children were once killed between tasks)
    settings = worker_settings(redis_url, chunk_size=30)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms
    with Worker(settings, concurrency=2, log=tmp_path / "worker.log") as worker:
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=30)
        wait_until(lambda: store.status(batch).completed >= 30, 60, poll_s=0.005, what="first results")
        # this worker's prefork children (not heartbeats a previous test's workers may have left behind)
        victims = [int(p) for p in subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        assert len(victims) == 2
        assert store.status(batch).completed < len(files), "batch finished before the kill"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)  # both children die mid-task; the parent forks new ones
        wait_for_batch(store, batch, timeout_s=180)
    assert_every_job_once(store, batch, tmp_path / "out", len(files))
    assert "WorkerLostError" in (tmp_path / "worker.log").read_text()


def test_a_whole_worker_killed_mid_batch_is_taken_over_by_another(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url, chunk_size=2, visibility_timeout_s=3)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms
    first = Worker(settings, concurrency=1, name="first@%h").start()
    batch = submit_batch(store, files, tmp_path / "out", chunk_size=2)
    wait_until(lambda: store.status(batch).completed >= 6, 60, poll_s=0.005, what="first results")
    os.killpg(first.proc.pid, signal.SIGKILL)  # parent and child at once: the message stays unacked
    first.proc.wait()
    assert store.status(batch).completed < len(files)
    with Worker(settings, concurrency=1, name="second@%h", log=tmp_path / "second.log"):
        try:
            wait_for_batch(store, batch, timeout_s=180)
        except TimeoutError:
            r = store.r
            print("KEYS", r.keys("*"), r.hgetall("unacked"), r.zrange("unacked_index", 0, -1, withscores=True),
                  r.get("unacked_mutex"), r.ttl("unacked_mutex"))
            print((tmp_path / "second.log").read_text()[-3000:])
            raise
    assert_every_job_once(store, batch, tmp_path / "out", len(files))


def test_redis_restarted_mid_run_loses_no_job(fullres_dicoms, tmp_path):
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = worker_settings(server.url, chunk_size=2, visibility_timeout_s=5)
        store = BatchStore.from_settings(settings)
        files = many_inputs(fullres_dicoms, tmp_path, copies=2)
        with Worker(settings, concurrency=2, log=tmp_path / "worker.log"):
            batch = submit_batch(store, files, tmp_path / "out", chunk_size=2)
            wait_until(lambda: store.status(batch).completed >= 20, 60, poll_s=0.005, what="first results")
            server.stop()
            server.start()  # same port, same append-only file
            assert 0 < store.status(batch).completed < len(files)
            wait_for_batch(store, batch, timeout_s=240)
        assert_every_job_once(store, batch, tmp_path / "out", len(files))
    finally:
        server.stop()
