"""In-process scoring: read (DICOM or photo) -> batch -> classifier -> one result per image frame."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from skin_plugin.classifier import Classifier
from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.reader import InputError, InputImage, read_input
from skin_plugin.results import ScoreResult


def decode_files(files: list[Path]) -> tuple[list[ScoreResult | None], list[tuple[int, InputImage, float]]]:
    """Read every file: failures become results, frames become (slot, image, decode ms) to score."""
    results: list[ScoreResult | None] = []
    pending: list[tuple[int, InputImage, float]] = []
    for f in files:
        t0 = time.perf_counter()
        try:
            images = read_input(f)
        except InputError as exc:
            results.append(ScoreResult(str(f), error=str(exc)))
            continue
        decode_ms = 1000 * (time.perf_counter() - t0) / max(1, len(images))
        for image in images:
            pending.append((len(results), image, decode_ms))
            results.append(None)
    return results, pending


def score_frames(pending: list[tuple[int, InputImage, float]], classifier: Classifier,
                 results: list[ScoreResult | None], batch_size: int = 256, **extra: object) -> None:
    """One inference call per ``batch_size`` frames; fills ``results`` at each frame's slot.

    A frame's latency is its own decode time plus its share of the inference call.
    """
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        t0 = time.perf_counter()
        pred = classifier.predict(np.stack([image.array for _, image, _ in chunk]))
        infer_ms = 1000 * (time.perf_counter() - t0) / len(chunk)
        for (slot, image, decode_ms), probs, label in zip(chunk, pred.probabilities, pred.labels):
            results[slot] = ScoreResult(
                str(image.path), image.frame_index, image.source, CLASS_CODES[int(label)],
                {c: round(float(p), 6) for c, p in zip(CLASS_CODES, probs)}, latency_ms=decode_ms + infer_ms,
                **extra)  # type: ignore[arg-type]


def score_files(files: list[Path], classifier: Classifier, batch_size: int = 256) -> list[ScoreResult]:
    """Score every frame of every file; a file that cannot be read fails alone with its reason."""
    results, pending = decode_files(files)
    score_frames(pending, classifier, results, batch_size)
    return [r for r in results if r is not None]
