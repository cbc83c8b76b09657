"""``skin-plugin listen``: a C-STORE SCP for skin photographs that spools, then queues stable studies.

By default only the photographic storage classes (and Secondary Capture) are offered, so any other SOP
class is refused at association negotiation. With ``accept_all_storage`` (whole studies routed by a PACS)
every standard storage SOP class is accepted in every transfer syntax we know, so the sender never has to
transcode; instances that are not of a photographic class (radiology, our own SRs, ...) are acknowledged
with success, never spooled or scored, and counted and logged per association by SOP class only. An
association must be addressed to our AE title and, with an
allowlist, come from a listed calling AE title; every refusal is logged with the calling AE title and
the peer's address. :mod:`skin_plugin.net.association_guard` bounds what a peer can cost before that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification

from skin_plugin.dicom.sop_classes import ACCEPTED_SOP_CLASSES, shown_uid, sop_class_name
from skin_plugin.net.association_guard import GuardedServer, peer
from skin_plugin.net.limits import ListenerLimits
from skin_plugin.net.spool import Spool

log = logging.getLogger(__name__)
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
PREFERRED_TRANSFER_SYNTAXES = [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in UNCOMPRESSED] + list(UNCOMPRESSED)
"""pynetdicom accepts the first of ours the sender proposes: compressed first, so photos arrive as encoded
(a JPEG stays the same JPEG; the sender does not have to decompress it)."""
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)


@dataclass
class StoreListener:
    """The SCP: ``start()`` returns at once (server thread); a study is queued as soon as it is stable (the
    flush thread wakes then, or on a new instance, and at least every second) and the spool reconciled with
    the queue every ``sweep_s`` seconds."""

    spool: Spool
    ae_title: str = "SKINAI"
    port: int = 11112
    host: str = "127.0.0.1"
    allowed_aes: list[str] = field(default_factory=list)
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    sweep_s: float = 5.0
    accept_all_storage: bool = False
    """Accept every standard storage SOP class; score only the photographic ones, ignore the rest."""
    received: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    """SOP Class UID -> instances acknowledged but not spooled (not photographs), since start."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._count_lock = threading.Lock()
        self._server: GuardedServer | None = None
        self._flusher: threading.Thread | None = None

    def make_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        for uid in ACCEPTED_SOP_CLASSES:
            ae.add_supported_context(uid, PREFERRED_TRANSFER_SYNTAXES)
        if self.accept_all_storage:
            for context in AllStoragePresentationContexts:
                if context.abstract_syntax not in ACCEPTED_SOP_CLASSES:
                    ae.add_supported_context(context.abstract_syntax, PREFERRED_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = self.limits.max_pdu_bytes
        # pynetdicom counts every open connection here; ours (in handle_requested) counts associations
        ae.maximum_associations = self.limits.max_connections
        ae.acse_timeout = self.limits.acse_timeout_s
        ae.dimse_timeout = self.limits.dimse_timeout_s
        ae.network_timeout = self.limits.network_timeout_s
        if not self.allowed_aes:
            log.warning("no calling AE allowlist configured: every AE title may store to %s", self.ae_title)
        return ae

    def refusal(self, calling: str, called: str) -> tuple[str, tuple[int, int, int]] | None:
        """Why an association request is refused by AE title (None: accepted)."""
        if called.strip() != self.ae_title:
            return "called AE title is not ours", REJECT_CALLED_AE
        if self.allowed_aes and calling.strip() not in self.allowed_aes:
            return "calling AE title not allowed", REJECT_CALLING_AE
        return None

    def handle_requested(self, event: Any) -> None:
        """EVT_REQUESTED: the AE title checks and the association limit, before any negotiation."""
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling, called = str(rq.calling_ae_title), str(rq.called_ae_title)
        refused = self.refusal(calling, called)
        if refused is None and self._server is not None and not self._server.admit(assoc):
            refused = f"{self.limits.max_associations} associations already open", REJECT_LOCAL_LIMIT
        if refused is None:
            return
        reason, rsd = refused
        log.warning("refused an association from %s, calling AE %r, called AE %r: %s", peer(assoc), calling,
                    called, reason)
        assoc.acse.send_reject(*rsd)
        assoc.kill()  # after the A-ASSOCIATE-RJ went out and the peer closed (or the ACSE timeout)

    def handle_accepted(self, event: Any) -> None:
        """EVT_ACCEPTED: an association none of whose presentation contexts we accept stores nothing."""
        assoc = event.assoc
        if not assoc.accepted_contexts:
            rq = assoc.requestor.primitive
            log.warning("refused an association from %s, calling AE %r, called AE %r: no proposed SOP class and "
                        "transfer syntax is accepted", peer(assoc), str(rq.calling_ae_title), str(rq.called_ae_title))

    def handle_store(self, event: Any) -> int:
        """Write a photograph to the spool before answering (a failure is reported to the sender); acknowledge
        any other instance without decoding or keeping it."""
        sop_class = str(event.request.AffectedSOPClassUID or "")
        if sop_class not in ACCEPTED_SOP_CLASSES:
            ignored = getattr(event.assoc, "skin_ignored", None)
            if ignored is None:
                ignored = event.assoc.skin_ignored = Counter()
            ignored[sop_class] += 1
            with self._count_lock:
                self.ignored[sop_class] += 1
            return STATUS_SUCCESS
        try:
            ds = event.dataset
            study, sop = str(ds.StudyInstanceUID), str(event.request.AffectedSOPInstanceUID)
            self.spool.store(study, sop, event.encoded_dataset())
            self._wake.set()  # the flush thread recomputes when the study becomes stable
        except ValueError as exc:  # missing/invalid UIDs: never used as file names
            log.warning("refused an instance with invalid identifiers: %s", type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        except AttributeError:
            log.warning("refused an instance without a Study Instance UID")
            return STATUS_CANNOT_UNDERSTAND
        except OSError as exc:
            log.error("cannot spool an instance: %s", exc.strerror or type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        self.received += 1
        return STATUS_SUCCESS

    def handle_closed(self, event: Any) -> None:
        """EVT_CONN_CLOSE: one line for what the association sent that is not scored (SOP classes and counts)."""
        ignored: Counter[str] | None = getattr(event.assoc, "skin_ignored", None)
        if not ignored:
            return
        classes = ", ".join(f"{sop_class_name(uid)} ({shown_uid(uid)}) x{n}" for uid, n in ignored.most_common())
        log.info("ignored %d instance(s) that are not photographs from %s, calling AE %r: %s", sum(ignored.values()),
                 peer(event.assoc), event.assoc.requestor.ae_title, classes)

    def start(self) -> StoreListener:
        recovered = self.spool.recover()
        if recovered:
            log.info("picked up %d spooled study(ies) left by a previous run", recovered)
        ae = self.make_ae()
        server = ae.make_server((self.host, self.port), server_class=GuardedServer, limits=self.limits,
                                evt_handlers=[(evt.EVT_C_STORE, self.handle_store),
                                              (evt.EVT_REQUESTED, self.handle_requested),
                                              (evt.EVT_ACCEPTED, self.handle_accepted),
                                              (evt.EVT_CONN_CLOSE, self.handle_closed)])
        ae._servers.append(server)  # as AE.start_server does: AE.shutdown() and server.shutdown() find it
        self._server = server
        threading.Thread(target=server.serve_forever, name="AcceptorServer", daemon=True).start()
        self._flusher = threading.Thread(target=self._flush_loop, name="spool-flush", daemon=True)
        self._flusher.start()
        return self

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def _flush_loop(self) -> None:
        next_sweep = 0.0  # at once: reconcile what a previous run left
        while not self._stop.is_set():
            try:
                for batch in self.spool.flush_stable():
                    log.info("queued batch %s", batch)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_s
                    swept = self.spool.sweep()
                    if swept.resubmitted:
                        log.info("queued again %d batch(es) the queue did not know: %s", len(swept.resubmitted),
                                 ", ".join(swept.resubmitted))
                    if swept.removed:
                        log.info("removed %d reported study folder(s) from the spool", swept.removed)
            except Exception:  # noqa: BLE001 - e.g. broker down: keep the spool, try again next second
                log.exception("could not queue a stable study; will retry")
                self._stop.wait(1.0)
            due = self.spool.seconds_to_next_stable()
            self._wake.wait(1.0 if due is None else min(1.0, due + 0.005))
            self._wake.clear()
            if self._stop.is_set():
                break

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
        if self._flusher is not None:
            self._flusher.join(5)
