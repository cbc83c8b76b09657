"""Batch and job state in Redis: progress counters, one record per job, idempotency markers.

Keys (all under ``skin:``):

- ``skin:batch:<id>`` hash: total, done, failed, completed, queue, out_dir, submitted, started, finished,
  reported; with a route: route, sr_total, routed, route_failed, route_done and per destination
  ``sent:<destination>`` / ``dead:<destination>`` (SRs delivered / now in the dead-letter folder)
- ``skin:batch:<id>:payloads`` string: the batch's task payloads, kept until it is reported (resending
  lost jobs)
- ``skin:batch:<id>:jobs`` hash: job id -> JSON job record (first record wins: a redelivered task
  cannot count a job twice). Its patient data (the attributes report.html shows, and a preview) is
  removed by :meth:`BatchStore.forget_phi` once the batch's report is written.
- ``skin:batches`` sorted set: batch id by submission time (recent batches for ``status``)
- ``skin:done:<model sha>:<input key>`` string: the JSON record of the last scoring of that input by
  that model (idempotency: the same input is not scored twice by the same model)
- ``skin:sop:<model sha>:<SOP Instance UID>``: that DICOM instance was scored by that model (kept for
  ``SKIN_SCORED_TTL``: ``pull`` skips it)
- ``skin:scheduled`` sorted set: batch id by release time; ``skin:scheduled:<id>`` its task payloads
- ``skin:worker:<name>`` string with a TTL: heartbeat of a live worker process
- ``skin:throughput:<unix minute>`` integer with a 25 h TTL: images completed in that minute
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from skin_plugin.reports.delivery import Delivery, delivery_counts
from workers.config import DEFAULT_RESULT_TTL_S, DEFAULT_SCORED_TTL_S, WorkerSettings, redis_client_url

PREFIX = "skin:"
BATCHES = PREFIX + "batches"
SCHEDULED = PREFIX + "scheduled"
WORKER_HEARTBEAT_TTL_S = 30

# Record a job once, count it, return the number of completed jobs (or -1 if already recorded).
# Both keys expire ARGV[4] seconds after the batch's last progress.
_RECORD_JOB = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('HSET', KEYS[1], 'progress_at', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('HINCRBY', KEYS[1], 'completed', 1)
"""

REPORT_PHI_FIELDS = frozenset({"patient_name", "patient_id", "patient_sex", "patient_age", "study_date",
                               "accession_number"})
"""The patient attributes of a source that ``report.html`` shows: the only ones stored in Redis (the
others, e.g. birth date, study ID and time, go into the SR and never into Redis)."""
PHI_REMOVED = "phi_removed"
SENT_FIELD, DEAD_FIELD = "sent:", "dead:"
"""Prefixes of the batch hash's per-destination delivery counts."""
"""Set on every frame of a job record whose patient data was removed (the batch is reported)."""


def _phi_fields() -> tuple[str, ...]:
    from skin_plugin.dicom.records import DicomSourceInfo

    return DicomSourceInfo.phi_fields()


def stored_record(record: dict[str, Any], keep: frozenset[str] = REPORT_PHI_FIELDS) -> dict[str, Any]:
    """``record`` as Redis may hold it: each frame's source reduced to ``keep`` of its patient data;
    with ``keep`` empty, also without previews, and marked :data:`PHI_REMOVED`."""
    if "frames" not in record:
        return record
    drop = set(_phi_fields()) - keep
    frames = []
    for frame in record["frames"]:
        frame = dict(frame)
        if frame.get("source"):
            frame["source"] = {k: v for k, v in frame["source"].items() if k not in drop}
        if not keep:
            frame.pop("thumbnail", None)
            frame[PHI_REMOVED] = True
        frames.append(frame)
    return dict(record, frames=frames)


def connect(settings: WorkerSettings, retries: int = 20) -> redis.Redis:
    """A Redis client that rides out short broker outages (exponential backoff, ~1 minute with 20 retries)."""
    kwargs: dict[str, Any] = {
        "retry": Retry(ExponentialBackoff(cap=5.0, base=0.1), retries=retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError, ConnectionRefusedError],
        "socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 15,
        "decode_responses": True,
    }
    if settings.redis_tls_ca_certs and settings.broker_url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = settings.redis_tls_ca_certs
    return redis.Redis.from_url(redis_client_url(settings.broker_url), **kwargs)


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def jobs_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:jobs"


