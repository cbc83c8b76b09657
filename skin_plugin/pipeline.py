"""In-process scoring: read (DICOM or photo) -> batch -> classifier -> one result per image frame.

Every input fails alone: an unreadable input, an unexpected error while reading it or while writing its
reports ends that input with a reason (its report files removed); the other inputs are scored. Within
a batch one input owns each report name: a DICOM instance (SOP Instance UID) or a photo (its path).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skin_plugin.classifier import Classifier
from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.reader import InputError, InputImage, read_input
from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.results import ScoreResult

if TYPE_CHECKING:
    from skin_plugin.reports.batch_writer import BatchWriter

DUPLICATE_INSTANCE = ("duplicate input: the same DICOM instance (same SOP Instance UID, same content) is "
                      "already an input of this batch; its reports are that input's")
SOP_CONFLICT = ("SOP Instance UID already used by a different image of this batch: not scored, so that "
                "neither image's report overwrites the other's")
DUPLICATE_FILE = "duplicate input: this file is already an input of this batch"


def report_owner(path: str | Path, source: DicomSourceInfo | None) -> str:
    """What names an input's reports: ``sop:<SOP Instance UID>`` (DICOM) or ``file:<absolute path>``."""
    if source is not None:
        return f"sop:{source.sop_instance_uid}"
    return f"file:{os.path.abspath(path)}"


def duplicate_reason(owner: str, same_content: bool) -> str:
    """Why a second input claiming the report name ``owner`` is not scored."""
    if owner.startswith("file:"):
        return DUPLICATE_FILE
    return DUPLICATE_INSTANCE if same_content else SOP_CONFLICT


def internal_error(stage: str, exc: BaseException) -> str:
    """The reason of an input that failed on an unexpected error (no message: it may quote the input)."""
    if isinstance(exc, OSError):
        return f"cannot {stage}: {exc.strerror or type(exc).__name__}"
    return f"internal error while trying to {stage}: {type(exc).__name__}"


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ReportOwners:
    """In-process claims: the first input of a report name owns it; a later one gets the reason."""

    def __init__(self) -> None:
        self._owners: dict[str, Path] = {}

    def claim(self, path: Path, source: DicomSourceInfo | None) -> str | None:
        """None if this input (each call is another input) is the first to claim its report name."""
        owner = report_owner(path, source)
        if owner not in self._owners:
            self._owners[owner] = path
            return None
        same = owner.startswith("file:") or _sha256(self._owners[owner]) == _sha256(path)
        return duplicate_reason(owner, same)


def decode_files(files: list[Path]) -> tuple[list[ScoreResult | None], list[tuple[int, InputImage, float]]]:
    """Read every file: failures become results, frames become (slot, image, decode ms) to score."""
    results: list[ScoreResult | None] = []
    pending: list[tuple[int, InputImage, float]] = []
    owners = ReportOwners()
    for f in files:
        t0 = time.perf_counter()
        try:
            images = read_input(f)
        except InputError as exc:
            results.append(ScoreResult(str(f), error=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a reader bug fails this input alone
            results.append(ScoreResult(str(f), error=internal_error("read it", exc)))
            continue
        if images and (reason := owners.claim(f, images[0].source)):
            results.append(ScoreResult(str(f), error=reason))
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


def write_reports(results: Iterable[ScoreResult], writer: BatchWriter,
                  when: datetime | None = None) -> list[ScoreResult]:
    """Write the reports of every result; an input whose reports cannot all be written becomes one
    failed result (the files written for it are removed). Results in input order, frames adjacent."""
    from skin_plugin.reports.batch_writer import remove_files

    when = when or datetime.now()
    inputs: list[list[ScoreResult]] = []
    for r in results:  # an input's results: its frames 0, 1, ... (a failed input: one, frame 0)
        if r.frame == 0 or not inputs:
            inputs.append([])
        inputs[-1].append(r)
    out: list[ScoreResult] = []
    for group in inputs:
        written: list[Path] = []
        try:
            for r in group:
                written += writer.write_result(r, when)
        except Exception as exc:  # noqa: BLE001 - this input fails alone, with the reason
            remove_files(written)
            out.append(ScoreResult(group[0].input, error=internal_error("write its reports", exc)))
            continue
        out += group
    return out


def score_files(files: list[Path], classifier: Classifier, batch_size: int = 256,
                writer: BatchWriter | None = None) -> list[ScoreResult]:
    """Score every frame of every file (and write its reports with ``writer``); a file that cannot be
    read, scored under its name or reported fails alone with its reason."""
    results, pending = decode_files(files)
    score_frames(pending, classifier, results, batch_size)
    done = [r for r in results if r is not None]
    return write_reports(done, writer) if writer is not None else done
