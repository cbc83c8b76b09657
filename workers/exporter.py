"""``skin-plugin exporter``: Prometheus ``/metrics`` (workers' counters + the live queue) and a status page.

- ``/metrics``: what worker processes wrote to ``PROMETHEUS_MULTIPROC_DIR`` plus, read from Redis at
  scrape time, queue length and age of the oldest waiting job per queue, workers up, model info.
- ``/``: status page (workers, queues, throughput now and over 24 h, recent batches);
  ``/api/status``: the same as JSON; ``/batches/<id>/report.html``: a batch's HTML report (patient data).

Binds 127.0.0.1 unless told otherwise. ``/metrics`` (no patient data) is open; every other page needs the
credential of ``SKIN_EXPORTER_*`` (HTTP basic or bearer, :mod:`skin_plugin.net.credentials`) and, with
none configured, is refused (403): a forgotten setting never serves patient data openly.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from skin_plugin.net.credentials import EXPORTER_PREFIX, HttpCredentials
from workers import metrics
from workers.config import QUEUES, WorkerSettings
from workers.store import BatchStore

BATCH_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
DEFAULT_HOST = "127.0.0.1"
OPEN_PATHS = frozenset({"/metrics"})
"""Served without a credential (Prometheus): counters and gauges only, no patient data."""
NO_CREDENTIAL = (f"403 forbidden: the status page and reports need a credential and none is configured: set "
                 f"{EXPORTER_PREFIX}_USERNAME and {EXPORTER_PREFIX}_PASSWORD (or _PASSWORD_FILE), or "
                 f"{EXPORTER_PREFIX}_TOKEN (or _TOKEN_FILE), and restart the exporter\n")
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "X-Frame-Options": "DENY"}


def oldest_job_age_s(store: BatchStore, queue: str, now: float | None = None) -> float:
    """Age of the message that has waited longest in ``queue`` (0 when empty).

    Kombu LPUSHes and workers BRPOP, so the oldest message is the list's last element; its
    ``enqueued_at`` header is set by :func:`workers.client.submit_batch`.
    """
    raw = store.r.lindex(queue, -1)
    if raw is None:
        return 0.0
    try:
        enqueued = float(json.loads(raw)["headers"]["enqueued_at"])
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, (now or time.time()) - enqueued)


def model_labels(settings: WorkerSettings) -> dict[str, str]:
    from skin_plugin.ir_manifest import IRManifest

    m = IRManifest.load()
    return {"name": m.name, "version": m.version, "precision": settings.precision}


class QueueCollector:
    """Gauges read from Redis at scrape time (what Flower lacks: queue length and oldest-job age)."""

    def __init__(self, store: BatchStore, settings: WorkerSettings) -> None:
        self.store = store
        self.model = model_labels(settings)

    def collect(self) -> Iterator[Metric]:
        length = GaugeMetricFamily(metrics.QUEUE_LENGTH, "Task messages waiting per queue", labels=["queue"])
        age = GaugeMetricFamily(metrics.QUEUE_OLDEST_AGE, "Age of the oldest waiting task message per queue",
                                labels=["queue"])
        for q in QUEUES:
            length.add_metric([q], float(self.store.r.llen(q)))
            age.add_metric([q], oldest_job_age_s(self.store, q))
        yield length
        yield age
        yield GaugeMetricFamily(metrics.WORKERS_UP, "Worker processes with a live heartbeat",
                                value=float(len(self.store.live_workers())))
        info = GaugeMetricFamily(metrics.MODEL_INFO, "Model served by the workers", labels=list(self.model))
        info.add_metric(list(self.model.values()), 1.0)
        yield info


def build_registry(store: BatchStore, settings: WorkerSettings) -> CollectorRegistry:
    registry = CollectorRegistry()
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        from prometheus_client import multiprocess

        Path(mp_dir).mkdir(parents=True, exist_ok=True)
        multiprocess.MultiProcessCollector(registry, path=mp_dir)
    registry.register(QueueCollector(store, settings))
    return registry


def status_data(store: BatchStore) -> dict[str, Any]:
    """Everything the status page shows, as JSON."""
    series = store.throughput_per_minute()
    last5 = sum(n for _, n in series[-5:]) / 300.0
    return {
        "time": time.time(),
        "workers": store.live_workers(),
        "queues": {q: {"length": store.r.llen(q), "oldest_age_s": round(oldest_job_age_s(store, q), 1)}
                   for q in QUEUES},
        "throughput_images_per_s_5m": round(last5, 3),
        "images_24h": sum(n for _, n in series),
        "throughput_per_minute": series,
        "batches": [s.to_dict() for s in store.recent_batches(20)],
    }


def make_handler(store: BatchStore, registry: CollectorRegistry,
                 credentials: HttpCredentials | None = None) -> type[BaseHTTPRequestHandler]:
    """Request handler; pages other than :data:`OPEN_PATHS` need ``credentials`` (403 if None)."""
    from workers.status_page import render_status_page

    class Handler(BaseHTTPRequestHandler):
        server_version = "skin-plugin"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
            pass

        def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            """True if the request carries the credential; otherwise answers 401 or 403 and returns False."""
            if credentials is None:
                self._send(403, NO_CREDENTIAL.encode(), "text/plain; charset=utf-8", PRIVATE_HEADERS)
                return False
            if credentials.accepts(self.headers.get("Authorization")):
                return True
            self._send(401, b"401 unauthorized: this page needs the exporter's credential\n",
                       "text/plain; charset=utf-8", {**PRIVATE_HEADERS, "WWW-Authenticate": credentials.challenge()})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            try:
                if path not in OPEN_PATHS and not self._authorized():
                    return
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/api/status":
                    self._send(200, json.dumps(status_data(store)).encode(), "application/json", PRIVATE_HEADERS)
                elif path in ("/", "/index.html"):
                    self._send(200, render_status_page(status_data(store)).encode(), "text/html; charset=utf-8",
                               PRIVATE_HEADERS)
                elif m := re.fullmatch(r"/batches/([^/]+)/report\.html", path):
                    self._report(m.group(1))
                else:
                    self._send(404, b"not found\n", "text/plain")
            except Exception as exc:  # noqa: BLE001 - e.g. Redis down: say so, keep serving
                self._send(503, f"unavailable: {type(exc).__name__}\n".encode(), "text/plain")

        def _report(self, batch_id: str) -> None:
            status = store.status(batch_id) if BATCH_ID_RE.fullmatch(batch_id) else None
            report = Path(status.out_dir) / "report.html" if status else None
            if report is None or not report.is_file():
                self._send(404, b"no report for this batch\n", "text/plain")
                return
            self._send(200, report.read_bytes(), "text/html; charset=utf-8", PRIVATE_HEADERS)

    return Handler


def serve(settings: WorkerSettings, host: str = DEFAULT_HOST, port: int = 9808,
          credentials: HttpCredentials | None = None) -> ThreadingHTTPServer:
    """A started-but-not-serving HTTP server (call ``serve_forever``) asking for ``credentials``
    (:func:`skin_plugin.net.credentials.exporter_credentials`; None: only ``/metrics`` is served)."""
    store = BatchStore.from_settings(settings)
    server = ThreadingHTTPServer((host, port), make_handler(store, build_registry(store, settings), credentials))
    server.daemon_threads = True
    return server
