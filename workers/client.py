"""Submit batches to the queue, release scheduled ones, and follow their progress."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.config import QUEUES, WorkerSettings
from workers.scoring import Job
from workers.store import BatchStatus, BatchStore

TASK_NAME = "skin.score_chunk"


def next_time_of_day(hhmm: str, now: datetime | None = None) -> datetime:
    """The next local ``HH:MM`` (today if still ahead, else tomorrow)."""
    try:
        hour, minute = (int(p) for p in hhmm.split(":"))
        now = now or datetime.now()
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError as exc:
        raise ValueError(f"not a time of day (HH:MM): {hhmm!r}") from exc
    return at if at > now else at + timedelta(days=1)


@functools.lru_cache(maxsize=8)
def _producer_app(settings: WorkerSettings) -> Celery:
    from workers.app import make_app

    return make_app(settings)


def _send(store: BatchStore, payloads: list[dict[str, Any]]) -> None:
    """Publish task messages on the broker of ``store`` (the Redis that holds the batch state)."""
    app = _producer_app(store.settings or WorkerSettings.from_env())
    now = time.time()
    with app.producer_or_acquire() as producer:
        for p in payloads:
            jobs = [dict(j, enqueued_at=now) for j in p["jobs"]]
            app.send_task(TASK_NAME, kwargs=dict(p, jobs=jobs), queue=p["queue"], producer=producer,
                          headers={"enqueued_at": now})


def submit_batch(store: BatchStore, files: list[Path], out_dir: Path, *, queue: str = "batch",
                 chunk_size: int = 32, release_at: datetime | None = None, batch_id: str | None = None,
                 route: str | None = None) -> str:
    """Register a batch and enqueue its chunks (or schedule them for ``release_at``); return its id.

    ``route``: a destination (``dicom://AET@host:port`` or ``dicomweb+http(s)://.../dicom-web``) the
    workers send the batch's SRs back to once it is scored.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    if route:
        from skin_plugin.net.destination import Destination

        route = str(Destination.parse(route))  # fail now, not after scoring
    batch_id = batch_id or datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    out = str(Path(out_dir).resolve())
    now = time.time()
    jobs = [Job(f"{i:07d}", str(Path(f).resolve()), now) for i, f in enumerate(files)]
    payloads = [{"batch_id": batch_id, "out_dir": out, "queue": queue,
                 "jobs": [j.to_dict() for j in jobs[i:i + chunk_size]]} for i in range(0, len(jobs), chunk_size)]
    release_ts = release_at.timestamp() if release_at else None
    store.create_batch(batch_id, len(jobs), queue, out, release_ts, route)
    store.keep_payloads(batch_id, payloads)
    if release_ts and release_ts > now:
        store.schedule(batch_id, release_ts, payloads)
    else:
        _send(store, payloads)
    return batch_id


def release_due_batches(store: BatchStore) -> list[str]:
    """Enqueue scheduled batches whose time has come (called by every worker's heartbeat)."""
    released = []
    for batch_id, payloads in store.claim_due():
        _send(store, payloads)
        store.unschedule(batch_id)
        released.append(batch_id)
    return released


def requeue_lost_jobs(store: BatchStore, stall_s: float, now: float | None = None) -> list[str]:
    """Send again the unrecorded jobs of batches that stalled with their queue empty (heartbeat).

    Kombu's Redis transport can lose a message whose consumer died between taking it off the list and
    storing it as unacknowledged; a killed worker's acknowledged-late tasks come back by themselves
    after the visibility timeout, so ``stall_s`` must be longer than that. Duplicates are harmless:
    a job is recorded once.
    """
    now = now or time.time()
    requeued = []
    for status in store.recent_batches(100):
        if status.state not in ("queued", "running") or status.completed >= status.total:
            continue
        if now - store.last_progress(status.batch_id) < stall_s or store.r.llen(status.queue) > 0:
            continue
        if not store.claim_requeue(status.batch_id, stall_s):
            continue
        payloads = []
        for p in store.payloads(status.batch_id):
            recorded = store.recorded_among(status.batch_id, [j["job_id"] for j in p["jobs"]])
            jobs = [j for j in p["jobs"] if j["job_id"] not in recorded]
            if jobs:
                payloads.append(dict(p, jobs=jobs))
        if payloads:
            _send(store, payloads)
            requeued.append(status.batch_id)
    return requeued


def wait_for_batch(store: BatchStore, batch_id: str, *, console: Console | None = None,
                   timeout_s: float | None = None, poll_s: float = 0.2,
                   check: Callable[[], None] | None = None) -> BatchStatus:
    """Block until the batch's reports are written (and its SRs routed, if it has a route), with a live
    progress bar; return the final status.

    ``check`` runs at every poll and raises if the batch can no longer finish (e.g.
    :meth:`workers.embedded.EmbeddedCluster.check`: its worker died)."""
    console = console or Console(stderr=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = store.status(batch_id)
    if status is None:
        raise KeyError(f"no such batch: {batch_id}")
    with Progress(TextColumn("[bold]batch {task.fields[batch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("scoring", total=status.total, batch=batch_id, info="")
        while True:
            if check is not None:
                check()  # before reading the store: a dead embedded Redis would stall the read in retries
            status = store.status(batch_id)
            assert status is not None
            progress.update(task, completed=status.completed,
                            info=f"{status.state}, {status.failed} failed, {len(store.live_workers())} workers")
            if status.settled:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} not finished after {timeout_s} s "
                                   f"({status.completed}/{status.total})")
            time.sleep(poll_s)
