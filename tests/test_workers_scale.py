"""10,000 small jobs through the real queue: every one completes, exactly once.

The per-job cost (1,000 vs 10,000 jobs) is measured by ``benchmarks/queue_scale.py``, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from queue_support import Worker, worker_settings

from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore


def small_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` distinct tiny PNG photos (distinct bytes, so none is deduplicated as already scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, compress_level=0)
        files.append(path)
    return files


def test_ten_thousand_small_jobs_all_complete(redis_url, tmp_path):
    settings = worker_settings(redis_url, chunk_size=100)
    store = BatchStore.from_settings(settings)
    files = small_images(tmp_path / "in", 10_000)
    with Worker(settings, concurrency=2, log=tmp_path / "worker.log"):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=100)
        status = wait_for_batch(store, batch, timeout_s=600)
    assert (status.total, status.done, status.failed) == (10_000, 10_000, 0)
    assert len(store.recorded_jobs(batch)) == 10_000
    assert len(list((tmp_path / "out" / "json").iterdir())) == 10_000
    assert (tmp_path / "out" / "summary.json").is_file() and (tmp_path / "out" / "report.html").is_file()
