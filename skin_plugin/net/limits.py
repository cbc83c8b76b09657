"""The DICOM listener's resource limits (no pynetdicom import: the command line reads the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListenerLimits:
    """Resource limits of the C-STORE SCP (``skin-plugin listen`` options; README "Connect to your PACS")."""

    max_pdu_bytes: int = 128 * 1024
    """Maximum P-DATA PDU we accept (and advertise); DCMTK's largest default."""
    max_instance_bytes: int = 128 * 1024 * 1024
    """Largest data set one C-STORE may carry; a bigger one aborts the association."""
    max_associations: int = 10
    """Concurrent associations past the AE title checks; more are refused (local limit exceeded)."""
    max_connections: int = 50
    """Concurrent TCP connections, associated or not; more are closed on accept."""
    acse_timeout_s: float = 10.0
    """A connection must send its association request (and release) within this."""
    dimse_timeout_s: float = 30.0
    """Waiting for the next DIMSE message of an association."""
    network_timeout_s: float = 60.0
    """An association idle this long is aborted; a single socket read may stall no longer."""

    def __post_init__(self) -> None:
        if self.max_pdu_bytes < 4096:
            raise ValueError(f"maximum PDU size {self.max_pdu_bytes} is below 4096 bytes")
        if min(self.max_associations, self.max_connections) < 1 or self.max_connections < self.max_associations:
            raise ValueError("need 1 <= max associations <= max connections")
        if min(self.acse_timeout_s, self.dimse_timeout_s, self.network_timeout_s, self.max_instance_bytes) <= 0:
            raise ValueError("timeouts and the instance size limit must be positive")
