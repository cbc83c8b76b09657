"""Send DICOM files to a :class:`Destination`: C-STORE (pynetdicom) or STOW-RS (dicomweb-client)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, EnhancedSRStorage

from skin_plugin.net.destination import Destination

SR_CONTEXTS = (ComprehensiveSRStorage, EnhancedSRStorage)


@dataclass(frozen=True)
class SendFailure:
    path: Path
    reason: str


def send_files(destination: Destination, files: list[Path], timeout_s: float = 30.0) -> list[SendFailure]:
    """Send ``files``; return those that were not stored, with the reason (empty list: all stored)."""
    if not files:
        return []
    if destination.kind == "dicom":
        return _c_store(destination, files, timeout_s)
    return _stow_rs(destination, files, timeout_s)


def _c_store(dest: Destination, files: list[Path], timeout_s: float) -> list[SendFailure]:
    ae = AE(ae_title=dest.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for context in SR_CONTEXTS:
        ae.add_requested_context(context)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "peer unreachable or association aborted"
        return [SendFailure(f, f"{dest}: {reason}") for f in files]
    failures = []
    try:
        for f in files:
            try:
                status = assoc.send_c_store(pydicom.dcmread(f))
            except (OSError, ValueError, RuntimeError) as exc:
                failures.append(SendFailure(f, f"{type(exc).__name__}: {exc}"))
                continue
            code = getattr(status, "Status", None)
            if code is None:
                failures.append(SendFailure(f, "no C-STORE response (connection lost or timed out)"))
            elif code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success and warnings
                failures.append(SendFailure(f, f"C-STORE status 0x{code:04X}"))
    finally:
        if assoc.is_established:
            assoc.release()
    return failures


def _stow_rs(dest: Destination, files: list[Path], timeout_s: float) -> list[SendFailure]:
    import requests
    from dicomweb_client.api import DICOMwebClient

    from skin_plugin.net.credentials import (
        DICOMWEB_PREFIX,
        ROUTE_PREFIX,
        CredentialError,
        auth_failure,
        http_session,
        redact_text,
        route_credentials,
    )

    try:
        credentials = route_credentials()
    except CredentialError as exc:
        return [SendFailure(f, f"STOW-RS to {dest.address}: {exc}") for f in files]
    client = DICOMwebClient(url=dest.address, session=http_session(credentials), timeout=timeout_s)
    try:
        datasets = [pydicom.dcmread(f) for f in files]
        response = client.store_instances(datasets)
    except (requests.RequestException, OSError, ValueError, RuntimeError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            reason = "STOW-RS: " + auth_failure(status, dest.address, credentials is not None, ROUTE_PREFIX,
                                                DICOMWEB_PREFIX)
        else:
            reason = redact_text(f"STOW-RS to {dest.address}: {type(exc).__name__}: {str(exc)[:200]}")
        return [SendFailure(f, reason) for f in files]
    failed = {item.ReferencedSOPInstanceUID for item in getattr(response, "FailedSOPSequence", [])}
    return [SendFailure(f, "STOW-RS: instance refused") for f, ds in zip(files, datasets)
            if ds.SOPInstanceUID in failed]
