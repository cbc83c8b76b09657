"""Delivery of a batch's SRs, per destination: sent, pending, dead-lettered; and its place in the batch files.

One :class:`Delivery` per destination (stored redacted: no credential), counted by the queue while routing
and by ``skin-plugin resend`` afterwards. ``summary.json`` (``delivery``) and ``report.html`` (a section
between :data:`HTML_START` and :data:`HTML_END`) are written with it when a batch is reported and rewritten
by :func:`record_delivery` whenever it changes, so every view of a batch says where its results went.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

from skin_plugin.reports.json_report import write_json, write_text_atomic

HTML_START, HTML_END = "<!--delivery-->", "<!--/delivery-->"
"""Markers around the delivery section of ``report.html`` (user text is escaped: it cannot hold them)."""
DEAD_LETTER_DIR = "dead-letter"
"""Under a batch's output folder: SRs that could not be delivered (``skin-plugin resend`` sends them)."""


@dataclass(frozen=True)
class Delivery:
    """SRs of one batch for one destination (``dicom://...`` or ``dicomweb+http...``, redacted)."""

    destination: str
    sent: int = 0
    pending: int = 0
    """Not yet delivered nor given up (routing is still retrying)."""
    dead_lettered: int = 0
    """In the batch's dead-letter folder after the last retry (``skin-plugin resend`` sends them)."""

    def to_dict(self) -> dict[str, Any]:
        return {"destination": self.destination, "sent": self.sent, "pending": self.pending,
                "dead_lettered": self.dead_lettered}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Delivery:
        return cls(str(d["destination"]), int(d.get("sent", 0)), int(d.get("pending", 0)),
                   int(d.get("dead_lettered", 0)))

    def describe(self) -> str:
        """``3 sent, 0 pending, 2 dead-lettered to dicom://PACS@host:104?calling=SKINAI``."""
        return f"{self.sent} sent, {self.pending} pending, {self.dead_lettered} dead-lettered to {self.destination}"


def delivery_counts(route: str | None, sr_total: int, sent: Mapping[str, int], dead: Mapping[str, int],
                    route_done: bool) -> tuple[Delivery, ...]:
    """Per destination, the batch's route first: what is pending is the route's SRs neither sent nor
    dead-lettered while routing runs (none once it is done); other destinations come from resends."""
    others = sorted((set(sent) | set(dead)) - {route})
    out = []
    for dest in ([route] if route else []) + others:
        s, d = max(0, sent.get(dest, 0)), max(0, dead.get(dest, 0))
        pending = max(0, sr_total - s - d) if dest == route and not route_done else 0
        out.append(Delivery(dest, s, pending, d))
    return tuple(out)


def after_resend(deliveries: Sequence[Delivery], moved: Iterable[tuple[str, str, int]]) -> tuple[Delivery, ...]:
    """``deliveries`` once ``n`` dead letters of destination ``a`` were delivered to ``b``, for each (a, b, n)."""
    by_dest = {d.destination: d for d in deliveries}
    for source, target, n in moved:
        old = by_dest.get(source, Delivery(source))
        by_dest[source] = replace(old, dead_lettered=max(0, old.dead_lettered - n))
        new = by_dest.get(target, Delivery(target))
        by_dest[target] = replace(new, sent=new.sent + n)
    return tuple(by_dest.values())


def delivery_html(deliveries: Sequence[Delivery]) -> str:
    """The ``report.html`` section (with its markers): one row per destination."""
    if not deliveries:
        body = '<p class="empty">No route: SRs are written to the batch folder (sr/) only.</p>'
    else:
        rows = "".join(
            f'<tr class="{"dead" if d.dead_lettered else "ok"}"><td>{escape(d.destination)}</td><td>{d.sent}</td>'
            f"<td>{d.pending}</td><td>{d.dead_lettered}</td></tr>" for d in deliveries)
        dead = sum(d.dead_lettered for d in deliveries)
        note = (f'<p class="src"><b>{dead} SR(s) not delivered</b>: they are in {DEAD_LETTER_DIR}/ with the '
                f"reason; <code>skin-plugin resend OUT/{DEAD_LETTER_DIR}</code> sends them again.</p>" if dead else "")
        body = (f'<table class="failed"><tr><th>destination</th><th>sent</th><th>pending</th>'
                f"<th>dead-lettered</th></tr>{rows}</table>{note}")
    return f"{HTML_START}<h2>Delivery of the SRs</h2>{body}{HTML_END}"


def read_delivery(out_dir: Path) -> tuple[Delivery, ...] | None:
    """The delivery recorded in ``out_dir/summary.json`` (None without a summary)."""
    from skin_plugin.reports.summary import SUMMARY_NAME

    path = Path(out_dir) / SUMMARY_NAME
    if not path.is_file():
        return None
    return tuple(Delivery.from_dict(d) for d in json.loads(path.read_text("utf-8")).get("delivery", []))


def record_delivery(out_dir: Path, deliveries: Sequence[Delivery] | None = None,
                    moved: Iterable[tuple[str, str, int]] = ()) -> tuple[Delivery, ...] | None:
    """Rewrite the delivery of ``summary.json`` and ``report.html`` in ``out_dir``: ``deliveries``, or the
    recorded one after the ``moved`` resends (:func:`after_resend`). Atomic per file, one writer at a time.
    Returns what was written (None: the batch has no summary yet)."""
    from skin_plugin.reports.html_report import REPORT_NAME
    from skin_plugin.reports.summary import SUMMARY_NAME

    out = Path(out_dir)
    summary_path = out / SUMMARY_NAME
    if not summary_path.is_file():
        return None
    lock = os.open(out, os.O_RDONLY)  # the folder itself: the files are replaced, not rewritten in place
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = json.loads(summary_path.read_text("utf-8"))
        current = tuple(Delivery.from_dict(d) for d in summary.get("delivery", []))
        new = tuple(deliveries) if deliveries is not None else after_resend(current, moved)
        summary["delivery"] = [d.to_dict() for d in new]
        write_json(summary, summary_path)
        report = out / REPORT_NAME
        if report.is_file():
            html = report.read_text("utf-8")
            pattern = re.compile(re.escape(HTML_START) + ".*?" + re.escape(HTML_END), re.DOTALL)
            if pattern.search(html):
                write_text_atomic(pattern.sub(lambda _: delivery_html(new), html, count=1), report)
    finally:
        os.close(lock)  # releases the lock
    return new
