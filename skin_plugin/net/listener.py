"""``skin-plugin listen``: a C-STORE SCP for skin photographs that spools, then queues stable studies.

Only the photographic storage classes (and Secondary Capture) are offered, so any other SOP class is
refused at association negotiation; an allowlist of calling AE titles rejects unknown peers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from skin_plugin.dicom.sop_classes import ACCEPTED_SOP_CLASSES
from skin_plugin.net.spool import Spool

log = logging.getLogger(__name__)
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
PREFERRED_TRANSFER_SYNTAXES = [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in UNCOMPRESSED] + list(UNCOMPRESSED)
"""pynetdicom accepts the first of ours the sender proposes: compressed first, so photos arrive as encoded
(a JPEG stays the same JPEG; the sender does not have to decompress it)."""
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass
class StoreListener:
    """The SCP: ``start()`` returns at once (server thread); stable studies are flushed every second."""

    spool: Spool
    ae_title: str = "SKINAI"
    port: int = 11112
    host: str = "0.0.0.0"
    allowed_aes: list[str] = field(default_factory=list)
    received: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._server: Any = None
        self._flusher: threading.Thread | None = None

    def make_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        for uid in ACCEPTED_SOP_CLASSES:
            ae.add_supported_context(uid, PREFERRED_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.allowed_aes:
            ae.require_calling_aet = list(self.allowed_aes)
        else:
            log.warning("no calling AE allowlist configured: every AE title may store to %s", self.ae_title)
        return ae

    def handle_store(self, event: Any) -> int:
        """Write the instance to the spool before answering; a failure is reported to the sender."""
        try:
            ds = event.dataset
            study, sop = str(ds.StudyInstanceUID), str(event.request.AffectedSOPInstanceUID)
            self.spool.store(study, sop, event.encoded_dataset())
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

    def start(self) -> StoreListener:
        recovered = self.spool.recover()
        if recovered:
            log.info("picked up %d spooled study(ies) left by a previous run", recovered)
        self._server = self.make_ae().start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        self._flusher = threading.Thread(target=self._flush_loop, name="spool-flush", daemon=True)
        self._flusher.start()
        return self

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                for batch in self.spool.flush_stable():
                    log.info("queued batch %s", batch)
            except Exception:  # noqa: BLE001 - e.g. broker down: keep the spool, try again next second
                log.exception("could not queue a stable study; will retry")

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._flusher is not None:
            self._flusher.join(5)
