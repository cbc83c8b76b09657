"""Worker and client settings, read from the environment (one place for every ``SKIN_*`` variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from skin_plugin.ir_manifest import DEFAULT_PRECISION

QUEUES: tuple[str, ...] = ("urgent", "batch")
"""Celery queues (Redis lists), consumed in this order: ``urgent`` is always drained first."""
DEFAULT_QUEUE = "batch"
DEFAULT_RESULT_TTL_S = 24 * 3600
"""Batch state and job records (patient data until the batch is reported) expire after a day."""
DEFAULT_SCORED_TTL_S = 7 * 24 * 3600
"""Which SOP instances were scored (UIDs only) is remembered for a week: ``pull`` skips them."""


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker or a submitting client needs; see :meth:`from_env` for the variables."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    output_dir: Path = Path("reports")
    device: str = "CPU"
    precision: str = DEFAULT_PRECISION
    chunk_size: int = 32
    """Images per task: one inference call and one Redis round trip per chunk."""
    inference_threads: int | None = None
    """OpenVINO threads per worker process (None = OpenVINO's default: all cores)."""
    visibility_timeout_s: int = 3600
    """A task taken by a worker that died is handed out again after this long (Redis transport)."""
    max_retries: int = 8
    """Transient errors (I/O, broker) retried with exponential backoff this many times."""
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    """Batch state, per-job records and idempotency records expire from Redis this long after their last
    write (job records lose their patient data as soon as the batch is reported)."""
    scored_ttl_s: int = DEFAULT_SCORED_TTL_S
    """How long Redis remembers which SOP instances were scored (UIDs only, for ``pull``)."""
    redis_tls_ca_certs: str | None = None
    """CA bundle for ``rediss://`` brokers."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """``SKIN_BROKER_URL``, ``SKIN_OUTPUT_DIR``, ``SKIN_DEVICE``, ``SKIN_PRECISION``, ``SKIN_CHUNK_SIZE``,
        ``SKIN_INFERENCE_THREADS``, ``SKIN_VISIBILITY_TIMEOUT``, ``SKIN_MAX_RETRIES``, ``SKIN_RESULT_TTL``,
        ``SKIN_SCORED_TTL``, ``SKIN_REDIS_TLS_CA_CERTS``; unset ones keep their defaults."""
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: object, cast: type = str) -> object:
            value = env.get(name)
            return default if value in (None, "") else cast(value)

        return cls(
            broker_url=str(get("SKIN_BROKER_URL", d.broker_url)),
            output_dir=Path(str(get("SKIN_OUTPUT_DIR", d.output_dir))),
            device=str(get("SKIN_DEVICE", d.device)),
            precision=str(get("SKIN_PRECISION", d.precision)),
            chunk_size=int(get("SKIN_CHUNK_SIZE", d.chunk_size, int)),  # type: ignore[arg-type]
            inference_threads=get("SKIN_INFERENCE_THREADS", None, int),  # type: ignore[arg-type]
            visibility_timeout_s=int(get("SKIN_VISIBILITY_TIMEOUT", d.visibility_timeout_s, int)),  # type: ignore[arg-type]
            max_retries=int(get("SKIN_MAX_RETRIES", d.max_retries, int)),  # type: ignore[arg-type]
            result_ttl_s=int(get("SKIN_RESULT_TTL", d.result_ttl_s, int)),  # type: ignore[arg-type]
            scored_ttl_s=int(get("SKIN_SCORED_TTL", d.scored_ttl_s, int)),  # type: ignore[arg-type]
            redis_tls_ca_certs=get("SKIN_REDIS_TLS_CA_CERTS", None),  # type: ignore[arg-type]
        )

    def with_broker(self, broker_url: str) -> WorkerSettings:
        return replace(self, broker_url=broker_url)

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        env = {"SKIN_BROKER_URL": self.broker_url, "SKIN_OUTPUT_DIR": str(self.output_dir),
               "SKIN_DEVICE": self.device, "SKIN_PRECISION": self.precision,
               "SKIN_CHUNK_SIZE": str(self.chunk_size), "SKIN_VISIBILITY_TIMEOUT": str(self.visibility_timeout_s),
               "SKIN_MAX_RETRIES": str(self.max_retries), "SKIN_RESULT_TTL": str(self.result_ttl_s),
               "SKIN_SCORED_TTL": str(self.scored_ttl_s)}
        if self.inference_threads:
            env["SKIN_INFERENCE_THREADS"] = str(self.inference_threads)
        if self.redis_tls_ca_certs:
            env["SKIN_REDIS_TLS_CA_CERTS"] = self.redis_tls_ca_certs
        return env


def redis_client_url(broker_url: str) -> str:
    """The redis-py URL for a Celery broker URL (``redis+socket:///path`` -> ``unix:///path``)."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url[len("redis+socket://"):]
    return broker_url
