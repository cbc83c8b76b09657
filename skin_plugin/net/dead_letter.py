"""Results that could not be delivered: kept with their destination and reason, re-sendable.

``<dir>/<name>.dcm`` plus ``<dir>/<name>.dcm.json`` (``{"destination", "reason", "failed_at", "attempts"}``);
the destination and reason are stored redacted (no password or token ever lands in a sidecar).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from skin_plugin.net.credentials import redact_text, redact_url
from skin_plugin.net.destination import Destination, DestinationError, Timeouts
from skin_plugin.net.sender import send_files


@dataclass(frozen=True)
class DeadLetter:
    path: Path
    destination: str
    reason: str
    attempts: int


@dataclass(frozen=True)
class ResendResult:
    moved: tuple[tuple[str, str, int], ...]
    """(recorded destination, destination it was delivered to, SRs) for what was sent."""
    failing: tuple[DeadLetter, ...]
    """What still fails, with the reason of this attempt."""

    @property
    def sent(self) -> int:
        return sum(n for _, _, n in self.moved)


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

    def resend(self, destination: Destination | None = None, timeouts: Timeouts | None = None) -> ResendResult:
        """Send every letter again (to its own destination unless one is given), one attempt each; those that
        still fail stay, with their new reason."""
        by_dest: dict[str, list[DeadLetter]] = {}
        for letter in self.letters():
            by_dest.setdefault(str(destination) if destination else letter.destination, []).append(letter)
        moved: dict[tuple[str, str], int] = {}
        failing = []
        for dest_spec, letters in by_dest.items():
            try:
                dest = Destination.parse(dest_spec)
            except DestinationError as exc:  # e.g. an old sidecar whose URL held a password
                failures = {letter.path: f"{exc}; resend with --to DESTINATION" for letter in letters}
            else:
                dest_spec = str(dest)
                failures = {f.path: f.reason for f in send_files(dest, [letter.path for letter in letters], timeouts)}
            for letter in letters:
                if letter.path in failures:
                    failing.append(self.add_attempt(letter, failures[letter.path]))
                else:
                    letter.path.with_name(letter.path.name + ".json").unlink(missing_ok=True)
                    letter.path.unlink(missing_ok=True)
                    key = (letter.destination, dest_spec)
                    moved[key] = moved.get(key, 0) + 1
        return ResendResult(tuple((a, b, n) for (a, b), n in moved.items()), tuple(failing))

    def add_attempt(self, letter: DeadLetter, reason: str) -> DeadLetter:
        """Record a failed attempt with its reason; return the letter as it now stands."""
        sidecar = letter.path.with_name(letter.path.name + ".json")
        meta = json.loads(sidecar.read_text())
        meta.update(reason=redact_text(reason), attempts=int(meta.get("attempts", 0)) + 1, failed_at=time.time())
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(sidecar)
        return replace(letter, reason=meta["reason"], attempts=meta["attempts"])
