"""Limits that keep a hostile or broken peer from taking the DICOM listener down.

pynetdicom reads a PDU's 4-byte length and then buffers that many bytes, counts connections that never
sent an association request against its association limit, and keeps a connection that sent garbage
open until a timeout. Here:

- a PDU longer than the limit (``max_pdu_bytes`` for P-DATA, :data:`ASSOCIATION_PDU_BYTES` for the
  others), a byte that is no PDU type, anything but an A-ASSOCIATE-RQ as the first PDU, or a data set
  beyond ``max_instance_bytes`` closes that connection at once, before its body is read;
- ``max_associations`` counts only associations that passed the AE title checks; connections not yet
  associated are bounded separately by ``max_connections`` and by the ACSE timeout;
- every socket read is bounded by the network timeout (a peer cannot stall a read forever).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from typing import Any

from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from skin_plugin.net.limits import ListenerLimits

log = logging.getLogger(__name__)

ASSOCIATION_PDU_BYTES = 64 * 1024
"""Limit for A-ASSOCIATE/RELEASE/ABORT PDUs (a request with 128 presentation contexts is ~20 KB)."""
PDU_LENGTH_SLACK = 1024
"""Tolerated excess over our maximum PDU size (implementations differ on what the length counts)."""
PDU_TYPES = range(0x01, 0x08)
P_DATA_TF = 0x04


class ThrottledWarning:
    """At most ``burst`` lines per ``period_s``; the lines held back are counted in the next one (a flood of
    garbage connections must not fill the disk with log lines)."""

    def __init__(self, burst: int = 20, period_s: float = 10.0) -> None:
        self.burst, self.period_s = burst, period_s
        self._window, self._count, self._held = 0.0, 0, 0
        self._lock = threading.Lock()

    def __call__(self, msg: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._window >= self.period_s:
                self._window, self._count = now, 0
            self._count += 1
            if self._count > self.burst:
                self._held += 1
                return
            held, self._held = self._held, 0
        log.warning(msg + (f" ({held} more like it not logged)" if held else ""), *args)


warn_dropped = ThrottledWarning()


def peer(assoc: Any) -> str:
    """``host:port`` of the requestor (an address, never patient data)."""
    try:
        return f"{assoc.requestor.address}:{assoc.requestor.port}"
    except (AttributeError, ValueError):
        return "unknown peer"


class GuardedDUL(DULServiceProvider):
    """pynetdicom's DICOM upper layer with :class:`ListenerLimits` checked before a PDU is buffered.

    Installed on an acceptor's association by :class:`GuardedRequestHandler` (instance class swap: the
    upper layer is created inside pynetdicom's ``Association.__init__``)."""

    limits: ListenerLimits
    _instance_bytes: int

    def _read_pdu_data(self) -> None:
        sock = self.socket
        assert sock is not None
        try:
            header = sock.recv(6)
            if len(header) < 6:
                self.event_queue.put("Evt17")  # closed by the peer
                return
            pdu_type, _, length = struct.unpack(">BBL", header)
            problem = self._header_problem(pdu_type, length)
            if problem:
                self._drop(problem)
                return
            body = sock.recv(length)
        except OSError:  # includes a read stalled past the network timeout
            self.event_queue.put("Evt17")
            return
        if len(body) != length:
            self.event_queue.put("Evt17")
            return
        if pdu_type == P_DATA_TF and (problem := self._count_data_set(body)):
            self._drop(problem)
            return
        try:
            pdu, event = self._decode_pdu(header + body)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder chokes on
            self._drop(f"undecodable PDU type 0x{pdu_type:02X} ({type(exc).__name__})")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _header_problem(self, pdu_type: int, length: int) -> str | None:
        if pdu_type not in PDU_TYPES:
            return f"not a DICOM PDU (type byte 0x{pdu_type:02X})"
        if self.state_machine.current_state == "Sta2" and pdu_type != 0x01:
            return f"PDU type 0x{pdu_type:02X} before any association request"
        limit = self.limits.max_pdu_bytes + PDU_LENGTH_SLACK if pdu_type == P_DATA_TF else ASSOCIATION_PDU_BYTES
        if length > limit:
            return f"PDU type 0x{pdu_type:02X} claims {length} bytes (limit {limit})"
        return None

    def _count_data_set(self, body: bytes) -> str | None:
        """Add up the data set fragments of the current message (PDV items: length, context, control)."""
        offset = 0
        while offset + 6 <= len(body):
            item_length = int.from_bytes(body[offset:offset + 4], "big")
            control = body[offset + 5]
            if not control & 0x01:  # a data set fragment, not a command
                self._instance_bytes += max(0, item_length - 2)
                if self._instance_bytes > self.limits.max_instance_bytes:
                    return f"data set over {self.limits.max_instance_bytes} bytes"
                if control & 0x02:  # last fragment
                    self._instance_bytes = 0
            offset += 4 + item_length
        return None

    def _drop(self, reason: str) -> None:
        """Close this connection now; an association thread still waiting for a request stops too."""
        warn_dropped("dropped the connection from %s: %s", peer(self.assoc), reason)
        waiting = self.state_machine.current_state == "Sta2"
        assert self.socket is not None
        self.socket.close()  # Evt17: the state machine goes to Sta1 and the association ends
        if waiting:
            self.to_user_queue.put(None)  # type: ignore[arg-type]  # wakes run_reactor: no request


class GuardedRequestHandler(RequestHandler):
    """Per connection: read timeout on the socket and :class:`GuardedDUL` on the association."""

    server: GuardedServer

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        self.request.settimeout(self.server.limits.network_timeout_s)
        assoc.dul.__class__ = GuardedDUL
        assoc.dul.limits = self.server.limits
        assoc.dul._instance_bytes = 0
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """The association server with a cap on concurrent connections (closed on accept beyond it)."""

    def __init__(self, *args: Any, limits: ListenerLimits, **kwargs: Any) -> None:
        self.limits = limits
        self.admission = threading.Lock()
        super().__init__(*args, request_handler=GuardedRequestHandler, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if len(self.active_associations) >= self.limits.max_connections:
            warn_dropped("refused a connection from %s:%s: %d connections open (limit)", *client_address[:2],
                         self.limits.max_connections)
            return False
        return True

    def admit(self, assoc: Any) -> bool:
        """Count ``assoc`` against ``max_associations``; False when the limit is reached."""
        with self.admission:
            admitted = sum(1 for a in self.active_associations if getattr(a, "skin_admitted", False))
            if admitted >= self.limits.max_associations:
                return False
            assoc.skin_admitted = True
            return True
