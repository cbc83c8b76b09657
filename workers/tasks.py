"""Celery tasks: score one chunk of a batch; transient trouble is retried, bad inputs fail once, alone."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import redis

from skin_plugin.reports.delivery import DEAD_LETTER_DIR
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
        try:
            recorded, retry = _score_and_record(ctx, batch_id, out_dir, chunk)
        except TRANSIENT:
            raise
        except Exception:  # noqa: BLE001 - unexpected: score the jobs one by one, so it fails one job alone
            log.exception("batch %s: unexpected error in a chunk of %d jobs", batch_id, len(chunk))
            recorded, retry = _score_one_by_one(ctx, batch_id, out_dir, chunk)
        if retry:
            raise TransientError(f"{len(retry)} input(s): {retry[0][1]}")
    except TRANSIENT as exc:
        if self.request.retries < self.max_retries:
            log.warning("batch %s: transient error (%s), retry %d", batch_id, type(exc).__name__,
                        self.request.retries + 1)
            if recorded:
                ctx.store.add_throughput(recorded)
            raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
        recorded += _fail_remaining(ctx, batch_id, chunk, f"gave up after {self.max_retries} retries: "
                                    f"{type(exc).__name__}: {exc}")
    if recorded:
        ctx.store.add_throughput(recorded)
    metrics.TASK_DURATION.labels(queue).observe(time.perf_counter() - t0)
    metrics.TASK_BATCH_SIZE.observe(len(chunk))
    status = ctx.store.status(batch_id)
    if status is not None and status.completed >= status.total and not status.reported:
        finalize_batch(ctx.store, batch_id, ctx.scorer.model)
        if status.route:
            route_results.apply_async(kwargs={"batch_id": batch_id}, queue=queue)
    return recorded


@app.task(bind=True, name="skin.route_results", acks_late=True, reject_on_worker_lost=True, max_retries=None)
def route_results(self: Any, batch_id: str) -> int:
    """Send the batch's SRs to its route; retry after each of ``SKIN_ROUTE_RETRY_DELAYS``; then dead-letter
    what still fails. Delivery counts go to Redis, Prometheus and the batch's summary.json and report.html.
    Returns SRs sent."""
    from skin_plugin.net.dead_letter import DeadLetterBox
    from skin_plugin.net.destination import Destination
    from skin_plugin.net.sender import send_files
    from skin_plugin.reports.delivery import record_delivery
    from workers.finalize import sr_files

    ctx = context()
    status = ctx.store.status(batch_id)
    if status is None or not status.route or status.route_done:
        return 0
    dest = Destination.parse(status.route)
    label = str(dest)
    metrics.SR_SENT.labels(label)  # both series exist from the first attempt (alerts see them appear)
    metrics.SR_DEAD_LETTERED.labels(label)
    all_srs = sr_files(ctx.store.job_records(batch_id))
    ctx.store.set_sr_total(batch_id, len(all_srs))
    sent_before = ctx.store.routed_files(batch_id)
    files = [f for f in all_srs if f.name not in sent_before]
    failures = {f.path: f.reason for f in send_files(dest, files, settings.timeouts)}
    ctx.store.mark_routed(batch_id, label, [f.name for f in files if f not in failures])
    metrics.SR_SENT.labels(label).inc(len(files) - len(failures))
    delays = settings.route_retry_delays_s
    if failures and self.request.retries < len(delays):
        if len(files) > len(failures) and (progress := ctx.store.status(batch_id)) is not None:
            record_delivery(Path(status.out_dir), progress.delivery)  # some delivered: the files say so now
        log.warning("batch %s: %d SR(s) not delivered to %s (%s), retry %d of %d in %g s", batch_id,
                    len(failures), dest, next(iter(failures.values())), self.request.retries + 1, len(delays),
                    delays[self.request.retries])
        raise self.retry(countdown=delays[self.request.retries])
    box = DeadLetterBox(Path(status.out_dir) / DEAD_LETTER_DIR)
    for path, reason in failures.items():
        box.add(path, dest, reason, self.request.retries + 1)
    if failures:
        log.error("batch %s: %d SR(s) moved to the dead-letter folder after %d attempt(s): %s", batch_id,
                  len(failures), self.request.retries + 1, next(iter(failures.values())))
        metrics.SR_DEAD_LETTERED.labels(label).inc(len(failures))
    ctx.store.mark_routed(batch_id, label, [], failed=len(failures))
    ctx.store.mark_route_done(batch_id)
    final = ctx.store.status(batch_id)
    if final is not None:
        record_delivery(Path(status.out_dir), final.delivery)
    return len(files) - len(failures)


def _score_and_record(ctx: Any, batch_id: str, out_dir: str, jobs: list[Job]) -> tuple[int, list[tuple[Job, str]]]:
    """Score ``jobs`` and record them; (jobs recorded, jobs to retry with the reason)."""
    outcome = ctx.scorer.score(batch_id, out_dir, jobs)
    counts = ctx.store.record_jobs(batch_id, [(job.job_id, record) for job, record in outcome.records])
    return sum(c >= 0 for c in counts), outcome.retry


def _score_one_by_one(ctx: Any, batch_id: str, out_dir: str, chunk: list[Job]) -> tuple[int, list[tuple[Job, str]]]:
    """After an unexpected error in a chunk: each job alone; a job that still fails is recorded failed."""
    recorded, retry = 0, []
    for job in chunk:
        try:
            n, again = _score_and_record(ctx, batch_id, out_dir, [job])
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - this job fails alone, with a reason
            log.exception("batch %s: unexpected error in one job", batch_id)
            n, again = _fail_remaining(ctx, batch_id, [job], f"internal error: {type(exc).__name__}"), []
        recorded += n
        retry += again
    return recorded, retry


def _fail_remaining(ctx: Any, batch_id: str, chunk: list[Job], reason: str) -> int:
    """Record every job of ``chunk`` not recorded yet as failed with ``reason``; return how many."""
    records = [(job.job_id, {"job_id": job.job_id, "input": job.path, "reports": [], "error": reason,
                             "reused": False,
                             "frames": [result_record(ScoreResult(job.path, error=reason, worker=ctx.name))]})
               for job in chunk]
    n = sum(c >= 0 for c in ctx.store.record_jobs(batch_id, records))
    metrics.IMAGES_FAILED.labels("internal").inc(n)
    return n
