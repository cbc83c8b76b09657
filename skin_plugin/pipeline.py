"""In-process scoring of image files: decode -> batch -> classifier -> per-file result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skin_plugin.classifier import Classifier
from skin_plugin.constants import CLASS_CODES
from skin_plugin.decode import ImageDecodeError, decode_image


@dataclass(frozen=True)
class ScoreResult:
    input: str
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score_files(files: list[Path], classifier: Classifier, batch_size: int = 256) -> list[ScoreResult]:
    """Score each file; a file that cannot be decoded fails alone with its reason."""
    results: dict[int, ScoreResult] = {}
    ok_index, arrays = [], []
    for i, f in enumerate(files):
        try:
            arrays.append(decode_image(f))
            ok_index.append(i)
        except FileNotFoundError:
            results[i] = ScoreResult(str(f), error="file not found")
        except ImageDecodeError as exc:
            results[i] = ScoreResult(str(f), error=f"cannot decode image: {exc}")
    for start in range(0, len(arrays), batch_size):
        pred = classifier.predict(np.stack(arrays[start:start + batch_size]))
        for j, (probs, label) in enumerate(zip(pred.probabilities, pred.labels)):
            i = ok_index[start + j]
            results[i] = ScoreResult(str(files[i]), CLASS_CODES[int(label)],
                                     {c: round(float(p), 6) for c, p in zip(CLASS_CODES, probs)})
    return [results[i] for i in range(len(files))]
