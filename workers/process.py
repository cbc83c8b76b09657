"""Per worker process state: its name, the batch store, the scorer (model) and a heartbeat thread.

Everything is created lazily in the child process, after the fork: OpenVINO compiles there, never in
the Celery parent (a model compiled before the fork ran ~4x slower in the children).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from celery import signals

from workers.config import WorkerSettings
from workers.scoring import ChunkScorer
from workers.store import BatchStore

HEARTBEAT_INTERVAL_S = float(os.environ.get("SKIN_HEARTBEAT_INTERVAL", "10"))
STALL_MARGIN_S = 30.0
"""A batch is stalled after the visibility timeout plus this long without a recorded job."""
_node_name = os.environ.get("SKIN_WORKER_NAME") or socket.gethostname()


@dataclass
class WorkerContext:
    name: str
    settings: WorkerSettings
    store: BatchStore
    scorer: ChunkScorer


_context: WorkerContext | None = None
_context_pid: int | None = None


def process_name() -> str:
    """``<node>#<child index>``: stable across restarts, distinct per prefork child."""
    try:
        from billiard.process import current_process

        index = getattr(current_process(), "index", None)
    except ImportError:  # pragma: no cover
        index = None
    return f"{_node_name}#{index if index is not None else os.getpid()}"


def context() -> WorkerContext:
    """This process's context (created on first use, again after a fork)."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        from workers.app import settings

        store = BatchStore.from_settings(settings)
        name = process_name()
        _context = WorkerContext(name, settings, store, ChunkScorer(settings, store, name))
        _context_pid = os.getpid()
    return _context


def _heartbeat_loop(stop: threading.Event) -> None:
    from workers.client import release_due_batches, requeue_lost_jobs

    while not stop.is_set():
        try:
            ctx = context()
            ctx.store.heartbeat(ctx.name, {"pid": os.getpid(), "host": socket.gethostname(), "since": _started,
                                           "precision": ctx.settings.precision, "device": ctx.settings.device})
            release_due_batches(ctx.store)
            requeue_lost_jobs(ctx.store, ctx.settings.visibility_timeout_s + STALL_MARGIN_S)
        except Exception:  # noqa: BLE001 - a broker outage must not kill the heartbeat
            pass
        stop.wait(HEARTBEAT_INTERVAL_S)


_started = time.time()
_stop = threading.Event()


@signals.celeryd_after_setup.connect
def _remember_node(sender: str, **_: object) -> None:
    global _node_name
    if not os.environ.get("SKIN_WORKER_NAME"):
        _node_name = str(sender)


@signals.worker_init.connect
def _serve_worker_metrics(**_: object) -> None:
    """With ``SKIN_METRICS_PORT`` set, the worker's parent serves its children's metrics itself, on
    ``SKIN_METRICS_HOST`` (default 127.0.0.1; a container sets 0.0.0.0 for Prometheus to reach it).

    For hosts where the exporter cannot read this worker's ``PROMETHEUS_MULTIPROC_DIR`` (one container
    or pod per worker); on one machine the exporter aggregates that folder instead.
    """
    port = os.environ.get("SKIN_METRICS_PORT")
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not port or not mp_dir:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    os.makedirs(mp_dir, exist_ok=True)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=mp_dir)
    start_http_server(int(port), addr=os.environ.get("SKIN_METRICS_HOST") or "127.0.0.1", registry=registry)


@signals.worker_process_init.connect
def _start_process(**_: object) -> None:
    global _started
    _started = time.time()
    _stop.clear()
    try:  # compile the model and build the SR template now, so the first task does not pay for them
        context().scorer.warm_up()
    except Exception:  # noqa: BLE001 - a broken model fails the first task with its reason instead
        pass
    threading.Thread(target=_heartbeat_loop, args=(_stop,), name="skin-heartbeat", daemon=True).start()


@signals.worker_process_shutdown.connect
def _stop_process(**_: object) -> None:
    _stop.set()
    try:
        ctx = context()
        ctx.store.remove_worker(ctx.name)
    except Exception:  # noqa: BLE001
        pass
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
