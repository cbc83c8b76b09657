"""In-process scoring: read (DICOM or photo) -> batch -> classifier -> one result per image frame."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from skin_plugin.classifier import Classifier
from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.reader import InputError, InputImage, read_input
from skin_plugin.results import ScoreResult


def score_files(files: list[Path], classifier: Classifier, batch_size: int = 256) -> list[ScoreResult]:
    """Score every frame of every file; a file that cannot be read fails alone with its reason."""
    results: list[ScoreResult | None] = []
    pending: list[tuple[int, InputImage]] = []
    decode_s = 0.0
    for f in files:
        t0 = time.perf_counter()
        try:
            for image in read_input(f):
                pending.append((len(results), image))
                results.append(None)
        except InputError as exc:
            results.append(ScoreResult(str(f), error=str(exc)))
        decode_s += time.perf_counter() - t0
    decode_ms = 1000 * decode_s / max(1, len(pending))
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        t0 = time.perf_counter()
        pred = classifier.predict(np.stack([image.array for _, image in chunk]))
        infer_ms = 1000 * (time.perf_counter() - t0) / len(chunk)
        for (slot, image), probs, label in zip(chunk, pred.probabilities, pred.labels):
            results[slot] = ScoreResult(
                str(image.path), image.frame_index, image.source, CLASS_CODES[int(label)],
                {c: round(float(p), 6) for c, p in zip(CLASS_CODES, probs)}, latency_ms=decode_ms + infer_ms)
    return [r for r in results if r is not None]
