"""One input per report name in a queued batch: the first job to claim a DICOM instance (its SOP
Instance UID) or a photo (its path) owns the reports named after it; a later job fails with the reason.

Redis key: ``skin:batch:<id>:owners`` hash, sha256 of the report owner (no path or UID is stored) ->
``"<job id> <input sha256>"``; it expires with the batch's job records. A redelivered job finds its own
claim and keeps it.
"""

from __future__ import annotations

import hashlib

from skin_plugin.pipeline import duplicate_reason
from workers.store import BatchStore, batch_key


def owners_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:owners"


def _field(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def claim_report_owners(store: BatchStore, batch_id: str,
                        claims: list[tuple[str, str, str | None]]) -> dict[str, str]:
    """Claim ``(owner, job id, input sha256)`` for each job; return job id -> reason for the jobs
    whose report name another job of the batch holds (one round trip, plus one for the losers)."""
    if not claims:
        return {}
    key = owners_key(batch_id)
    pipe = store.r.pipeline(transaction=False)
    for owner, job_id, digest in claims:
        pipe.hsetnx(key, _field(owner), f"{job_id} {digest or ''}")
    pipe.expire(key, store.ttl_s)
    won = pipe.execute()[:-1]
    lost = [claim for claim, ok in zip(claims, won) if not ok]
    if not lost:
        return {}
    reasons = {}
    for (owner, job_id, digest), holder in zip(lost, store.r.hmget(key, [_field(owner) for owner, _, _ in lost])):
        holder_job, _, holder_digest = (holder or "").partition(" ")
        if holder_job != job_id:
            reasons[job_id] = duplicate_reason(owner, bool(digest) and holder_digest == digest)
    return reasons
