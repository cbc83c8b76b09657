"""Close a batch: ``summary.json`` (throughput, latency, queue wait, per worker) and ``report.html``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from skin_plugin.reports.html_report import write_html_report
from skin_plugin.reports.summary import BatchSummary
from skin_plugin.results import ModelIdentity, ScoreResult
from workers.scoring import result_from_record
from workers.store import PHI_REMOVED, BatchStore


def batch_frames(store: BatchStore, batch_id: str, records: list[dict[str, Any]] | None = None,
                 ) -> list[dict[str, Any]]:
    """Every frame record of the batch (of its ``records`` if given), in input order."""
    records = sorted(store.job_records(batch_id) if records is None else records, key=lambda r: r["job_id"])
    return [f for rec in records for f in rec["frames"]]


def sr_files(records: list[dict[str, Any]]) -> list[Path]:
    """Every SR among the reports of these job records (what a route delivers), sorted."""
    return sorted({Path(p) for rec in records for p in rec.get("reports", []) if p.endswith(".dcm")})


def batch_results(store: BatchStore, batch_id: str) -> list[ScoreResult]:
    """Every frame result of the batch, in input order."""
    return [result_from_record(f) for f in batch_frames(store, batch_id)]


def saved_thumbnails(frames: list[dict[str, Any]]) -> dict[int, str]:
    """Frame index -> data URI of the preview its worker kept (batches up to MAX_THUMBNAILS inputs)."""
    return {i: "data:image/jpeg;base64," + f["thumbnail"] for i, f in enumerate(frames) if f.get("thumbnail")}


def remove_orphan_temp_files(out: Path) -> int:
    """Delete temporary report files a killed worker left behind (every job is recorded by now)."""
    removed = 0
    for folder in ("sr", "json"):
        for tmp in (out / folder).glob("*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def finalize_batch(store: BatchStore, batch_id: str, model: ModelIdentity) -> BatchSummary | None:
    """Write the batch's summary and HTML report once every job is recorded; None if not complete yet.

    Safe to run twice (a redelivered last task): both runs write the same files atomically.
    """
    status = store.status(batch_id)
    if status is None or status.completed < status.total or not status.out_dir:
        return None  # not complete, or its state was lost (e.g. Redis flushed): nothing safe to write
    if not status.finished:
        store.mark_finished(batch_id)
        status = store.status(batch_id)
        assert status is not None
    records = store.job_records(batch_id)
    frames = batch_frames(store, batch_id, records)
    if any(f.get(PHI_REMOVED) for f in frames):
        return None  # another run reported it already and removed its patient data from Redis
    results = [result_from_record(f) for f in frames]
    wall_s = (status.finished or time.time()) - (status.submitted or time.time())
    summary = BatchSummary.from_results(results, wall_s, model, batch_id=batch_id)
    if status.route:  # routing starts next: every SR pending
        store.set_sr_total(batch_id, len(sr_files(records)))
        routed = store.status(batch_id)
        summary = replace(summary, delivery=routed.delivery if routed else ())
    out = Path(status.out_dir)
    remove_orphan_temp_files(out)
    summary.write(out)
    write_html_report(results, summary, out, thumbnails=saved_thumbnails(frames),
                      thumbnails_from="none",
                      title=f"Skin-lesion scoring report — batch {batch_id}")
    store.drop_payloads(batch_id)  # every job is recorded: nothing left to send again
    store.mark_reported(batch_id)
    store.forget_phi(batch_id)  # report.html holds it now: Redis keeps no patient data or preview
    return summary
