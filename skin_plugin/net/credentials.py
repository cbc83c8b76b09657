"""HTTP credentials from the environment or a file (never from a URL), and the one URL redaction helper.

A credential set is read from variables sharing a prefix, e.g. ``SKIN_DICOMWEB``:

- ``<PREFIX>_USERNAME`` + ``<PREFIX>_PASSWORD`` (or ``<PREFIX>_PASSWORD_FILE``): HTTP basic
- ``<PREFIX>_TOKEN`` (or ``<PREFIX>_TOKEN_FILE``): a bearer token

A ``*_FILE`` variable names a file holding the secret (trailing newline ignored), e.g. a mounted
Kubernetes Secret or a systemd credential. Secrets never appear in ``repr()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
DICOMWEB_PREFIX = "SKIN_DICOMWEB"
"""Credentials for the DICOMweb archive ``pull`` reads from (and STOW-RS routes, unless ``SKIN_ROUTE_*``)."""
ROUTE_PREFIX = "SKIN_ROUTE"
"""Credentials for STOW-RS routes when they differ from the archive's (else ``SKIN_DICOMWEB_*``)."""
EXPORTER_PREFIX = "SKIN_EXPORTER"
"""The credential the exporter's status page and reports ask for."""

_SECRET_QUERY_KEYS = re.compile(r"(pass|pwd|token|secret|key|auth|sig|credential)", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class CredentialError(ValueError):
    """A credential setting that cannot be used (incomplete, unreadable file, or a secret in a URL)."""


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret-looking query values replaced by ``***``.

    ``dicomweb+http://user:pw@host/x?token=t`` -> ``dicomweb+http://user:***@host/x?token=***``. Used for
    every URL this package logs, prints or stores.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{hostport}" if sep else f"{userinfo}@{hostport}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEYS.search(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*")
        if (netloc, query) == (parts.netloc, parts.query):
            return url  # nothing secret: unchanged, byte for byte
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return REDACTED  # not even parseable: show nothing of it


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def refuse_secret_in_url(url: str, what: str) -> None:
    """Raise :class:`CredentialError` if ``url`` carries a password in its user info.

    A URL given on the command line is visible to every local user (``ps``) and is stored with the batch;
    credentials belong in ``<PREFIX>_*`` variables or files instead.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is not None:
        raise CredentialError(
            f"{what} {redact_url(url)} holds a password: remove it from the URL and set "
            f"{DICOMWEB_PREFIX}_USERNAME and {DICOMWEB_PREFIX}_PASSWORD (or _PASSWORD_FILE), or "
            f"{DICOMWEB_PREFIX}_TOKEN (or _TOKEN_FILE)")


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value, path = env.get(name) or None, env.get(name + "_FILE") or None
    if value and path:
        raise CredentialError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CredentialError(f"{name}_FILE: cannot read {path}: {exc.strerror or exc}") from exc
        if not value:
            raise CredentialError(f"{name}_FILE: {path} is empty")
    return value


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


@dataclass(frozen=True)
class HttpCredentials:
    """HTTP basic (username + password) and/or a bearer token; secrets hidden from ``repr()``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str] | None = None) -> HttpCredentials | None:
        """The credentials under ``prefix`` (None if none is set); incomplete ones raise CredentialError."""
        env = os.environ if env is None else env
        username = env.get(f"{prefix}_USERNAME") or None
        password = _secret(env, f"{prefix}_PASSWORD")
        token = _secret(env, f"{prefix}_TOKEN")
        if bool(username) != bool(password):
            missing = f"{prefix}_PASSWORD (or _PASSWORD_FILE)" if username else f"{prefix}_USERNAME"
            raise CredentialError(f"HTTP basic credentials need both user name and password: {missing} is not set")
        if username and ":" in username:
            raise CredentialError(f"{prefix}_USERNAME must not contain ':'")
        if not (username or token):
            return None
        return cls(username, password, token)

    # --- client side ---------------------------------------------------------------------
    def authorization(self) -> str:
        """The ``Authorization`` header value a client sends (bearer if a token is set, else basic)."""
        if self.token:
            return f"Bearer {self.token}"
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def session(self) -> Any:
        """A ``requests.Session`` sending these credentials (not in its logged per-request headers)."""
        import requests

        header = self.authorization()

        def auth(request: Any) -> Any:  # a session auth also keeps ~/.netrc from replacing it
            request.headers["Authorization"] = header
            return request

        session = requests.Session()
        session.auth = auth
        return session

    # --- server side ---------------------------------------------------------------------
    def accepts(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries these credentials (constant-time comparisons)."""
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(_digest(value), _digest(self.token))
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                given = base64.b64decode(value, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(_digest(given), _digest(f"{self.username}:{self.password}"))
        return False

    def challenge(self) -> str:
        """The ``WWW-Authenticate`` header of a 401 answer."""
        schemes = (['Basic realm="skin-plugin", charset="UTF-8"'] if self.username else []) + (
            ['Bearer realm="skin-plugin"'] if self.token else [])
        return ", ".join(schemes)


def dicomweb_credentials(env: Mapping[str, str] | None = None) -> HttpCredentials | None:
    """Credentials for the DICOMweb archive ``pull`` queries (``SKIN_DICOMWEB_*``)."""
    return HttpCredentials.from_env(DICOMWEB_PREFIX, env)


def route_credentials(env: Mapping[str, str] | None = None) -> HttpCredentials | None:
    """Credentials for STOW-RS routes: ``SKIN_ROUTE_*`` if set, else ``SKIN_DICOMWEB_*``."""
    return HttpCredentials.from_env(ROUTE_PREFIX, env) or dicomweb_credentials(env)


def exporter_credentials(env: Mapping[str, str] | None = None) -> HttpCredentials | None:
    """The credential the exporter requires for its status page and reports (``SKIN_EXPORTER_*``)."""
    return HttpCredentials.from_env(EXPORTER_PREFIX, env)


def http_session(credentials: HttpCredentials | None) -> Any:
    """A ``requests.Session`` with ``credentials`` (a plain one without)."""
    import requests

    return credentials.session() if credentials else requests.Session()


def auth_failure(status: int, server: str, sent: bool, *prefixes: str) -> str:
    """One line for a 401/403 answer: which server refused, whether we sent credentials, what to set."""
    settings = " or ".join(f"{p}_*" for p in prefixes or (DICOMWEB_PREFIX,))
    if not sent:
        return (f"{redact_url(server)} requires authentication (HTTP {status}) and none is configured: "
                f"set {settings} (USERNAME + PASSWORD or PASSWORD_FILE, or TOKEN or TOKEN_FILE)")
    what = "refused our credentials" if status == 401 else "denied access with our credentials"
    return f"{redact_url(server)} {what} (HTTP {status}): check {settings}"
