"""Batch summary (schema ``summary-1.2``): counts, failures, throughput, latency and delivery of one scoring run.

Free of PHI: inputs are named by path only and failure reasons come from the reader, whose messages
never quote header values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skin_plugin.constants import CLASS_CODES
from skin_plugin.reports.delivery import Delivery
from skin_plugin.reports.json_report import DISCLAIMER, utc_now, write_json
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import REVIEW_REASONS, ReviewThresholds, review_reasons

SUMMARY_SCHEMA_VERSION = "1.2"
"""1.2: ``delivery`` of the SRs per destination (1.1: review flags; the image report stays 1.1)."""
SUMMARY_SCHEMA_NAME = f"summary-{SUMMARY_SCHEMA_VERSION}"
SUMMARY_SCHEMA_ID = f"urn:skin-lesion-plugin:schema:summary:{SUMMARY_SCHEMA_VERSION}"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class FailedInput:
    input: str
    reason: str


@dataclass(frozen=True)
class WorkerThroughput:
    worker: str
    images: int
    images_per_s: float | None


IN_PROCESS_WORKER = "in-process"


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


@dataclass(frozen=True)
class BatchSummary:
    """What happened to a batch; ``images`` counts every result (scored frames + failed inputs)."""

    model: ModelIdentity
    images: int
    scored: int
    failed: tuple[FailedInput, ...]
    wall_s: float
    images_per_s: float | None
    """``images / wall_s`` (None for a zero wall time)."""
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    counts: dict[str, int]
    """Predicted class -> number of scored frames (every class present, zeros included)."""
    flagged: int
    """Scored frames flagged for review (for any reason)."""
    flag_reasons: dict[str, int]
    """Reason (``REVIEW_REASONS``) -> scored frames it flags (a frame may have several reasons)."""
    thresholds: ReviewThresholds
    created: str
    batch_id: str | None = None
    queue_wait_p50_ms: float | None = None
    queue_wait_p95_ms: float | None = None
    workers: tuple[WorkerThroughput, ...] = ()
    delivery: tuple[Delivery, ...] = ()
    """SRs sent back per destination (empty: no route); :func:`~skin_plugin.reports.delivery.record_delivery`
    rewrites it in summary.json as SRs are delivered, when routing gives up and after each resend."""

    @classmethod
    def from_results(cls, results: list[ScoreResult], wall_s: float, model: ModelIdentity, *,
                     thresholds: ReviewThresholds | None = None,
                     created: str | None = None, batch_id: str | None = None) -> BatchSummary:
        """``thresholds`` None: the model's (``ModelIdentity.review``)."""
        thresholds = thresholds or model.review
        scored = [r for r in results if r.ok and r.probabilities is not None]
        failed = tuple(FailedInput(r.input, r.error or "unknown error") for r in results if not r.ok)
        p50, p95 = _percentiles([r.latency_ms for r in scored if r.latency_ms is not None])
        w50, w95 = _percentiles([r.queue_wait_ms for r in scored if r.queue_wait_ms is not None])
        per_worker: dict[str, int] = {}
        for r in scored:
            key = r.worker or IN_PROCESS_WORKER
            per_worker[key] = per_worker.get(key, 0) + 1
        workers = tuple(WorkerThroughput(w, n, n / wall_s if wall_s > 0 else None)
                        for w, n in sorted(per_worker.items()))
        counts = dict.fromkeys(CLASS_CODES, 0)
        flag_reasons = dict.fromkeys(REVIEW_REASONS, 0)
        flagged = 0
        for r in scored:
            counts[r.label] += 1
            reasons = review_reasons(r.probabilities, r.label, thresholds)
            flagged += bool(reasons)
            for reason in reasons:
                flag_reasons[reason] += 1
        return cls(model=model, images=len(results), scored=len(scored), failed=failed,
                   wall_s=float(wall_s), images_per_s=len(results) / wall_s if wall_s > 0 else None,
                   latency_p50_ms=p50, latency_p95_ms=p95, counts=counts, flagged=flagged,
                   flag_reasons=flag_reasons, thresholds=thresholds, created=created or utc_now(),
                   batch_id=batch_id, queue_wait_p50_ms=w50, queue_wait_p95_ms=w95, workers=workers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the layout of ``schemas/summary-1.2.json``."""
        def rounded(v: float | None, digits: int = 3) -> float | None:
            return None if v is None else round(v, digits)

        return {
            "schema": SUMMARY_SCHEMA_ID,
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "created": self.created,
            "disclaimer": DISCLAIMER,
            "model": self.model.to_dict(),
            "images": self.images,
            "scored": self.scored,
            "failed": [asdict(f) for f in self.failed],
            "wall_s": rounded(self.wall_s),
            "images_per_s": rounded(self.images_per_s, 2),
            "latency_p50_ms": rounded(self.latency_p50_ms),
            "latency_p95_ms": rounded(self.latency_p95_ms),
            "counts": dict(self.counts),
            "flagged": self.flagged,
            "flag_reasons": dict(self.flag_reasons),
            "thresholds": self.thresholds.to_dict(),
            "batch_id": self.batch_id,
            "queue_wait_p50_ms": rounded(self.queue_wait_p50_ms),
            "queue_wait_p95_ms": rounded(self.queue_wait_p95_ms),
            "workers": [{"worker": w.worker, "images": w.images, "images_per_s": rounded(w.images_per_s, 2)}
                        for w in self.workers],
            "delivery": [d.to_dict() for d in self.delivery],
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write ``summary.json`` into ``out_dir``; return its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return write_json(self.to_dict(), out / SUMMARY_NAME)
