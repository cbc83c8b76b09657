"""End to end through the queue vs the floor, measured in one run on this machine; prints JSON.

Inputs: the 150 full-resolution (600x450) HAM10000 photos as Dermoscopic DICOM, converted ``copies``
times with distinct UIDs (distinct bytes, so nothing is skipped as already scored).

- ``floor``: decode those files and run the model on them in this process, nothing else.
- ``queue_1_worker`` / ``queue_2_workers``: submit -> embedded Redis -> Celery worker processes ->
  SR + JSON per image, summary and HTML report per batch; timed from submission to the written summary,
  worker start-up excluded.

Each row is the best of ``repeats`` runs (all runs are listed in ``images_per_s_all``).

    python -m benchmarks.queue_throughput [--copies 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from skin_plugin.classifier import make_classifier
from skin_plugin.dicom.convert import convert_files
from skin_plugin.dicom.reader import read_input
from workers.client import submit_batch, wait_for_batch
from workers.config import WorkerSettings
from workers.embedded import embedded_cluster
from workers.store import BatchStore

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"
TARGET_VS_FLOOR = 0.5
TARGET_SCALING = 1.8


def make_inputs(tmp: Path, copies: int) -> list[Path]:
    files: list[Path] = []
    for c in range(copies):
        files += [f.path for f in convert_files([FULLRES], tmp / f"in{c}", uid_namespace=f"bench-{c}")]
    return files


def floor(files: list[Path], chunk: int = 32) -> dict:
    """Decode + model in-process: the unavoidable work (all cores for inference)."""
    classifier = make_classifier("openvino")
    classifier.predict(np.zeros((1, 120, 160, 3), np.uint8))  # compile outside the timing
    t0 = time.perf_counter()
    for i in range(0, len(files), chunk):
        arrays = [img.array for f in files[i:i + chunk] for img in read_input(f)]
        classifier.predict(np.stack(arrays))
    wall = time.perf_counter() - t0
    return {"name": "floor", "workers": 1, "images": len(files), "wall_s": round(wall, 3),
            "images_per_s": round(len(files) / wall, 1)}


def queued(files: list[Path], workers: int, out: Path, chunk: int = 32) -> dict:
    settings = replace(WorkerSettings.from_env(), chunk_size=chunk)
    with embedded_cluster(settings, workers) as local:
        store = BatchStore.from_settings(local)
        t0 = time.perf_counter()
        batch = submit_batch(store, files, out, chunk_size=chunk)
        status = wait_for_batch(store, batch, poll_s=0.1)
        wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    assert status.done == len(files), status
    return {"name": f"queue_{workers}_worker{'s' if workers > 1 else ''}", "workers": workers,
            "images": len(files), "wall_s": round(wall, 3), "images_per_s": round(len(files) / wall, 1),
            "latency_p50_ms": summary["latency_p50_ms"], "latency_p95_ms": summary["latency_p95_ms"],
            "queue_wait_p50_ms": summary["queue_wait_p50_ms"], "queue_wait_p95_ms": summary["queue_wait_p95_ms"],
            "per_worker": summary["workers"]}


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs (the machine is shared: slower runs measure the neighbours)."""
    top = max(runs, key=lambda r: r["images_per_s"])
    return dict(top, repeats=len(runs), images_per_s_all=[r["images_per_s"] for r in runs])


def main(copies: int = 8, repeats: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_inputs(tmp, copies)
        rows = [best([floor(files) for _ in range(repeats)]),
                best([queued(files, 1, tmp / f"out1-{i}") for i in range(repeats)]),
                best([queued(files, 2, tmp / f"out2-{i}") for i in range(repeats)])]
    by = {r["name"]: r for r in rows}
    vs_floor = by["queue_1_worker"]["images_per_s"] / by["floor"]["images_per_s"]
    scaling = by["queue_2_workers"]["images_per_s"] / by["queue_1_worker"]["images_per_s"]
    return {
        "machine": {"cpus": os.cpu_count()},
        "inputs": "HAM10000 600x450 JPEG-in-DICOM (Dermoscopic Photography)",
        "rows": rows,
        "ratios": {
            "queue_1_worker_vs_floor": round(vs_floor, 3), "target_vs_floor": TARGET_VS_FLOOR,
            "queue_2_vs_1_workers": round(scaling, 3), "target_scaling": TARGET_SCALING,
            "best_queue_vs_floor": round(by["queue_2_workers"]["images_per_s"] / by["floor"]["images_per_s"], 3),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = main(args.copies, args.repeats)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
