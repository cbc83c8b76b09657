"""Close a batch: ``summary.json`` (throughput, latency, queue wait, per worker) and ``report.html``."""

from __future__ import annotations

import time
from pathlib import Path

from skin_plugin.reports.html_report import jpeg_data_uri, write_html_report
from skin_plugin.reports.summary import BatchSummary
from skin_plugin.results import ModelIdentity, ScoreResult
from workers.scoring import result_from_record
from workers.store import BatchStore

MAX_THUMBNAILS = 2000
"""Above this many results the HTML report shows no previews (it would grow too large)."""


def batch_results(store: BatchStore, batch_id: str) -> list[ScoreResult]:
    """Every frame result of the batch, in input order."""
    records = sorted(store.job_records(batch_id), key=lambda r: r["job_id"])
    return [result_from_record(f) for rec in records for f in rec["frames"]]


def saved_thumbnails(store: BatchStore, batch_id: str, n_results: int) -> dict[int, str]:
    """Result index -> data URI of the thumbnail its worker saved (none above MAX_THUMBNAILS results)."""
    if n_results > MAX_THUMBNAILS:
        return {}
    records = sorted(store.job_records(batch_id), key=lambda r: r["job_id"])
    uris, i = {}, 0
    for rec in records:
        thumbs = [p for p in rec.get("reports", []) if p.endswith(".jpg")]
        for k, _frame in enumerate(rec["frames"]):
            if k < len(thumbs) and Path(thumbs[k]).is_file():
                uris[i] = jpeg_data_uri(Path(thumbs[k]).read_bytes())
            i += 1
    return uris


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
    results = batch_results(store, batch_id)
    wall_s = (status.finished or time.time()) - (status.submitted or time.time())
    summary = BatchSummary.from_results(results, wall_s, model, batch_id=batch_id)
    out = Path(status.out_dir)
    summary.write(out)
    write_html_report(results, summary, out, thumbnails=saved_thumbnails(store, batch_id, len(results)),
                      thumbnails_from="none",
                      title=f"Skin-lesion scoring report — batch {batch_id}")
    store.mark_reported(batch_id)
    return summary
