"""Inference speed of LesionCNN vs ResNet50, PyTorch eager vs OpenVINO FP32/INT8 (one run, one machine).

Every row runs in its own spawned process so that ``peak_rss_mb`` is that row's own peak. Latency
mode: batch 1, synchronous, p50/p95 per call. Throughput mode: batches of 32; OpenVINO uses the
THROUGHPUT hint and an ``AsyncInferQueue``; p50/p95 are per 32-image batch, amortised over a round.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.openvino_classifier import FP32_CPU_CONFIG

ROUND_IMAGES = 512
THROUGHPUT_BATCH = 32


@dataclass(frozen=True)
class RowSpec:
    name: str  # lesioncnn (the shipped release) | resnet50 | previous | transfer
    backend: str  # torch | openvino
    precision: str  # fp32 | int8
    mode: str  # latency | throughput
    seconds: float = 4.0
    weights: str = ""
    """previous/transfer: a release folder or run checkpoint of the network (torch rows, complexity)."""
    ir_dir: str = ""
    """previous: the IR folder of an earlier release (OpenVINO rows), e.g. 1.2.0's from git history."""


def _images(n: int) -> np.ndarray:
    from skin_plugin.decode import decode_image
    from training.data import DEFAULT_DATA_DIR

    paths = sorted((DEFAULT_DATA_DIR / "images").glob("*.jpg"))[:64]
    base = np.stack([decode_image(p) for p in paths])
    return base[np.arange(n) % len(base)]


def _torch_model(spec: RowSpec):
    from pathlib import Path

    from skin_plugin.networks import load_network, resnet50_baseline
    from skin_plugin.release import MANIFEST_NAME, ModelRelease

    if spec.name == "resnet50":
        return resnet50_baseline().eval()
    if spec.name == "lesioncnn" or (Path(spec.weights) / MANIFEST_NAME).exists():
        release = ModelRelease.load(spec.weights) if spec.weights else ModelRelease.load()
        return load_network(release.weights_path, release.activation, release.network)
    return load_network(spec.weights)


def _ov_runner(spec: RowSpec):
    """A callable scoring uint8 NHWC batches with OpenVINO."""
    from skin_plugin.ir_manifest import IRManifest
    from skin_plugin.openvino_classifier import OpenVINOClassifier

    hint = "LATENCY" if spec.mode == "latency" else "THROUGHPUT"
    if spec.name == "lesioncnn" or spec.ir_dir:
        ir = IRManifest.load(spec.ir_dir) if spec.ir_dir else IRManifest.load()
        clf = OpenVINOClassifier(ir, precision=spec.precision, hint=hint)
        return lambda x: clf.logits(x, chunk=THROUGHPUT_BATCH)
    import openvino as ov

    from openvino_ir.export import add_preprocessing

    model = _torch_model(spec)
    import torch

    ov_model = ov.convert_model(model, example_input=torch.zeros(1, 3, INPUT_HEIGHT, INPUT_WIDTH),
                                input=[(-1, 3, INPUT_HEIGHT, INPUT_WIDTH)])
    compiled = ov.Core().compile_model(add_preprocessing(ov_model), "CPU",
                                       {"PERFORMANCE_HINT": hint, **FP32_CPU_CONFIG})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) <= THROUGHPUT_BATCH:
            return request.infer({0: x})[0]
        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        for i in range(0, len(x), THROUGHPUT_BATCH):
            queue.start_async({0: x[i:i + THROUGHPUT_BATCH]})
        queue.wait_all()
        return x

    return run


def _torch_runner(spec: RowSpec):
    import torch

    from skin_plugin.transforms import normalize_batch

    torch.set_num_threads(2)
    model = _torch_model(spec).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), THROUGHPUT_BATCH):
            t = normalize_batch(torch.from_numpy(x[i:i + THROUGHPUT_BATCH]).permute(0, 3, 1, 2))
            out.append(model(t.contiguous(memory_format=torch.channels_last)))
        return torch.cat(out).numpy()

    return run


