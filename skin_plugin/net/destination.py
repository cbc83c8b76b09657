"""Where results go back to: a DICOM node (C-STORE) or a DICOMweb archive (STOW-RS), parsed from one string.

- ``dicom://AET@host:port`` (optionally ``dicom://AET@host:port?calling=SKINAI``)
- ``dicomweb+http://host:port/path`` or ``dicomweb+https://...`` (the DICOMweb root, e.g. ``.../dicom-web``)

A destination holds no secret: it is stored with the batch and logged. STOW-RS credentials come from
``SKIN_ROUTE_*`` / ``SKIN_DICOMWEB_*`` (:mod:`skin_plugin.net.credentials`); a URL with a password is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from skin_plugin.net.credentials import CredentialError, redact_url, refuse_secret_in_url

DEFAULT_CALLING_AE = "SKINAI"


class DestinationError(ValueError):
    """A destination string that cannot be parsed."""


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for a DICOM or DICOMweb peer, the same for C-STORE, STOW-RS, QIDO-RS and WADO-RS.

    ``connect_s`` bounds opening the TCP connection (a closed port fails at once, a host that drops
    packets after this); ``read_s`` bounds each wait for the peer: the association answer and each
    C-STORE response, or an HTTP response (per read: a slow but progressing transfer is not cut).
    """

    connect_s: float = 5.0
    read_s: float = 20.0

    def __post_init__(self) -> None:
        for name, value in (("connect", self.connect_s), ("read", self.read_s)):
            if not value > 0:
                raise ValueError(f"{name} timeout must be > 0 seconds, got {value}")


@dataclass(frozen=True)
class Destination:
    kind: str
    """``dicom`` or ``dicomweb``."""
    address: str
    """``host:port`` (dicom) or the DICOMweb root URL (dicomweb)."""
    ae_title: str = ""
    """Called AE title (dicom)."""
    calling_ae_title: str = DEFAULT_CALLING_AE

    @classmethod
    def parse(cls, spec: str) -> Destination:
        try:
            refuse_secret_in_url(spec, "destination")
            parts = urlsplit(spec)
            port = parts.port
        except (CredentialError, ValueError) as exc:
            raise DestinationError(str(exc) if isinstance(exc, CredentialError)
                                   else f"not a valid destination {redact_url(spec)!r}: {exc}") from exc
        if parts.scheme == "dicom":
            if not parts.username or not parts.hostname or not port:
                raise DestinationError(f"expected dicom://AET@host:port, got {redact_url(spec)!r}")
            calling = parse_qs(parts.query).get("calling", [DEFAULT_CALLING_AE])[0]
            for ae in (parts.username, calling):
                if not 0 < len(ae) <= 16 or "\\" in ae:
                    raise DestinationError(f"not a valid AE title: {ae!r}")
            return cls("dicom", f"{parts.hostname}:{port}", parts.username, calling)
        if parts.scheme in ("dicomweb+http", "dicomweb+https"):
            if not parts.hostname:
                raise DestinationError(f"expected dicomweb+http(s)://host[:port]/root, got {redact_url(spec)!r}")
            hostport = parts.netloc.rpartition("@")[2]  # a user name alone is dropped: credentials come from env
            url = f"{parts.scheme.split('+')[1]}://{hostport}{parts.path.rstrip('/')}"
            return cls("dicomweb", url)
        raise DestinationError(f"unknown destination {redact_url(spec)!r}: use dicom://AET@host:port or "
                               "dicomweb+http(s)://...")

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def __str__(self) -> str:
        """The destination as stored and logged (parseable again; never holds a secret)."""
        if self.kind == "dicom":
            return f"dicom://{self.ae_title}@{self.address}?calling={self.calling_ae_title}"
        return redact_url("dicomweb+" + self.address)
