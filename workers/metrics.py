"""Prometheus metrics written by worker processes (multiprocess-safe) and names read by the exporter.

Worker processes write to ``PROMETHEUS_MULTIPROC_DIR`` (set it before the worker starts); the exporter
aggregates those files and adds the live queue view (see :mod:`workers.exporter`).
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import review_reasons

IMAGES_SCORED = Counter(
    "skin_images_scored", "Images (frames) processed, by outcome, predicted class and worker",
    ["outcome", "label", "worker"])
IMAGES_FLAGGED = Counter(
    "skin_images_flagged", "Scored images flagged for review (for any reason), by worker", ["worker"])
REVIEW_REASONS = Counter(
    "skin_review_reasons", "Review reasons raised, by reason (one image may raise several)", ["reason"])
IMAGES_FAILED = Counter("skin_images_failed", "Inputs that failed, by reason", ["reason"])
TASK_DURATION = Histogram(
    "skin_task_duration_seconds", "Wall time of one scoring task (one chunk of images)", ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
TASK_BATCH_SIZE = Histogram(
    "skin_task_batch_size", "Images per scoring task", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
SR_SENT = Counter("skin_sr_sent", "SRs delivered (C-STORE or STOW-RS; routes and resends), by destination",
                  ["destination"])
SR_DEAD_LETTERED = Counter("skin_sr_dead_lettered", "SRs put in a dead-letter folder after the last retry, "
                           "by destination", ["destination"])
IMAGE_LATENCY = Histogram(
    "skin_image_latency_seconds", "Per image: decode + share of inference + reports",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1))

# Gauges computed by the exporter from Redis at scrape time (names kept here, one source of truth).
QUEUE_LENGTH = "skin_queue_length"
QUEUE_OLDEST_AGE = "skin_queue_oldest_job_age_seconds"
WORKERS_UP = "skin_workers_up"
MODEL_INFO = "skin_model_info"


def count_scored(result: ScoreResult, model: ModelIdentity, worker: str) -> None:
    """Count one processed frame: scored (by predicted class) or failed; if scored, its review flag and
    reasons under the model's thresholds (the ones its reports were written with)."""
    if not result.ok or result.label is None or result.probabilities is None:
        IMAGES_SCORED.labels("failed", "", worker).inc()
        return
    IMAGES_SCORED.labels("scored", result.label, worker).inc()
    reasons = review_reasons(result.probabilities, result.label, model.review)
    if reasons:
        IMAGES_FLAGGED.labels(worker).inc()
    for reason in reasons:
        REVIEW_REASONS.labels(reason).inc()


def reason_code(exc: BaseException) -> str:
    """``TruncatedFileError`` -> ``truncated_file``: a stable, low-cardinality failure label."""
    name = type(exc).__name__
    name = name[:-5] if name.endswith("Error") else name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
