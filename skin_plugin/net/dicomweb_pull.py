"""Find photographs in a DICOMweb archive (QIDO-RS) that this model has not scored, and fetch them (WADO-RS).

Credentials come from ``SKIN_DICOMWEB_*`` (:mod:`skin_plugin.net.credentials`), never from the URL; a
refusal (401/403), an unreachable archive or an unexpected answer raises :class:`PullError` with one line.
``since`` matches StudyDate, and for instances whose StudyDate is empty their other dates (:data:`OTHER_DATES`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skin_plugin.dicom.records import validated_uid
from skin_plugin.dicom.sop_classes import ACCEPTED_SOP_CLASSES
from skin_plugin.net.credentials import (
    CredentialError,
    auth_failure,
    dicomweb_credentials,
    http_session,
    redact_text,
    redact_url,
    refuse_secret_in_url,
)
from skin_plugin.net.destination import Timeouts
from skin_plugin.net.sender import network_error
from skin_plugin.net.spool import write_atomically

log = logging.getLogger(__name__)
SOP_CLASS_UID, STUDY_UID, SERIES_UID, SOP_UID = "00080016", "0020000D", "0020000E", "00080018"


class PullError(RuntimeError):
    """The archive could not be queried or read: one line naming the server and the cause."""


OTHER_DATES = ("SeriesDate", "ContentDate", "AcquisitionDate", "AcquisitionDateTime")
"""With ``--since``, instances whose StudyDate is empty are matched by these."""
_DATE_TAGS = {"StudyDate": "00080020", "SeriesDate": "00080021", "ContentDate": "00080023",
              "AcquisitionDate": "00080022", "AcquisitionDateTime": "0008002A"}


@dataclass
class PullResult:
    """What a pull found, skipped and retrieved."""

    found: int = 0
    """Photographic instances matching the filters."""
    dated_otherwise: dict[str, int] = field(default_factory=dict)
    """Of those (``since`` given): instances with an empty StudyDate matched by another date, per attribute."""
    unmatchable_dates: list[str] = field(default_factory=list)
    """Of :data:`OTHER_DATES`, those the archive refused to match on (HTTP 400 or 501)."""
    already_scored: int = 0
    invalid_uid: int = 0
    files: list[Path] = field(default_factory=list)
    """Retrieved (or already in the spool) and to be queued."""


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def check_since(since: str) -> str:
    """``since`` if it is a date (YYYYMMDD or YYYY-MM-DD, returned as YYYYMMDD), else ValueError."""
    value = since.strip().replace("-", "")
    if not re.fullmatch(r"\d{8}", value):
        raise ValueError(f"--since: expected a date as YYYYMMDD, got {since!r}")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as exc:
        raise ValueError(f"--since: not a calendar date: {since!r}") from exc
    return value


def find_instances(client: Any, since: str | None = None, modality: str | None = None,
                   result: PullResult | None = None) -> list[dict[str, str]]:
    """(study, series, sop) UIDs of every photographic instance matching the filters.

    ``since``: StudyDate on or after it; an instance whose StudyDate is empty matches if any of
    :data:`OTHER_DATES` is on or after it (counted in ``result.dated_otherwise`` under the first that
    matched; an attribute the archive refuses to match on is noted in ``result.unmatchable_dates``)."""
    import requests

    found: dict[str, dict[str, str]] = {}
    for date_attr in ("StudyDate", *OTHER_DATES) if since else (None,):
        for sop_class in ACCEPTED_SOP_CLASSES:
            filters = {"SOPClassUID": sop_class}
            if date_attr:
                filters[date_attr] = f"{since}-"
            if modality:
                filters["Modality"] = modality
            fields = ["StudyDate"] if date_attr and date_attr != "StudyDate" else None  # to tell it is empty
            try:
                items = client.search_for_instances(search_filters=filters, fields=fields, get_remaining=True)
            except requests.HTTPError as exc:  # an archive that cannot match this attribute
                status = getattr(exc.response, "status_code", None)
                if date_attr in (None, "StudyDate") or status not in (400, 501):
                    raise
                if result is not None and date_attr not in result.unmatchable_dates:
                    result.unmatchable_dates.append(date_attr)
                continue
            for item in items:
                if _value(item, SOP_CLASS_UID) not in ACCEPTED_SOP_CLASSES:
                    continue  # archives that ignore the SOPClassUID filter
                sop = _value(item, SOP_UID)
                if sop in found:
                    continue
                if date_attr and date_attr != "StudyDate":
                    if _value(item, _DATE_TAGS["StudyDate"]):
                        continue  # dated by its study, before ``since``
                    if result is not None:
                        result.dated_otherwise[date_attr] = result.dated_otherwise.get(date_attr, 0) + 1
                found[sop] = {"study": _value(item, STUDY_UID), "series": _value(item, SERIES_UID), "sop": sop}
    if result is not None:
        result.found = len(found)
    return list(found.values())


def pull_new_instances(url: str, folder: Path, store: Any, *, since: str | None = None,
                       modality: str | None = None, precision: str | None = None,
                       timeouts: Timeouts | None = None) -> PullResult:
    """Retrieve the photographic instances not yet scored by the serving model into ``folder``."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    from skin_plugin.ir_manifest import DEFAULT_PRECISION, IRManifest

    try:
        refuse_secret_in_url(url, "DICOMweb URL")
        credentials = dicomweb_credentials()
        since = check_since(since) if since else None
    except (CredentialError, ValueError) as exc:
        raise PullError(str(exc)) from exc
    root = url.rstrip("/")
    if urlsplit(root).scheme not in ("http", "https") or not urlsplit(root).hostname:
        raise PullError(f"{redact_url(root)} is not an http(s):// DICOMweb URL (e.g. https://archive/dicom-web)")
    settings = store.settings
    sha = IRManifest.load().weights_sha256(precision or (settings.precision if settings else DEFAULT_PRECISION))
    timeouts = timeouts or Timeouts()
    client = DICOMwebClient(url=root, session=http_session(credentials), timeout=(timeouts.connect_s,
                                                                                   timeouts.read_s))
    client.set_http_retry_params(retry=False)
    result = PullResult()
    try:
        _pull(client, folder, store, sha, since, modality, result)
    except requests.RequestException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise PullError(auth_failure(status, root, credentials is not None)) from None
        if status is not None:
            raise PullError(f"{redact_url(root)} answered HTTP {status}") from None
        if isinstance(exc, requests.JSONDecodeError):
            raise PullError(f"{redact_url(root)} did not answer as a DICOMweb server (not JSON)") from None
        raise PullError(redact_text(f"{root} unreachable: {network_error(exc, timeouts)}")) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # an answer dicomweb-client cannot parse
        raise PullError(redact_text(f"{root} answered something that is not DICOMweb: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}")) from None
    return result


def _pull(client: Any, folder: Path, store: Any, sha: str, since: str | None,
          modality: str | None, result: PullResult) -> None:
    instances = find_instances(client, since, modality, result)
    done = store.scored_sops(sha, [i["sop"] for i in instances])
    result.already_scored = len(done)
    for inst in instances:
        if inst["sop"] in done:
            continue
        try:
            path = folder / validated_uid(inst["study"]) / f"{validated_uid(inst['sop'])}.dcm"
        except ValueError:
            log.warning("skipped an instance with an invalid UID")
            result.invalid_uid += 1
            continue
        if not path.exists():
            ds = client.retrieve_instance(inst["study"], inst["series"], inst["sop"],
                                          media_types=(("application/dicom", "*"),))
            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            write_atomically(path, buf.getvalue())
        result.files.append(path)
    log.info("%d photographic instance(s) found, %d already scored, %d retrieved", result.found, len(done),
             len(result.files))
