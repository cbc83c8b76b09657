"""``skin-plugin`` subcommands of the queue: worker, submit, status, and the queued ``score`` path."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workers.config import DEFAULT_QUEUE, QUEUES, WorkerSettings

console = Console()
err = Console(stderr=True)

CLUSTER_FAILED = 3
"""Exit code of ``score`` when its embedded Redis or worker died (a rerun completes the batch)."""

BrokerOption = Annotated[str | None, typer.Option(
    help="Redis broker URL (default: $SKIN_BROKER_URL; score: an embedded Redis when neither is set).")]
QueueOption = Annotated[str, typer.Option(help=f"Queue: {' or '.join(QUEUES)} (urgent is drained first).")]


def _settings(broker: str | None) -> WorkerSettings:
    settings = WorkerSettings.from_env()
    return settings.with_broker(broker) if broker else settings


def _store(settings: WorkerSettings):
    from workers.store import BatchStore

    return BatchStore.from_settings(settings)


def worker_command(queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = ",".join(QUEUES),
                   concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: cores).")] = None,
                   broker: BrokerOption = None,
                   name: Annotated[str, typer.Option(help="Celery node name.")] = "skin@%h",
                   loglevel: str = "INFO") -> None:
    """Run a Celery worker (prefork: one model per child process) on the configured broker."""
    from workers.embedded import worker_command as build

    settings = _settings(broker)
    os.environ.update(settings.to_env())
    cmd = build(concurrency or os.cpu_count() or 1, tuple(q for q in queues.split(",") if q), name, loglevel)
    os.execv(cmd[0], cmd)


def submit_command(inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
                   out: Annotated[Path, typer.Option(help="Reports folder (shared with the workers).")],
                   broker: BrokerOption = None, queue: QueueOption = DEFAULT_QUEUE,
                   at: Annotated[str | None, typer.Option(help="Release at the next HH:MM (overnight window).")]
                   = None,
                   chunk_size: Annotated[int, typer.Option(help="Images per task.")] = 32) -> None:
    """Queue a batch on an existing cluster and print its id (follow it with ``skin-plugin status``)."""
    from skin_plugin.inputs import collect_inputs
    from workers.client import next_time_of_day, submit_batch

    files = collect_inputs(inputs)
    if not files:
        err.print("no input images found")
        raise typer.Exit(2)
    try:
        release = next_time_of_day(at) if at else None
        batch_id = submit_batch(_store(_settings(broker)), files, out, queue=queue, chunk_size=chunk_size,
                                release_at=release)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    when = f", released at {release:%Y-%m-%d %H:%M}" if release else ""
    err.print(f"batch {batch_id}: {len(files)} input(s) on queue {queue}{when}")
    print(batch_id)


def status_command(batch: Annotated[str | None, typer.Argument(help="Batch id (default: recent batches).")] = None,
                   broker: BrokerOption = None,
                   as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                   watch: Annotated[bool, typer.Option(help="Follow a batch with a live progress bar.")] = False,
                   ) -> None:
    """Progress of one batch (total, done, failed, started, finished, SRs delivered) or of the recent ones."""
    from skin_plugin.reports.delivery import DEAD_LETTER_DIR, Delivery
    from workers.client import wait_for_batch

    store = _store(_settings(broker))
    if batch and watch:
        wait_for_batch(store, batch, console=err)
    statuses = [store.status(batch)] if batch else store.recent_batches()
    if batch and statuses[0] is None:
        err.print(f"[red]no such batch: {batch}[/red]")
        raise typer.Exit(1)
    rows = [s.to_dict() for s in statuses if s is not None]
    if as_json:
        print(json.dumps(rows[0] if batch else {"batches": rows, "workers": store.live_workers()}, indent=1))
        return
    table = Table(title="batches")
    for col in ("batch", "state", "queue", "done", "failed", "total", "submitted", "out", "SRs delivered"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["batch_id"], r["state"], r["queue"], str(r["done"]), str(r["failed"]), str(r["total"]),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["submitted"] or 0)), r["out_dir"],
                      "\n".join(Delivery.from_dict(d).describe() for d in r["delivery"]) or "no route")
    console.print(table)
    for r in rows:
        if dead := sum(d["dead_lettered"] for d in r["delivery"]):
            letters = Path(r["out_dir"]) / DEAD_LETTER_DIR
            err.print(f"batch {r['batch_id']}: {dead} SR(s) not delivered, kept in {letters} with the reason; "
                      f"send them again with: skin-plugin resend {letters}", markup=False, soft_wrap=True)


def score_queued(files: list[Path], out: Path, *, broker: str | None, workers: int | None, queue: str,
                 chunk_size: int, precision: str | None, device: str, wait: bool) -> tuple[list, object | None]:
    """Run ``score`` through the queue: an existing broker, or an embedded Redis + workers.

    Returns (results, summary) when waiting, else ([], None) after printing the batch id.
    """
    import redis

    from skin_plugin.reports.summary import SUMMARY_NAME
    from workers.client import submit_batch, wait_for_batch
    from workers.embedded import ClusterFailedError, EmbeddedCluster
    from workers.finalize import batch_results

    env = WorkerSettings.from_env()
    settings = replace(env, precision=precision or env.precision, device=device, chunk_size=chunk_size)
    broker = broker or os.environ.get("SKIN_BROKER_URL")

    def run(s: WorkerSettings, cluster: EmbeddedCluster | None = None) -> tuple[list, object | None]:
        store = _store(s)
        batch_id = submit_batch(store, files, out, queue=queue, chunk_size=chunk_size)
        err.print(f"batch {batch_id}: {len(files)} input(s) queued on {queue}")
        if not wait:
            print(batch_id)
            return [], None
        try:
            wait_for_batch(store, batch_id, console=err, check=cluster.check if cluster else None)
        except (ClusterFailedError, redis.ConnectionError) as exc:
            failure = cluster.failure() if cluster else None
            if failure is None:
                raise
            status = store.status(batch_id) if cluster and cluster.server.proc.poll() is None else None
            done = f" at {status.completed}/{status.total}" if status else ""
            err.print(f"{failure}: batch {batch_id} stopped{done}. Reports written so far are in {out}; "
                      "run the same command again to score the batch completely.", style="red", markup=False,
                      soft_wrap=True)
            raise typer.Exit(CLUSTER_FAILED) from exc
        return batch_results(store, batch_id), json.loads((out / SUMMARY_NAME).read_text())

    if broker:
        return run(settings.with_broker(broker))
    n = workers or os.cpu_count() or 1
    err.print(f"no broker configured: starting an embedded Redis and {n} worker process(es)")
    with EmbeddedCluster(settings, n) as cluster:
        return run(cluster.settings, cluster)



def exporter_command(port: Annotated[int, typer.Option(help="HTTP port for /metrics and the status page.")] = 9808,
                     host: Annotated[str, typer.Option(
                         help="Bind address (default: this host only; 0.0.0.0 for every interface).")]
                     = "127.0.0.1",
                     broker: BrokerOption = None) -> None:
    """Serve Prometheus /metrics (open) and the status page and reports (need $SKIN_EXPORTER_* credentials)."""
    from skin_plugin.net.credentials import CredentialError, exporter_credentials
    from workers.exporter import serve

    try:
        credentials = exporter_credentials()
    except CredentialError as exc:
        err.print(f"exporter: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    server = serve(_settings(broker), host, port, credentials)
    access = ("status page and reports need the SKIN_EXPORTER_* credential" if credentials else
              "no SKIN_EXPORTER_* credential configured: the status page and reports are refused")
    err.print(f"exporter on http://{host}:{server.server_address[1]}/ (metrics at /metrics; {access})",
              markup=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
