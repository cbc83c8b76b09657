"""Choose an inference backend: OpenVINO IR (default, INT8) or PyTorch (research)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from skin_plugin.calibration import Calibration
from skin_plugin.ir_manifest import DEFAULT_PRECISION
from skin_plugin.prediction import Prediction
from skin_plugin.results import ModelIdentity

BACKENDS = ("openvino", "torch")
log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str, str]] = set()


class Classifier(Protocol):
    """Scores uint8 (N, H, W, 3) RGB images at model size."""

    def predict(self, images: np.ndarray) -> Prediction: ...


def model_identity(classifier: object) -> ModelIdentity:
    """Name, version, backend, precision, file hash and review thresholds of a classifier's model, for
    reports."""
    from skin_plugin.openvino_classifier import OpenVINOClassifier

    if isinstance(classifier, OpenVINOClassifier):
        m = classifier.manifest
        identity = ModelIdentity(m.name, m.version, "openvino", classifier.precision,
                                 m.weights_sha256(classifier.precision))
    else:
        release = classifier.release  # type: ignore[attr-defined]
        identity = ModelIdentity(release.name, release.version, "torch", "fp32",
                                 release.manifest["weights"]["sha256"])
    calibration: Calibration = classifier.calibration  # type: ignore[attr-defined]
    if calibration.malignant_threshold is None and (key := (identity.name, identity.version, identity.sha256)
                                                     ) not in _WARNED:
        _WARNED.add(key)
        log.warning("%s %s records no malignancy operating point (packaged before it existed): images are "
                    "flagged for review for a malignant predicted class, melanoma probability or low "
                    "confidence only; package the release again to add one", identity.name, identity.version)
    return replace(identity, review=calibration.review)


def make_classifier(backend: str = "openvino", precision: str | None = None, device: str = "CPU",
                    model: Path | None = None, streams: int | None = None,
                    threads: int | None = None) -> Classifier:
    """``model`` is an IR directory (openvino) or a release directory (torch); None = shipped one.

    ``precision`` None is the backend's default (openvino: ``DEFAULT_PRECISION``; torch: fp32).
    ``streams`` and ``threads`` set OpenVINO's NUM_STREAMS and INFERENCE_NUM_THREADS (torch: threads).
    """
    if backend == "openvino":
        from skin_plugin.ir_manifest import IR_DIR, IRManifest
        from skin_plugin.openvino_classifier import OpenVINOClassifier

        return OpenVINOClassifier(IRManifest.load(model or IR_DIR), precision=precision or DEFAULT_PRECISION,
                                  device=device,
                                  streams=streams, threads=threads)
    if backend == "torch":
        if precision not in (None, "fp32"):
            raise ValueError("the torch backend runs FP32 only; use --precision fp32")
        from skin_plugin.release import RELEASE_DIR, ModelRelease
        from skin_plugin.torch_classifier import TorchClassifier

        return TorchClassifier(ModelRelease.load(model or RELEASE_DIR), threads=threads)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
