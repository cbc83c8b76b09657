"""Find photographs in a DICOMweb archive (QIDO-RS) that this model has not scored, and fetch them (WADO-RS).

Credentials come from ``SKIN_DICOMWEB_*`` (:mod:`skin_plugin.net.credentials`), never from the URL; a
refusal (401/403), an unreachable archive or an unexpected answer raises :class:`PullError` with one line.
"""

from __future__ import annotations

import logging
from io import BytesIO
from pathlib import Path
from typing import Any

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
from skin_plugin.net.spool import write_atomically

log = logging.getLogger(__name__)
SOP_CLASS_UID, STUDY_UID, SERIES_UID, SOP_UID = "00080016", "0020000D", "0020000E", "00080018"


class PullError(RuntimeError):
    """The archive could not be queried or read: one line naming the server and the cause."""


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def find_instances(client: Any, since: str | None = None, modality: str | None = None) -> list[dict[str, str]]:
    """(study, series, sop) UIDs of every photographic instance matching the filters."""
    found: dict[str, dict[str, str]] = {}
    for sop_class in ACCEPTED_SOP_CLASSES:
        filters = {"SOPClassUID": sop_class}
        if since:
            filters["StudyDate"] = f"{since}-"
        if modality:
            filters["Modality"] = modality
        for item in client.search_for_instances(search_filters=filters, get_remaining=True):
            if _value(item, SOP_CLASS_UID) not in ACCEPTED_SOP_CLASSES:
                continue  # archives that ignore the SOPClassUID filter
            sop = _value(item, SOP_UID)
            found[sop] = {"study": _value(item, STUDY_UID), "series": _value(item, SERIES_UID), "sop": sop}
    return list(found.values())


def pull_new_instances(url: str, folder: Path, store: Any, *, since: str | None = None,
                       modality: str | None = None, precision: str | None = None) -> list[Path]:
    """Retrieve the photographic instances not yet scored by the serving model into ``folder``."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    from skin_plugin.ir_manifest import DEFAULT_PRECISION, IRManifest

    try:
        refuse_secret_in_url(url, "DICOMweb URL")
        credentials = dicomweb_credentials()
    except CredentialError as exc:
        raise PullError(str(exc)) from exc
    settings = store.settings
    sha = IRManifest.load().weights_sha256(precision or (settings.precision if settings else DEFAULT_PRECISION))
    root = url.rstrip("/")
    client = DICOMwebClient(url=root, session=http_session(credentials))
    try:
        return _pull(client, folder, store, sha, since, modality)
    except requests.RequestException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise PullError(auth_failure(status, root, credentials is not None)) from None
        if status is not None:
            raise PullError(f"{redact_url(root)} answered HTTP {status}") from None
        raise PullError(redact_text(f"{root} unreachable: {type(exc).__name__}: {str(exc)[:200]}")) from None


def _pull(client: Any, folder: Path, store: Any, sha: str, since: str | None,
          modality: str | None) -> list[Path]:
    instances = find_instances(client, since, modality)
    done = store.scored_sops(sha, [i["sop"] for i in instances])
    files = []
    for inst in instances:
        if inst["sop"] in done:
            continue
        try:
            path = folder / validated_uid(inst["study"]) / f"{validated_uid(inst['sop'])}.dcm"
        except ValueError:
            log.warning("skipped an instance with an invalid UID")
            continue
        if not path.exists():
            ds = client.retrieve_instance(inst["study"], inst["series"], inst["sop"],
                                          media_types=(("application/dicom", "*"),))
            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            write_atomically(path, buf.getvalue())
        files.append(path)
    log.info("%d photographic instance(s) found, %d already scored, %d retrieved", len(instances), len(done),
             len(files))
    return files
