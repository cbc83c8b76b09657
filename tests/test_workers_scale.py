"""10,000 small jobs through the real queue: every one completes, exactly once.

The per-job cost (1,000 vs 10,000 jobs) is measured by ``benchmarks/queue_scale.py``, not here.
"""

from __future__ import annotations

from queue_support import Worker, worker_settings

from benchmarks.queue_scale import small_images
from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore


def test_ten_thousand_small_jobs_all_complete(redis_url, tmp_path):
    settings = worker_settings(redis_url, chunk_size=100)
    store = BatchStore.from_settings(settings)
    files = small_images(tmp_path / "in", 10_000, seed=0)
    with Worker(settings, concurrency=2, log=tmp_path / "worker.log"):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=100)
        status = wait_for_batch(store, batch, timeout_s=600)
    assert (status.total, status.done, status.failed) == (10_000, 10_000, 0)
    assert len(store.recorded_jobs(batch)) == 10_000
    assert len(list((tmp_path / "out" / "json").iterdir())) == 10_000
    assert (tmp_path / "out" / "summary.json").is_file() and (tmp_path / "out" / "report.html").is_file()
