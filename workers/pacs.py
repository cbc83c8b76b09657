"""``skin-plugin listen``, ``pull`` and ``resend``: images in from a PACS, results back to it."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from skin_plugin.net.limits import ListenerLimits
from workers.config import WorkerSettings

if TYPE_CHECKING:
    from skin_plugin.net.dicomweb_pull import PullResult
    from workers.embedded import EmbeddedCluster

err = Console(stderr=True)
log = logging.getLogger(__name__)

RouteOption = Annotated[str | None, typer.Option(
    help="Send the SRs back: dicom://AET@host:port or dicomweb+http(s)://host/dicom-web.")]
BrokerOption = Annotated[str | None, typer.Option(
    help="Redis broker URL (default: $SKIN_BROKER_URL, else an embedded Redis and workers).")]
LIMITS = ListenerLimits()


def _checked_route(route: str | None, option: str = "--route") -> str | None:
    """``route`` if it parses as a destination (and holds no secret), else a one-line error and exit 2."""
    from skin_plugin.net.destination import Destination, DestinationError

    try:
        return str(Destination.parse(route)) if route else None
    except DestinationError as exc:
        err.print(f"{option}: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _checked_settings(broker: str | None = None) -> WorkerSettings:
    """The settings from the environment (``broker`` first), else a one-line error and exit 2."""
    try:
        settings = WorkerSettings.from_env()
    except ValueError as exc:
        err.print(str(exc), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return settings.with_broker(broker) if broker else settings


def _queue(stack: ExitStack, broker: str | None, workers: int | None) -> tuple[WorkerSettings, EmbeddedCluster | None]:
    """Settings of the queue to use: the given/configured broker, or an embedded one kept open by ``stack``
    (returned too, to watch its processes)."""
    from workers.embedded import EmbeddedCluster

    settings = _checked_settings()
    broker = broker or os.environ.get("SKIN_BROKER_URL")
    if broker:
        return settings.with_broker(broker), None
    n = workers or os.cpu_count() or 1
    err.print(f"no broker configured: starting an embedded Redis and {n} worker process(es)")
    cluster = stack.enter_context(EmbeddedCluster(settings, n))
    return cluster.settings, cluster


def listen_command(out: Annotated[Path, typer.Option(help="Reports root: one folder per batch.")],
                   ae_title: Annotated[str, typer.Option(help="Our AE title.")] = "SKINAI",
                   port: Annotated[int, typer.Option(help="DICOM port.")] = 11112,
                   host: Annotated[str, typer.Option(
                       help="Bind address (default: this host only; 0.0.0.0 for every interface).")] = "127.0.0.1",
                   allow_ae: Annotated[list[str] | None, typer.Option(
                       help="Calling AE title allowed to store (repeat; default: $SKIN_ALLOWED_AES, else any).")]
                   = None,
                   spool: Annotated[Path | None, typer.Option(help="Spool folder (default: $SKIN_SPOOL_DIR "
                                                                    "or OUT/.spool).")] = None,
                   stable_seconds: Annotated[float, typer.Option(help="A study is queued after this quiet time.")]
                   = 5.0,
                   queue: Annotated[str, typer.Option(help="Queue for received studies.")] = "urgent",
                   route: RouteOption = None, broker: BrokerOption = None,
                   workers: Annotated[int | None, typer.Option(help="Embedded worker processes.")] = None,
                   accept_all_storage: Annotated[bool, typer.Option(
                       envvar="SKIN_ACCEPT_ALL_STORAGE",
                       help="Accept every standard storage SOP class (whole studies routed by a PACS); only "
                            "photographs are scored, the rest is acknowledged and ignored (default: "
                            "$SKIN_ACCEPT_ALL_STORAGE, else off: other classes are refused at association).")]
                   = False,
                   spool_retention_hours: Annotated[float | None, typer.Option(
                       help="Keep a study's received files this long after its batch is reported and routed "
                            "(default: $SKIN_SPOOL_RETENTION_HOURS, else 0: delete then).")] = None,
                   max_associations: Annotated[int, typer.Option(help="Concurrent associations.")]
                   = LIMITS.max_associations,
                   max_connections: Annotated[int, typer.Option(
                       help="Concurrent connections, associated or not.")] = LIMITS.max_connections,
                   max_pdu: Annotated[int, typer.Option(help="Maximum PDU size in bytes.")] = LIMITS.max_pdu_bytes,
                   max_instance_mb: Annotated[float, typer.Option(help="Largest instance one C-STORE may carry.")]
                   = LIMITS.max_instance_bytes / 2**20,
                   acse_timeout: Annotated[float, typer.Option(help="Seconds to send the association request.")]
                   = LIMITS.acse_timeout_s,
                   dimse_timeout: Annotated[float, typer.Option(help="Seconds to wait for a DIMSE message.")]
                   = LIMITS.dimse_timeout_s,
                   network_timeout: Annotated[float, typer.Option(help="Idle seconds before an abort.")]
                   = LIMITS.network_timeout_s) -> None:
    """Receive photographs over DICOM (C-STORE SCP), spool them, and score each study once it is stable."""
    from skin_plugin.net.limits import ListenerLimits
    from skin_plugin.net.listener import StoreListener
    from skin_plugin.net.spool import Spool
    from workers.spool_queue import SpoolQueue
    from workers.store import BatchStore

    route = _checked_route(route)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    allowed = allow_ae or [a for a in os.environ.get("SKIN_ALLOWED_AES", "").split(",") if a.strip()]
    spool_dir = spool or (Path(os.environ["SKIN_SPOOL_DIR"]) if os.environ.get("SKIN_SPOOL_DIR") else out / ".spool")
    retention_h = spool_retention_hours if spool_retention_hours is not None else float(
        os.environ.get("SKIN_SPOOL_RETENTION_HOURS") or 0)
    try:
        limits = ListenerLimits(max_pdu, int(max_instance_mb * 2**20), max_associations, max_connections,
                                acse_timeout, dimse_timeout, network_timeout)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    with ExitStack() as stack:
        settings, cluster = _queue(stack, broker, workers)
        batches = SpoolQueue(BatchStore.from_settings(settings), out, queue, route)
        listener = StoreListener(Spool(spool_dir, batches, stable_seconds, retention_h * 3600), ae_title, port,
                                 host, [a.strip() for a in allowed], limits,
                                 accept_all_storage=accept_all_storage).start()
        accepted = "every storage SOP class (photographs scored)" if accept_all_storage else "photographs only"
        err.print(f"listening as {ae_title} on {host}:{port} ({accepted}); spool {spool_dir}; reports under {out}")
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"]:
                if cluster is not None and (failure := cluster.failure()):
                    # exit for the service manager to restart us: the spool is resubmitted on start
                    log.error("%s: stopping; received studies stay in the spool and are queued on restart", failure)
                    raise typer.Exit(3)
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            listener.stop()


def pull_command(dicomweb: Annotated[str, typer.Option(help="DICOMweb root URL, e.g. http://pacs/dicom-web.")],
                 out: Annotated[Path, typer.Option(help="Reports folder of the batch.")],
                 since: Annotated[str | None, typer.Option(help="Only studies from this date (YYYYMMDD).")] = None,
                 modality: Annotated[str | None, typer.Option(help="Only this modality (e.g. XC).")] = None,
                 spool: Annotated[Path | None, typer.Option(help="Where retrieved files are kept.")] = None,
                 queue: Annotated[str, typer.Option(help="Queue (default: the overnight one).")] = "batch",
                 route: RouteOption = None, broker: BrokerOption = None,
                 wait: Annotated[bool, typer.Option(help="Wait for the batch (embedded: always).")] = False,
                 workers: Annotated[int | None, typer.Option(help="Embedded worker processes.")] = None) -> None:
    """Query a DICOMweb archive (QIDO-RS) for photographs not yet scored, retrieve them (WADO-RS), queue them.

    Credentials: ``SKIN_DICOMWEB_USERNAME`` + ``SKIN_DICOMWEB_PASSWORD[_FILE]`` or ``SKIN_DICOMWEB_TOKEN[_FILE]``.
    """
    from skin_plugin.net.credentials import redact_url
    from skin_plugin.net.dicomweb_pull import PullError, check_since, pull_new_instances
    from workers.client import submit_batch, wait_for_batch
    from workers.embedded import ClusterFailedError
    from workers.store import BatchStore

    route = _checked_route(route)  # before pulling anything
    try:
        since = check_since(since) if since else None
    except ValueError as exc:
        err.print(f"pull: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    with ExitStack() as stack:
        embedded = not (broker or os.environ.get("SKIN_BROKER_URL"))
        settings, cluster = _queue(stack, broker, workers)
        store = BatchStore.from_settings(settings)
        try:
            pulled = pull_new_instances(dicomweb, spool or out / ".pulled", store, since=since, modality=modality,
                                        timeouts=settings.timeouts)
        except PullError as exc:
            err.print(f"pull: {exc}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        _print_pulled(redact_url(dicomweb), since, pulled)
        if not pulled.files:
            err.print("nothing new to score")
            return
        files = pulled.files
        batch = submit_batch(store, files, out, queue=queue, route=route)
        err.print(f"queued {len(files)} instance(s) on {queue}: batch {batch}")
        print(batch)
        if wait or embedded:
            try:
                status = wait_for_batch(store, batch, console=err, check=cluster.check if cluster else None)
            except ClusterFailedError as exc:  # the embedded worker or Redis died: the next pull fetches again
                err.print(f"{exc}: batch {batch} not finished; run the pull again", style="red", markup=False,
                          soft_wrap=True)
                raise typer.Exit(3) from exc
            err.print(f"{status.done} scored, {status.failed} failed"
                      + "".join(f"; SRs: {d.describe()}" for d in status.delivery), markup=False, soft_wrap=True)


def _print_pulled(server: str, since: str | None, pulled: PullResult) -> None:
    """What a pull found and skipped, one line each."""
    by_other = ", ".join(f"{n} by {attr}" for attr, n in pulled.dated_otherwise.items())
    when = f" dated {since} or later" if since else ""
    other = f" ({by_other}: their StudyDate is empty)" if by_other else ""
    err.print(f"found {pulled.found} photographic instance(s){when} at {server}{other}", markup=False,
              soft_wrap=True)
    if pulled.unmatchable_dates:
        err.print(f"note: the archive cannot match {', '.join(pulled.unmatchable_dates)}: instances with an empty "
                  "StudyDate dated only by them are not found with --since", markup=False, soft_wrap=True)
    invalid = f", {pulled.invalid_uid} with an invalid UID" if pulled.invalid_uid else ""
    err.print(f"skipped {pulled.already_scored} already scored by this model{invalid}", markup=False, soft_wrap=True)


def resend_command(folder: Annotated[Path, typer.Argument(help="A dead-letter folder (OUT/dead-letter).")],
                   to: Annotated[str | None, typer.Option(help="Another destination than the recorded one.")]
                   = None, broker: BrokerOption = None) -> None:
    """Send the SRs of a dead-letter folder again; those that still fail stay there, with their new reason.

    The batch's delivery counts follow: its summary.json and report.html (the folder above), its state in
    Redis if the queue still knows it, and Prometheus (``skin_sr_sent_total``) with PROMETHEUS_MULTIPROC_DIR.
    """
    from skin_plugin.net.dead_letter import DeadLetterBox
    from skin_plugin.net.destination import Destination

    to = _checked_route(to, "--to")
    settings = _checked_settings(broker)
    if not folder.is_dir():
        err.print(f"resend: {folder} is not a folder (give OUT/dead-letter)", style="red", markup=False)
        raise typer.Exit(2)
    result = DeadLetterBox(folder).resend(Destination.parse(to) if to else None, settings.timeouts)
    err.print(f"{result.sent} sent, {len(result.failing)} still failing")
    for letter in result.failing:
        err.print(f"  {letter.path.name}: {letter.reason}", markup=False, soft_wrap=True)
    if result.moved:
        _count_resent(folder.resolve().parent, settings, result.moved,
                      explicit=bool(broker or os.environ.get("SKIN_BROKER_URL")))
    if result.failing:
        raise typer.Exit(1)


def _count_resent(out: Path, settings: WorkerSettings, moved: tuple[tuple[str, str, int], ...],
                  explicit: bool) -> None:
    """Move the resent SRs from dead-lettered to sent in the batch's files, Redis and Prometheus."""
    import redis

    from skin_plugin.reports.delivery import record_delivery
    from skin_plugin.reports.summary import SUMMARY_NAME
    from workers import metrics
    from workers.store import BatchStore, connect

    for _, target, n in moved:
        metrics.SR_SENT.labels(target).inc(n)
    delivery = record_delivery(out, moved=moved)
    if delivery is None:
        return
    batch_id = json.loads((out / SUMMARY_NAME).read_text("utf-8")).get("batch_id")
    if delivery:
        err.print("delivery: " + "; ".join(d.describe() for d in delivery), markup=False, soft_wrap=True)
    if not batch_id:
        return
    try:
        store = BatchStore(connect(settings, retries=0))
        for source, target, n in moved:
            store.mark_resent(batch_id, source, target, n)
    except redis.RedisError as exc:  # the files are updated; the queue's copy expires by itself
        if explicit:  # else the batch ran on an embedded Redis, gone with its run: nothing to say
            err.print(f"batch {batch_id}: its state in Redis was not updated ({type(exc).__name__})", markup=False)
