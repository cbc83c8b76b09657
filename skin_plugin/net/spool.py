"""The listener's spool: instances written safely before they are acknowledged, grouped per study.

Layout under the spool root::

    incoming/<StudyInstanceUID>/<SOPInstanceUID>.dcm   received, study not yet stable
    queued/<StudyInstanceUID>-<n>/...                  handed to the queue; ``.batch`` holds the batch id

A study is *stable* when no instance arrived for ``stable_s`` seconds. On start, studies left in
``incoming/`` (received before a restart) are picked up; ``queued/`` folders without ``.batch`` (a
submit that failed, e.g. broker down, or a crash) are submitted on the next flush.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from skin_plugin.dicom.records import validated_uid

BATCH_MARKER = ".batch"


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


class Spool:
    """Receives instances, tracks when each study last grew, hands stable studies to ``submit``."""

    def __init__(self, root: Path, submit: Callable[[list[Path]], str], stable_s: float = 5.0) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.queued = self.root / "queued"
        self.submit = submit
        self.stable_s = stable_s
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
        """Submit every study quiet for ``stable_s``; return the batch ids."""
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
        return self.submit_pending()

    def submit_pending(self) -> list[str]:
        """Submit every queued folder without a batch id (new ones, and any a failed submit left)."""
        return [self._submit_folder(folder) for folder in sorted(self.queued.iterdir())
                if folder.is_dir() and not (folder / BATCH_MARKER).exists()]

    def _submit_folder(self, folder: Path) -> str:
        files = sorted(f for f in folder.glob("*.dcm"))
        batch_id = self.submit(files)
        write_atomically(folder / BATCH_MARKER, batch_id.encode())
        return batch_id

    def pending_studies(self) -> int:
        with self._lock:
            return len(self._last)