def _measure(spec: RowSpec) -> dict:
    from skin_plugin.complexity import count_complexity

    run = _ov_runner(spec) if spec.backend == "openvino" else _torch_runner(spec)
    batch = 1 if spec.mode == "latency" else THROUGHPUT_BATCH
    images = _images(1 if spec.mode == "latency" else ROUND_IMAGES)
    for _ in range(3):
        run(images)  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < spec.seconds or len(times) < 5:
        t0 = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - t0)
    per_batch_ms = np.array(times) * 1000 / (len(images) / batch)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c = count_complexity(_torch_model(spec))
    return {**asdict(spec), "batch": batch, "params": c.params, "macs": c.macs,
            "images_per_s": len(images) * len(times) / sum(times),
            "p50_ms": float(np.percentile(per_batch_ms, 50)),
            "p95_ms": float(np.percentile(per_batch_ms, 95)), "peak_rss_mb": peak_rss_mb}


def _child(spec: RowSpec, queue) -> None:
    queue.put(_measure(spec))


def default_rows(seconds: float = 4.0, previous: tuple[str, str] | None = None,
                 transfer: str | None = None) -> list[RowSpec]:
    """The shipped model and ResNet50; with ``previous`` (release folder, IR folder) an earlier release's
    rows, with ``transfer`` (a run checkpoint) the transfer-learning comparison model's, in the same run."""
    rows = []
    for mode in ("latency", "throughput"):
        rows += [RowSpec("lesioncnn", "torch", "fp32", mode, seconds),
                 RowSpec("lesioncnn", "openvino", "fp32", mode, seconds),
                 RowSpec("lesioncnn", "openvino", "int8", mode, seconds),
                 RowSpec("resnet50", "torch", "fp32", mode, seconds),
                 RowSpec("resnet50", "openvino", "fp32", mode, seconds)]
        if previous:
            rows += [RowSpec("previous", "openvino", precision, mode, seconds, *previous)
                     for precision in ("fp32", "int8")]
        if transfer:
            rows += [RowSpec("transfer", "openvino", "fp32", mode, seconds, transfer)]
    return rows


def ratios(rows: list[dict]) -> dict[str, float]:
    """Speed-ups from images/s (mean time) per mode, and in latency mode also from the median
    latency, which a few stalled calls on a shared machine do not move."""
    def row(name: str, backend: str, precision: str, mode: str) -> dict:
        return next(r for r in rows if (r["name"], r["backend"], r["precision"], r["mode"])
                    == (name, backend, precision, mode))

    pairs = {"lesioncnn_ov_int8_vs_torch": (("lesioncnn", "openvino", "int8"), ("lesioncnn", "torch", "fp32")),
             "lesioncnn_vs_resnet50_ov_fp32": (("lesioncnn", "openvino", "fp32"), ("resnet50", "openvino", "fp32"))}
    names = {r["name"] for r in rows}
    if "previous" in names:
        pairs |= {f"lesioncnn_vs_previous_ov_{p}": (("lesioncnn", "openvino", p), ("previous", "openvino", p))
                  for p in ("fp32", "int8")}
    if "transfer" in names:
        pairs["lesioncnn_vs_transfer_ov_fp32"] = (("lesioncnn", "openvino", "fp32"), ("transfer", "openvino", "fp32"))
    out = {}
    for key, (fast, slow) in pairs.items():
        for mode in ("latency", "throughput"):
            out[f"{key}_{mode}"] = row(*fast, mode)["images_per_s"] / row(*slow, mode)["images_per_s"]
        out[f"{key}_latency_p50"] = row(*slow, "latency")["p50_ms"] / row(*fast, "latency")["p50_ms"]
    return out


def run_benchmark(rows: list[RowSpec] | None = None, progress=None) -> dict:
    import os

    ctx = mp.get_context("spawn")
    results = []
    for spec in rows or default_rows():
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(spec, queue))
        proc.start()
        results.append(queue.get(timeout=600))
        proc.join(timeout=60)
        if progress:
            progress(results[-1])
    return {"rows": results, "ratios": ratios(results),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native")}


if __name__ == "__main__":
    print(json.dumps(run_benchmark(), indent=1))