@dataclass(frozen=True)
class BatchStatus:
    """Progress of one batch, as ``skin-plugin status`` shows it."""

    batch_id: str
    total: int
    done: int
    failed: int
    queue: str
    out_dir: str
    submitted: float | None
    started: float | None
    finished: float | None
    release_at: float | None = None
    reported: float | None = None
    """When summary.json and report.html were written."""
    route: str | None = None
    """Destination the SRs are sent back to (``dicom://...`` or ``dicomweb+http...``), if any."""
    routed: int = 0
    route_failed: int = 0
    route_done: float | None = None
    """SRs delivered (to any destination) / now in the dead-letter folder; when routing gave up or finished."""
    sr_total: int = 0
    """SRs the batch routes (known once it is reported)."""
    delivery: tuple[Delivery, ...] = ()
    """Per destination: sent, pending, dead-lettered (the route first, then resend targets)."""

    @property
    def completed(self) -> int:
        return self.done + self.failed

    @property
    def settled(self) -> bool:
        """Reports written and, with a route, every SR delivered or dead-lettered."""
        return bool(self.reported) and (not self.route or bool(self.route_done))

    @property
    def state(self) -> str:
        if self.finished and self.route and not self.route_done:
            return "sending"
        if self.finished and self.route_failed > 0:
            return "dead-lettered"  # reported, but SRs are not in the archive: `skin-plugin resend`
        if self.finished:
            return "finished"
        if self.release_at and not self.started:
            return "scheduled"
        return "running" if self.started else "queued"

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "state": self.state, "total": self.total, "done": self.done,
                "failed": self.failed, "queue": self.queue, "out_dir": self.out_dir,
                "submitted": self.submitted, "started": self.started, "finished": self.finished,
                "release_at": self.release_at, "reported": self.reported, "route": self.route,
                "routed": self.routed, "route_failed": self.route_failed, "route_done": self.route_done,
                "sr_total": self.sr_total, "delivery": [d.to_dict() for d in self.delivery]}


def _float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


