"""Send DICOM files to a :class:`Destination`: C-STORE (pynetdicom) or STOW-RS (dicomweb-client).

One attempt per call, bounded by :class:`~skin_plugin.net.destination.Timeouts` for both protocols; retrying
is the caller's schedule (the route task's ``SKIN_ROUTE_RETRY_DELAYS``), never the libraries' own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, EnhancedSRStorage

from skin_plugin.net.destination import Destination, Timeouts

SR_CONTEXTS = (ComprehensiveSRStorage, EnhancedSRStorage)
STOW_INSTANCES_PER_REQUEST = 50
"""SRs per STOW-RS request: each request's answer must come within the read timeout."""


@dataclass(frozen=True)
class SendFailure:
    path: Path
    reason: str


def send_files(destination: Destination, files: list[Path], timeouts: Timeouts | None = None) -> list[SendFailure]:
    """Send ``files``; return those that were not stored, with the reason (empty list: all stored)."""
    if not files:
        return []
    timeouts = timeouts or Timeouts()
    if destination.kind == "dicom":
        return _c_store(destination, files, timeouts)
    return _stow_rs(destination, files, timeouts)


def _c_store(dest: Destination, files: list[Path], timeouts: Timeouts) -> list[SendFailure]:
    ae = AE(ae_title=dest.calling_ae_title)
    ae.connection_timeout = timeouts.connect_s
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeouts.read_s
    for context in SR_CONTEXTS:
        ae.add_requested_context(context)
    connected = []
    t0 = time.monotonic()
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))])
    if not assoc.is_established:
        if assoc.is_rejected:
            reason = "association rejected"
        elif connected:
            reason = f"connected, but no association answer within {timeouts.read_s:g} s (or aborted)"
        elif time.monotonic() - t0 >= timeouts.connect_s:
            reason = f"peer unreachable: no connection within {timeouts.connect_s:g} s"
        else:
            reason = "peer unreachable: connection refused"
        return [SendFailure(f, f"C-STORE to {dest}: {reason}") for f in files]
    failures = []
    try:
        for i, f in enumerate(files):
            if not assoc.is_established:  # aborted by the peer or a timeout: the rest fails the same way
                failures += [SendFailure(g, f"C-STORE to {dest}: association lost") for g in files[i:]]
                break
            try:
                status = assoc.send_c_store(pydicom.dcmread(f))
            except (OSError, ValueError, RuntimeError) as exc:
                failures.append(SendFailure(f, f"C-STORE to {dest}: {type(exc).__name__}: {exc}"))
                continue
            code = getattr(status, "Status", None)
            if code is None:
                failures.append(SendFailure(f, f"C-STORE to {dest}: no response within {timeouts.read_s:g} s "
                                               "(or connection lost)"))
            elif code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success and warnings
                failures.append(SendFailure(f, f"C-STORE to {dest}: status 0x{code:04X}"))
    finally:
        if assoc.is_established:
            assoc.release()
    return failures


def _stow_rs(dest: Destination, files: list[Path], timeouts: Timeouts) -> list[SendFailure]:
    from skin_plugin.net.credentials import CredentialError, http_session, route_credentials

    try:
        credentials = route_credentials()
    except CredentialError as exc:
        return [SendFailure(f, f"STOW-RS to {dest.address}: {exc}") for f in files]
    session = http_session(credentials)
    failures: list[SendFailure] = []
    for start in range(0, len(files), STOW_INSTANCES_PER_REQUEST):
        chunk = files[start:start + STOW_INSTANCES_PER_REQUEST]
        failed, peer_down = _stow_chunk(dest, chunk, timeouts, session, credentials is not None)
        failures += failed
        if peer_down:  # unreachable or refusing: the remaining chunks would wait the same timeouts
            failures += [SendFailure(f, failed[0].reason) for f in files[start + len(chunk):]]
            break
    return failures


def _stow_chunk(dest: Destination, files: list[Path], timeouts: Timeouts, session: object,
                sent_credentials: bool) -> tuple[list[SendFailure], bool]:
    """One STOW-RS request: (failures, whether the peer failed as a whole)."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    from skin_plugin.net.credentials import DICOMWEB_PREFIX, ROUTE_PREFIX, auth_failure, redact_text

    client = DICOMwebClient(url=dest.address, session=session, timeout=(timeouts.connect_s, timeouts.read_s))
    client.set_http_retry_params(retry=False)  # one attempt: the route's own schedule retries
    try:
        datasets = [pydicom.dcmread(f) for f in files]
    except (OSError, ValueError) as exc:
        return [SendFailure(f, f"cannot read the SR: {type(exc).__name__}: {exc}") for f in files], False
    try:
        response = client.store_instances(datasets)
    except (requests.RequestException, OSError, ValueError, RuntimeError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            reason = "STOW-RS: " + auth_failure(status, dest.address, sent_credentials, ROUTE_PREFIX,
                                                DICOMWEB_PREFIX)
        elif status is not None:
            reason = redact_text(f"STOW-RS to {dest.address}: HTTP {status}")
        else:
            reason = redact_text(f"STOW-RS to {dest.address}: {network_error(exc, timeouts)}")
        return [SendFailure(f, reason) for f in files], True
    failed = {item.ReferencedSOPInstanceUID for item in getattr(response, "FailedSOPSequence", [])}
    return [SendFailure(f, "STOW-RS: instance refused") for f, ds in zip(files, datasets)
            if ds.SOPInstanceUID in failed], False


def network_error(exc: BaseException, timeouts: Timeouts) -> str:
    """A short cause for an HTTP client error: ``connection refused``, ``no answer within 20 s``, ..."""
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {timeouts.connect_s:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {timeouts.read_s:g} s"
    text = str(exc)
    if isinstance(exc, requests.ConnectionError):
        for needle, cause in (("Connection refused", "connection refused"),
                              ("Name or service not known", "unknown host"),
                              ("Temporary failure in name resolution", "unknown host"),
                              ("No route to host", "no route to host"),
                              ("RemoteDisconnected", "connection closed without an answer"),
                              ("Connection reset", "connection reset")):
            if needle in text:
                return cause
    return f"{type(exc).__name__}: {text[:200]}"
