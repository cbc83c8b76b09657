"""OpenVINO inference: the IR manifest compiled once per process, batches of uint8 NHWC images.

Safe with Celery prefork: the model is compiled lazily in the process that first infers, and again
if the object is used after a fork (compiling in a parent and inferring in children is slow).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from skin_plugin.ir_manifest import DEFAULT_PRECISION, IRManifest
from skin_plugin.prediction import Prediction

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


FP32_CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
"""CPUs with AVX-512 BF16/AMX default to bfloat16 for float ops (logits then differ from the validated
FP32 by ~0.05): keep the precision the model was measured with."""

class DeviceNotAvailableError(RuntimeError):
    """The requested OpenVINO device is not present on this machine."""


def check_device(device: str, available: list[str]) -> None:
    """Raise ``DeviceNotAvailableError`` unless ``device`` (or one AUTO candidate) is present."""
    name, _, candidates = device.partition(":")
    if name in VIRTUAL_DEVICES:
        wanted = [c.strip() for c in candidates.split(",") if c.strip()]
        if wanted and not any(w.split(".")[0] in {a.split(".")[0] for a in available} for w in wanted):
            raise DeviceNotAvailableError(
                f"none of the devices {wanted} requested by {device!r} is present; available: {available}")
        return
    if device not in available and device.split(".")[0] not in {a.split(".")[0] for a in available}:
        raise DeviceNotAvailableError(f"OpenVINO device {device!r} is not present; available: {available}")


class OpenVINOClassifier:
    """Scores uint8 (N, H, W, 3) RGB batches with the manifest's FP32 or INT8 IR."""

    def __init__(self, manifest: IRManifest | None = None, precision: str = DEFAULT_PRECISION,
                 device: str = "CPU",
                 hint: str = "THROUGHPUT", streams: int | None = None, threads: int | None = None,
                 static_batch: int | None = None) -> None:
        self.manifest = manifest or IRManifest.load()
        self.precision = precision
        self.device = device
        self.hint = hint
        self.streams = streams
        self.threads = threads
        # NPUs need static shapes: batches are padded to this size.
        self.static_batch = static_batch or (32 if "NPU" in device else None)
        self.calibration = self.manifest.calibration
        self.manifest.verify(precision)
        self._compiled: Any = None
        self._pid: int | None = None
        import openvino as ov

        check_device(device, ov.Core().available_devices)

    def _config(self) -> dict[str, str]:
        config = {"PERFORMANCE_HINT": self.hint}
        if self.device == "CPU":
            config.update(FP32_CPU_CONFIG)
        if self.device.partition(":")[0] not in VIRTUAL_DEVICES:
            if self.streams is not None:
                config["NUM_STREAMS"] = str(self.streams)
            if self.threads is not None:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config

    @property
    def compiled(self) -> Any:
        """The compiled model of this process (compiled on first use, again after a fork)."""
        if self._compiled is None or self._pid != os.getpid():
            import openvino as ov

            core = ov.Core()
            model = core.read_model(self.manifest.xml_path(self.precision))
            if self.static_batch:
                _, height, width, channels = self.manifest.data["input"]["shape"]
                model.reshape({model.inputs[0]: [self.static_batch, height, width, channels]})
            self._compiled = core.compile_model(model, self.device, self._config())
            self._pid = os.getpid()
        return self._compiled

    def _sync_request(self) -> Any:
        """One reusable infer request per process for single-batch calls (creating one costs time)."""
        compiled = self.compiled
        if getattr(self, "_request_owner", None) is not compiled:
            self._request = compiled.create_infer_request()
            self._request_owner = compiled
        return self._request

    @property
    def optimal_requests(self) -> int:
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def _chunks(self, images: np.ndarray, size: int) -> list[np.ndarray]:
        chunks = [images[i:i + size] for i in range(0, len(images), size)]
        if self.static_batch:
            chunks = [np.concatenate([c, np.zeros((size - len(c), *c.shape[1:]), c.dtype)])
                      if len(c) < size else c for c in chunks]
        return chunks

    def _request_pool(self) -> list[Any]:
        """``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` requests of this process's compiled model, made once.

        Plain requests waited on from Python, not an ``AsyncInferQueue`` with a Python callback: freeing
        such a queue while an OpenVINO thread waits for the GIL in its callback deadlocked (seen here).
        """
        compiled = self.compiled
        if getattr(self, "_pool_owner", None) is not compiled:
            self._pool = [compiled.create_infer_request() for _ in range(max(1, self.optimal_requests))]
            self._pool_owner = compiled
        return self._pool

    def logits(self, images: np.ndarray, chunk: int = 32) -> np.ndarray:
        """Raw logits for uint8 (N, H, W, 3); chunks run in parallel, one infer request per stream."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        n = len(images)
        if n == 0:
            return np.empty((0, len(self.manifest.data["classes"])), dtype=np.float32)
        size = self.static_batch or chunk
        chunks = self._chunks(images, size)
        if len(chunks) == 1:
            return np.array(self._sync_request().infer({0: chunks[0]})[0])[:n]
        pool = self._request_pool()
        results: list[np.ndarray] = []
        for start in range(0, len(chunks), len(pool)):
            wave = list(zip(pool, chunks[start:start + len(pool)]))
            for request, c in wave:
                request.start_async({0: c})
            for request, _ in wave:
                request.wait()
                results.append(np.array(request.get_output_tensor(0).data))
        return np.concatenate(results)[:n]

    def predict(self, images: np.ndarray) -> Prediction:
        probs = self.calibration.probabilities(self.logits(images))
        return Prediction(probs, self.calibration.decide(probs))
