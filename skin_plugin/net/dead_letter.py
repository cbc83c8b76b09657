"""Results that could not be delivered: kept with their destination and reason, re-sendable.

``<dir>/<name>.dcm`` plus ``<dir>/<name>.dcm.json`` (``{"destination", "reason", "failed_at", "attempts"}``);
the destination and reason are stored redacted (no password or token ever lands in a sidecar).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from skin_plugin.net.credentials import redact_text, redact_url
from skin_plugin.net.destination import Destination, DestinationError
from skin_plugin.net.sender import send_files


@dataclass(frozen=True)
class DeadLetter:
    path: Path
    destination: str
    reason: str
    attempts: int


class DeadLetterBox:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def add(self, file: Path, destination: Destination, reason: str, attempts: int) -> Path:
        """Copy ``file`` in (the report folder keeps its own copy) with its sidecar."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / file.name
        shutil.copyfile(file, target)
        meta = {"destination": redact_url(str(destination)), "reason": redact_text(reason), "failed_at": time.time(),
                "attempts": attempts}
        sidecar = target.with_name(target.name + ".json")
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(sidecar)
        return target

    def letters(self) -> list[DeadLetter]:
        out = []
        for sidecar in sorted(self.folder.glob("*.dcm.json")):
            meta = json.loads(sidecar.read_text())
            out.append(DeadLetter(sidecar.with_name(sidecar.name[:-5]), meta["destination"], meta["reason"],
                                  int(meta.get("attempts", 0))))
        return out

    def resend(self, destination: Destination | None = None) -> tuple[int, list[DeadLetter]]:
        """Send every letter again (to its own destination unless one is given); return (sent, still failing)."""
        by_dest: dict[str, list[DeadLetter]] = {}
        for letter in self.letters():
            by_dest.setdefault(str(destination) if destination else letter.destination, []).append(letter)
        sent, failing = 0, []
        for dest_spec, letters in by_dest.items():
            try:
                dest = Destination.parse(dest_spec)
            except DestinationError as exc:  # e.g. an old sidecar whose URL held a password
                failures = {letter.path: f"{exc}; resend with --to DESTINATION" for letter in letters}
            else:
                failures = {f.path: f.reason for f in send_files(dest, [letter.path for letter in letters])}
            for letter in letters:
                if letter.path in failures:
                    self.add_attempt(letter, failures[letter.path])
                    failing.append(letter)
                else:
                    letter.path.with_name(letter.path.name + ".json").unlink(missing_ok=True)
                    letter.path.unlink(missing_ok=True)
                    sent += 1
        return sent, failing

    def add_attempt(self, letter: DeadLetter, reason: str) -> None:
        sidecar = letter.path.with_name(letter.path.name + ".json")
        meta = json.loads(sidecar.read_text())
        meta.update(reason=redact_text(reason), attempts=int(meta.get("attempts", 0)) + 1, failed_at=time.time())
        sidecar.write_text(json.dumps(meta, indent=1))
