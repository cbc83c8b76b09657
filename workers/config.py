"""Worker and client settings, read from the environment (one place for every ``SKIN_*`` variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from skin_plugin.ir_manifest import DEFAULT_PRECISION
from skin_plugin.net.destination import Timeouts

QUEUES: tuple[str, ...] = ("urgent", "batch")
"""Celery queues (Redis lists), consumed in this order: ``urgent`` is always drained first."""
DEFAULT_QUEUE = "batch"
DEFAULT_RESULT_TTL_S = 24 * 3600
"""Batch state and job records (patient data until the batch is reported) expire after a day."""
DEFAULT_SCORED_TTL_S = 7 * 24 * 3600
"""Which SOP instances were scored (UIDs only) is remembered for a week: ``pull`` skips them."""
DEFAULT_ROUTE_RETRY_DELAYS_S: tuple[float, ...] = (2.0, 5.0, 15.0, 30.0)
"""Waits before the retries of undelivered SRs: dead-lettered after 5 attempts and ~1 min of waiting."""


def _seconds_list(name: str, value: str) -> tuple[float, ...]:
    """``"2,5,15,30"`` -> (2.0, 5.0, 15.0, 30.0); ``"none"``: no retry; a clear error otherwise."""
    if value.strip().lower() == "none":
        return ()
    try:
        delays = tuple(float(v) for v in value.split(","))
    except ValueError:
        delays = (-1.0,)
    if any(not 0 <= d <= 3600 for d in delays):
        raise ValueError(f"{name}: expected comma-separated seconds between 0 and 3600 (e.g. 2,5,15,30), "
                         f"got {value!r}")
    return delays


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ValueError(f"{name}: expected seconds above 0 (at most 3600), got {value!r}")
    return seconds


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
    timeouts: Timeouts = Timeouts()
    """Connect and read timeouts for DICOM/DICOMweb peers: routes, ``resend`` and ``pull``."""
    route_retry_delays_s: tuple[float, ...] = DEFAULT_ROUTE_RETRY_DELAYS_S
    """Seconds before each retry of a route's undelivered SRs; after the last retry they are dead-lettered."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """``SKIN_BROKER_URL``, ``SKIN_OUTPUT_DIR``, ``SKIN_DEVICE``, ``SKIN_PRECISION``, ``SKIN_CHUNK_SIZE``,
        ``SKIN_INFERENCE_THREADS``, ``SKIN_VISIBILITY_TIMEOUT``, ``SKIN_MAX_RETRIES``, ``SKIN_RESULT_TTL``,
        ``SKIN_SCORED_TTL``, ``SKIN_REDIS_TLS_CA_CERTS``, ``SKIN_NET_CONNECT_TIMEOUT``, ``SKIN_NET_READ_TIMEOUT``,
        ``SKIN_ROUTE_RETRY_DELAYS``; unset ones keep their defaults (a malformed one raises ValueError)."""
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
            timeouts=Timeouts(
                _seconds("SKIN_NET_CONNECT_TIMEOUT", env["SKIN_NET_CONNECT_TIMEOUT"])
                if env.get("SKIN_NET_CONNECT_TIMEOUT") else d.timeouts.connect_s,
                _seconds("SKIN_NET_READ_TIMEOUT", env["SKIN_NET_READ_TIMEOUT"])
                if env.get("SKIN_NET_READ_TIMEOUT") else d.timeouts.read_s),
            route_retry_delays_s=_seconds_list("SKIN_ROUTE_RETRY_DELAYS", env["SKIN_ROUTE_RETRY_DELAYS"])
            if env.get("SKIN_ROUTE_RETRY_DELAYS") else d.route_retry_delays_s,
        )

    def with_broker(self, broker_url: str) -> WorkerSettings:
        return replace(self, broker_url=broker_url)

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        env = {"SKIN_BROKER_URL": self.broker_url, "SKIN_OUTPUT_DIR": str(self.output_dir),
               "SKIN_DEVICE": self.device, "SKIN_PRECISION": self.precision,
               "SKIN_CHUNK_SIZE": str(self.chunk_size), "SKIN_VISIBILITY_TIMEOUT": str(self.visibility_timeout_s),
               "SKIN_MAX_RETRIES": str(self.max_retries), "SKIN_RESULT_TTL": str(self.result_ttl_s),
               "SKIN_SCORED_TTL": str(self.scored_ttl_s), "SKIN_NET_CONNECT_TIMEOUT": str(self.timeouts.connect_s),
               "SKIN_NET_READ_TIMEOUT": str(self.timeouts.read_s),
               "SKIN_ROUTE_RETRY_DELAYS": ",".join(str(d) for d in self.route_retry_delays_s) or "none"}
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
