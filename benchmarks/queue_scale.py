"""Per-job cost of the queue at 1,000 and 10,000 small jobs (tiny PNGs), measured in one run; prints JSON.

Flat per-job cost = the queue, the batch state and the reports do not slow down as a batch grows.

    python -m benchmarks.queue_scale [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from workers.client import submit_batch, wait_for_batch
from workers.config import WorkerSettings
from workers.embedded import embedded_cluster
from workers.store import BatchStore


def small_images(folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` distinct tiny PNG photos (distinct bytes, so none is skipped as already scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, compress_level=0)
        files.append(path)
    return files


def run(n: int, tmp: Path, workers: int = 2, chunk: int = 100) -> dict:
    files = small_images(tmp / f"in{n}", n, seed=n)
    settings = replace(WorkerSettings.from_env(), chunk_size=chunk)
    with embedded_cluster(settings, workers) as local:
        store = BatchStore.from_settings(local)
        t0 = time.perf_counter()
        batch = submit_batch(store, files, tmp / f"out{n}", chunk_size=chunk)
        status = wait_for_batch(store, batch, poll_s=0.05)
        wall = time.perf_counter() - t0
    assert status.done == n, status
    return {"jobs": n, "workers": workers, "chunk_size": chunk, "wall_s": round(wall, 3),
            "per_job_ms": round(1000 * wall / n, 3), "jobs_per_s": round(n / wall, 1)}


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(1_000, Path(tmp)), run(10_000, Path(tmp))]
    return {"rows": rows, "per_job_cost_ratio_10k_vs_1k": round(rows[1]["per_job_ms"] / rows[0]["per_job_ms"], 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    text = json.dumps(main(), indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
