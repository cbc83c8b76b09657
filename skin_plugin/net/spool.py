"""The listener's spool: instances written safely before they are acknowledged, grouped per study.

Layout under the spool root::

    incoming/<StudyInstanceUID>/<SOPInstanceUID>.dcm   received, study not yet stable
    queued/<StudyInstanceUID>-<n>/...                  handed to the queue
    queued/<...>/.batch                                its batch id, written *before* it is submitted
    queued/<...>/.reported                             when its batch was first seen reported and routed

A study is *stable* when no instance arrived for ``stable_s`` seconds. On start, studies left in
``incoming/`` (received before a restart) are picked up. :meth:`Spool.sweep` (on start, then every few
seconds) asks the queue about every folder's batch: one the queue does not know (a submit that failed,
a crash, an embedded Redis that died with the listener, an expired record) is submitted again under the
same id, so its reports land in the same folder and each instance is reported once; a folder whose batch
is reported and routed is deleted ``retention_s`` later (received images hold patient data).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from skin_plugin.dicom.records import validated_uid

log = logging.getLogger(__name__)
BATCH_MARKER = ".batch"
REPORTED_MARKER = ".reported"
BatchState = Literal["unknown", "pending", "done"]
"""What the queue knows of a batch: nothing (submit it), still scoring or routing, or reported and routed."""


class BatchQueue(Protocol):
    """Where the spool hands its studies (``workers.spool_queue.SpoolQueue`` for the Celery queue)."""

    def submit(self, files: list[Path], batch_id: str) -> None: ...

    def state(self, batch_id: str) -> BatchState: ...


def new_batch_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename: after this returns, the file is complete on disk under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class SweepResult:
    resubmitted: list[str]
    pending: int
    removed: int


class Spool:
    """Receives instances, tracks when each study last grew, hands stable studies to ``queue``."""

    def __init__(self, root: Path, queue: BatchQueue, stable_s: float = 5.0, retention_s: float = 0.0,
                 new_id: Callable[[], str] = new_batch_id) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.queued = self.root / "queued"
        self.queue = queue
        self.stable_s = stable_s
        self.retention_s = retention_s
        self.new_id = new_id
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.queued.mkdir(parents=True, exist_ok=True)

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> Path:
        """Write one instance (``data``: a DICOM file with preamble); UIDs are validated before use."""
        path = self.incoming / validated_uid(study_uid) / f"{validated_uid(sop_uid)}.dcm"
        with self._lock:
            write_atomically(path, data)
            self._last[study_uid] = time.monotonic()
        return path

    def recover(self) -> int:
        """Pick up studies a previous run received but did not queue (queued after ``stable_s``)."""
        now = time.monotonic()
        with self._lock:
            found = [s.name for s in self.incoming.iterdir() if s.is_dir()]
            for study in found:
                self._last.setdefault(study, now)
        return len(found)

    def flush_stable(self, now: float | None = None) -> list[str]:
        """Submit every study quiet for ``stable_s``; return the new batch ids."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [s for s, t in self._last.items() if now - t >= self.stable_s]
            for study in due:
                del self._last[study]
                source = self.incoming / study
                if not source.is_dir():
                    continue
                n = 0
                while (target := self.queued / f"{study}-{n}").exists():
                    n += 1
                os.replace(source, target)  # new instances of the study start a new folder
        return [self._submit(folder, self.new_id()) for folder in self._folders() if not self._batch_id(folder)]

    def sweep(self, now: float | None = None) -> SweepResult:
        """Reconcile every queued folder with the queue: submit what it does not know, delete what it
        reported more than ``retention_s`` ago."""
        now = time.time() if now is None else now
        result = SweepResult([], 0, 0)
        for folder in self._folders():
            batch_id = self._batch_id(folder)
            if (folder / REPORTED_MARKER).is_file():  # seen done: its record may expire before the retention
                state: BatchState = "done"
            else:
                state = self.queue.state(batch_id) if batch_id else "unknown"
            if state == "unknown":
                result.resubmitted.append(self._submit(folder, batch_id or self.new_id()))
            elif state == "pending":
                result.pending += 1
            elif self._expired(folder, now):
                shutil.rmtree(folder)
                result.removed += 1
        return result

    def seconds_to_next_stable(self, now: float | None = None) -> float | None:
        """Seconds until the next receiving study has been quiet for ``stable_s`` (0: one is due), None if none."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._last:
                return None
            return max(0.0, min(self._last.values()) + self.stable_s - now)

    def pending_studies(self) -> int:
        with self._lock:
            return len(self._last)

    def _folders(self) -> list[Path]:
        return sorted(f for f in self.queued.iterdir() if f.is_dir())

    @staticmethod
    def _batch_id(folder: Path) -> str | None:
        marker = folder / BATCH_MARKER
        return marker.read_text().strip() or None if marker.is_file() else None

    def _submit(self, folder: Path, batch_id: str) -> str:
        """Record the id first: a crash after this point leaves a folder :meth:`sweep` can reconcile."""
        files = sorted(folder.glob("*.dcm"))
        if not files:  # nothing received in it (cannot happen through store()): nothing to score
            shutil.rmtree(folder)
            return batch_id
        write_atomically(folder / BATCH_MARKER, batch_id.encode())
        (folder / REPORTED_MARKER).unlink(missing_ok=True)
        self.queue.submit(files, batch_id)
        return batch_id

    def _expired(self, folder: Path, now: float) -> bool:
        marker = folder / REPORTED_MARKER
        if not marker.is_file():
            write_atomically(marker, str(now).encode())
            reported_at = now
        else:
            reported_at = float(marker.read_text() or now)
        return now - reported_at >= self.retention_s
