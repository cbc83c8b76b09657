"""In-process scoring: read (DICOM or photo) -> batch -> classifier -> one result per image frame."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skin_plugin.classifier import Classifier
from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.reader import InputError, InputImage, read_input


@dataclass(frozen=True)
class ScoreResult:
    input: str
    frame: int = 0
    sop_instance_uid: str | None = None
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score_files(files: list[Path], classifier: Classifier, batch_size: int = 256) -> list[ScoreResult]:
    """Score every frame of every file; a file that cannot be read fails alone with its reason."""
    results: list[ScoreResult | None] = []
    pending: list[tuple[int, InputImage]] = []
    for f in files:
        try:
            for image in read_input(f):
                pending.append((len(results), image))
                results.append(None)
        except InputError as exc:
            results.append(ScoreResult(str(f), error=str(exc)))
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        pred = classifier.predict(np.stack([image.array for _, image in chunk]))
        for (slot, image), probs, label in zip(chunk, pred.probabilities, pred.labels):
            results[slot] = ScoreResult(
                str(image.path), image.frame_index, image.source.sop_instance_uid if image.source else None,
                CLASS_CODES[int(label)], {c: round(float(p), 6) for c, p in zip(CLASS_CODES, probs)})
    return [r for r in results if r is not None]