class BatchStore:
    """All reads and writes of batch/job state; every write is idempotent or atomic."""

    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_RESULT_TTL_S,
                 settings: WorkerSettings | None = None, scored_ttl_s: int = DEFAULT_SCORED_TTL_S) -> None:
        self.r = client
        self.settings = settings
        """The settings this store was made from (the Celery broker of the same Redis)."""
        self.ttl_s = ttl_s
        """Batch state, job records and idempotency records expire this long after their last write."""
        self.scored_ttl_s = scored_ttl_s
        """SOP instances scored (UIDs only) are remembered this long."""
        self._record = client.register_script(_RECORD_JOB)

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> BatchStore:
        return cls(connect(settings), settings.result_ttl_s, settings, settings.scored_ttl_s)

    # --- batches -------------------------------------------------------------------------
    def create_batch(self, batch_id: str, total: int, queue: str, out_dir: str,
                     release_at: float | None = None, route: str | None = None) -> None:
        now = time.time()
        fields = {"total": total, "done": 0, "failed": 0, "completed": 0, "queue": queue,
                  "out_dir": out_dir, "submitted": now}
        if release_at:
            fields["release_at"] = release_at
        if route:
            from skin_plugin.net.credentials import redact_url

            fields["route"] = redact_url(route)
        pipe = self.r.pipeline()
        pipe.hset(batch_key(batch_id), mapping=fields)
        pipe.expire(batch_key(batch_id), self.ttl_s + int(max(0.0, (release_at or now) - now)))
        pipe.zadd(BATCHES, {batch_id: now})
        pipe.execute()

    def keep_payloads(self, batch_id: str, payloads: list[dict[str, Any]]) -> None:
        """The batch's task payloads, so jobs whose message was lost can be sent again."""
        self.r.set(f"{batch_key(batch_id)}:payloads", json.dumps(payloads), ex=self.ttl_s)

    def drop_payloads(self, batch_id: str) -> None:
        """Forget a reported batch's task payloads (input paths): nothing is left to send again."""
        self.r.delete(f"{batch_key(batch_id)}:payloads")

    def payloads(self, batch_id: str) -> list[dict[str, Any]]:
        raw = self.r.get(f"{batch_key(batch_id)}:payloads")
        return json.loads(raw) if raw else []

    def last_progress(self, batch_id: str) -> float:
        """When a job of the batch was last recorded (else when it was submitted or released)."""
        h = self.r.hmget(batch_key(batch_id), "progress_at", "submitted", "release_at")
        return max(float(v) for v in h if v)

    def claim_requeue(self, batch_id: str, hold_s: float) -> bool:
        """One caller at a time may requeue a batch's lost jobs."""
        return bool(self.r.set(f"{batch_key(batch_id)}:requeue", 1, nx=True, ex=max(1, int(hold_s))))

    def mark_started(self, batch_id: str) -> None:
        self.r.hsetnx(batch_key(batch_id), "started", time.time())

    def mark_finished(self, batch_id: str) -> bool:
        """True for the one caller that sets the finish time."""
        return bool(self.r.hsetnx(batch_key(batch_id), "finished", time.time()))

    def mark_reported(self, batch_id: str) -> None:
        self.r.hset(batch_key(batch_id), "reported", time.time())

    def status(self, batch_id: str) -> BatchStatus | None:
        h = self.r.hgetall(batch_key(batch_id))
        if not h:
            return None
        route, route_done, sr_total = h.get("route") or None, _float(h.get("route_done")), int(h.get("sr_total", 0))
        sent = {k[len(SENT_FIELD):]: int(v) for k, v in h.items() if k.startswith(SENT_FIELD)}
        dead = {k[len(DEAD_FIELD):]: int(v) for k, v in h.items() if k.startswith(DEAD_FIELD)}
        return BatchStatus(batch_id, int(h.get("total", 0)), int(h.get("done", 0)), int(h.get("failed", 0)),
                           h.get("queue", ""), h.get("out_dir", ""), _float(h.get("submitted")),
                           _float(h.get("started")), _float(h.get("finished")), _float(h.get("release_at")),
                           _float(h.get("reported")), route, int(h.get("routed", 0)),
                           max(0, int(h.get("route_failed", 0))), route_done, sr_total,
                           delivery_counts(route, sr_total, sent, dead, bool(route_done)))

    def recent_batches(self, limit: int = 20) -> list[BatchStatus]:
        ids = self.r.zrevrange(BATCHES, 0, limit - 1)
        return [s for s in (self.status(i) for i in ids) if s is not None]

    # --- jobs ----------------------------------------------------------------------------
    def record_job(self, batch_id: str, job_id: str, record: dict[str, Any]) -> int:
        """Store a job's record once; return completed jobs of the batch, or -1 if it was recorded already."""
        outcome = "failed" if record.get("error") else "done"
        return int(self._record(keys=[batch_key(batch_id), jobs_key(batch_id)],
                                args=[job_id, json.dumps(stored_record(record)), outcome, self.ttl_s, time.time()]))

    def record_jobs(self, batch_id: str, items: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """:meth:`record_job` for many jobs in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id, record in items:
            outcome = "failed" if record.get("error") else "done"
            self._record(keys=[batch_key(batch_id), jobs_key(batch_id)],
                         args=[job_id, json.dumps(stored_record(record)), outcome, self.ttl_s, time.time()],
                         client=pipe)
        return [int(v) for v in pipe.execute()]

    def forget_phi(self, batch_id: str) -> None:
        """Remove the patient data and previews from the batch's job records (its report is written).

        Atomic (WATCH/MULTI): a reader sees every record with its patient data or every record without.
        """
        key = jobs_key(batch_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    scrubbed = {job: json.dumps(stored_record(json.loads(raw), frozenset()))
                                for job, raw in pipe.hgetall(key).items()}
                    pipe.multi()
                    if scrubbed:
                        pipe.hset(key, mapping=scrubbed)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def set_sr_total(self, batch_id: str, n: int) -> None:
        """How many SRs the batch routes (what is pending is counted from it)."""
        self.r.hset(batch_key(batch_id), "sr_total", n)

    def mark_routed(self, batch_id: str, destination: str, sent: list[str], failed: int = 0) -> None:
        """Count SRs delivered to ``destination`` (remembered by file name so a retry does not send them twice)
        and ``failed`` ones put in the dead-letter folder."""
        key = batch_key(batch_id)
        pipe = self.r.pipeline()
        if sent:
            pipe.sadd(f"{key}:sent", *sent)
            pipe.expire(f"{key}:sent", self.ttl_s)
            pipe.hincrby(key, "routed", len(sent))
            pipe.hincrby(key, SENT_FIELD + destination, len(sent))
        if failed:
            pipe.hincrby(key, "route_failed", failed)
            pipe.hincrby(key, DEAD_FIELD + destination, failed)
        pipe.execute()

    def mark_resent(self, batch_id: str, source: str, target: str, n: int) -> bool:
        """``n`` dead letters of ``source`` were delivered to ``target`` (``skin-plugin resend``); False if
        Redis no longer knows the batch."""
        key = batch_key(batch_id)
        if not n or not self.r.exists(key):
            return False
        pipe = self.r.pipeline()
        pipe.hincrby(key, "route_failed", -n)
        pipe.hincrby(key, DEAD_FIELD + source, -n)
        pipe.hincrby(key, "routed", n)
        pipe.hincrby(key, SENT_FIELD + target, n)
        pipe.execute()
        return True

    def mark_route_done(self, batch_id: str) -> None:
        self.r.hsetnx(batch_key(batch_id), "route_done", time.time())

    def routed_files(self, batch_id: str) -> set[str]:
        return set(self.r.smembers(f"{batch_key(batch_id)}:sent"))

    def recorded_jobs(self, batch_id: str) -> set[str]:
        return set(self.r.hkeys(jobs_key(batch_id)))

    def recorded_among(self, batch_id: str, job_ids: list[str]) -> set[str]:
        """Which of ``job_ids`` are recorded (one round trip, independent of the batch's size)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hexists(jobs_key(batch_id), job_id)
        return {job_id for job_id, found in zip(job_ids, pipe.execute()) if found}

    def job_records(self, batch_id: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.r.hvals(jobs_key(batch_id))]

    # --- idempotency ---------------------------------------------------------------------
    def previous_results(self, model_sha: str, input_keys: list[str | None]) -> list[dict[str, Any] | None]:
        """What this model recorded for each input before (None: never scored, or no key)."""
        keys = [k for k in input_keys if k]
        raw = dict(zip(keys, self.r.mget([f"{PREFIX}done:{model_sha}:{k}" for k in keys]))) if keys else {}
        return [json.loads(raw[k]) if k and raw.get(k) else None for k in input_keys]

    def remember_results(self, model_sha: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for input_key, record in items:
            pipe.set(f"{PREFIX}done:{model_sha}:{input_key}", json.dumps(stored_record(record)), ex=self.ttl_s)
        pipe.execute()

    def remember_sops(self, model_sha: str, sop_uids: list[str]) -> None:
        """DICOM instances this model scored (``pull`` skips them before retrieving anything)."""
        if sop_uids:
            pipe = self.r.pipeline(transaction=False)
            for uid in sop_uids:
                pipe.set(f"{PREFIX}sop:{model_sha}:{uid}", 1, ex=self.scored_ttl_s)
            pipe.execute()

    def scored_sops(self, model_sha: str, sop_uids: list[str]) -> set[str]:
        if not sop_uids:
            return set()
        values = self.r.mget([f"{PREFIX}sop:{model_sha}:{uid}" for uid in sop_uids])
        return {uid for uid, v in zip(sop_uids, values) if v}

    # --- scheduled batches ---------------------------------------------------------------
    def schedule(self, batch_id: str, release_at: float, payloads: list[dict[str, Any]]) -> None:
        ttl = self.ttl_s + int(max(0.0, release_at - time.time()))  # kept until released, then as any batch
        pipe = self.r.pipeline()
        pipe.set(f"{SCHEDULED}:{batch_id}", json.dumps(payloads), ex=ttl)
        pipe.expire(f"{batch_key(batch_id)}:payloads", ttl)
        pipe.zadd(SCHEDULED, {batch_id: release_at})
        pipe.execute()

    def claim_due(self, now: float | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
        """Scheduled batches whose time has come; each is returned to exactly one caller."""
        claimed = []
        for batch_id in self.r.zrangebyscore(SCHEDULED, "-inf", now or time.time()):
            if self.r.zrem(SCHEDULED, batch_id):  # only one caller wins the removal
                raw = self.r.get(f"{SCHEDULED}:{batch_id}")
                claimed.append((batch_id, json.loads(raw) if raw else []))
        return claimed

    def unschedule(self, batch_id: str) -> None:
        self.r.delete(f"{SCHEDULED}:{batch_id}")

    # --- throughput history ---------------------------------------------------------------
    def add_throughput(self, images: int, when: float | None = None) -> None:
        key = f"{PREFIX}throughput:{int((when or time.time()) // 60)}"
        pipe = self.r.pipeline()
        pipe.incrby(key, images)
        pipe.expire(key, 25 * 3600)
        pipe.execute()

    def throughput_per_minute(self, minutes: int = 24 * 60, now: float | None = None) -> list[tuple[int, int]]:
        """(unix minute, images) for the last ``minutes`` minutes, oldest first, zeros included."""
        last = int((now or time.time()) // 60)
        mins = list(range(last - minutes + 1, last + 1))
        values = self.r.mget([f"{PREFIX}throughput:{m}" for m in mins])
        return [(m, int(v or 0)) for m, v in zip(mins, values)]

    # --- workers -------------------------------------------------------------------------
    def heartbeat(self, worker: str, info: dict[str, Any]) -> None:
        self.r.set(f"{PREFIX}worker:{worker}", json.dumps(info), ex=WORKER_HEARTBEAT_TTL_S)

    def remove_worker(self, worker: str) -> None:
        self.r.delete(f"{PREFIX}worker:{worker}")

    def live_workers(self) -> dict[str, dict[str, Any]]:
        keys = list(self.r.scan_iter(f"{PREFIX}worker:*", count=100))
        values = self.r.mget(keys) if keys else []
        return {k[len(PREFIX) + 7:]: json.loads(v) for k, v in zip(keys, values) if v}
