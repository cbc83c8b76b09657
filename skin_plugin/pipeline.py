"""In-process scoring of image files: decode (MONAI) -> batch -> classifier -> per-file result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skin_plugin.constants import CLASS_CODES
from skin_plugin.release import ModelRelease


@dataclass(frozen=True)
class ScoreResult:
    input: str
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score_files(files: list[Path], release: ModelRelease, batch_size: int = 64) -> list[ScoreResult]:
    """Score each file; a file that cannot be decoded fails alone with its reason."""
    from skin_plugin.torch_classifier import TorchClassifier
    from skin_plugin.transforms import decode_transforms

    decode = decode_transforms()
    classifier = TorchClassifier(release)
    results: dict[int, ScoreResult] = {}
    ok_index, arrays = [], []
    for i, f in enumerate(files):
        try:
            arrays.append(np.asarray(decode(str(f))))
            ok_index.append(i)
        except Exception as exc:  # noqa: BLE001 - reported per file
            reason = ("file not found" if not Path(f).exists()
                      else f"cannot decode image ({type(exc).__name__})")
            results[i] = ScoreResult(str(f), error=reason)
    for start in range(0, len(arrays), batch_size):
        pred = classifier.predict(np.stack(arrays[start:start + batch_size]))
        for j, (probs, label) in enumerate(zip(pred.probabilities, pred.labels)):
            i = ok_index[start + j]
            results[i] = ScoreResult(str(files[i]), CLASS_CODES[int(label)],
                                     {c: round(float(p), 6) for c, p in zip(CLASS_CODES, probs)})
    return [results[i] for i in range(len(files))]
