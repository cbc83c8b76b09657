"""Celery tasks: score one chunk of a batch; transient trouble is retried, bad inputs fail once."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from skin_plugin.results import ScoreResult
from workers import metrics
from workers.app import app, settings
from workers.finalize import finalize_batch
from workers.process import context
from workers.scoring import Job, TransientError, result_record

log = logging.getLogger(__name__)
TRANSIENT = (TransientError, redis.ConnectionError, redis.TimeoutError, OSError)


def backoff_s(retries: int) -> float:
    """1, 2, 4, ... seconds, capped at a minute."""
    return float(min(60, 2 ** retries))


@app.task(bind=True, name="skin.score_chunk", acks_late=True, reject_on_worker_lost=True,
          max_retries=settings.max_retries)
def score_chunk(self: Any, batch_id: str, out_dir: str, jobs: list[dict[str, Any]], queue: str = "batch") -> int:
    """Score ``jobs`` (dicts of :class:`workers.scoring.Job`) of ``batch_id``; returns jobs recorded."""
    ctx = context()
    t0 = time.perf_counter()
    chunk = [Job.from_dict(j) for j in jobs]
    ctx.store.mark_started(batch_id)
    recorded = 0
    try:
        records = ctx.scorer.score(batch_id, out_dir, chunk)
        counts = ctx.store.record_jobs(batch_id, [(job.job_id, record) for job, record in records])
        recorded += sum(c >= 0 for c in counts)
    except TRANSIENT as exc:
        if self.request.retries < self.max_retries:
            log.warning("batch %s: transient error (%s), retry %d", batch_id, type(exc).__name__,
                        self.request.retries + 1)
            raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
        recorded += _fail_remaining(ctx, batch_id, chunk, f"gave up after {self.max_retries} retries: "
                                    f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - an unexpected bug still ends every job with a reason
        log.exception("batch %s: unexpected error", batch_id)
        recorded += _fail_remaining(ctx, batch_id, chunk, f"internal error: {type(exc).__name__}")
    if recorded:
        ctx.store.add_throughput(recorded)
    metrics.TASK_DURATION.labels(queue).observe(time.perf_counter() - t0)
    metrics.TASK_BATCH_SIZE.observe(len(chunk))
    status = ctx.store.status(batch_id)
    if status is not None and status.completed >= status.total and not status.reported:
        finalize_batch(ctx.store, batch_id, ctx.scorer.model)
    return recorded


def _fail_remaining(ctx: Any, batch_id: str, chunk: list[Job], reason: str) -> int:
    seen = ctx.store.recorded_jobs(batch_id)
    n = 0
    for job in chunk:
        if job.job_id in seen:
            continue
        frame = result_record(ScoreResult(job.path, error=reason, worker=ctx.name))
        n += ctx.store.record_job(batch_id, job.job_id, {"job_id": job.job_id, "input": job.path,
                                                          "frames": [frame], "reports": [], "error": reason,
                                                          "reused": False}) >= 0
        metrics.IMAGES_FAILED.labels("internal").inc()
    return n
