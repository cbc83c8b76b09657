"""Orthanc Python plugin: the skin photographs of every stable study become one scoring batch.

Runs inside Orthanc's embedded Python (orthanc-python 4.0+, ``"PythonScript"`` in the configuration). On a
STABLE_STUDY change, the study's Dermoscopic, VL Photographic and Secondary Capture instances not yet
submitted are written to ``$SKIN_SPOOL_DIR/orthanc/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` and submitted
as one batch (queue ``$SKIN_ORTHANC_QUEUE``, default ``urgent``, reports in
``$SKIN_OUTPUT_DIR/<StudyInstanceUID>``). The workers send its SRs to ``$SKIN_ORTHANC_ROUTE`` (default: this
Orthanc's own DICOMweb root). Each submitted instance gets the metadata ``SkinBatch`` (declared in
``UserMetadata``), so the SRs coming back, which make the study stable again, start no new batch.

``SKIN_PYTHONPATH`` (``:``-separated) names the folders holding ``skin_plugin``, ``workers`` and their
dependencies; the workers' variables (``SKIN_BROKER_URL``, ...) configure the queue. Logs carry UIDs and
counts only, never patient data; a failure is logged as an error and never stops Orthanc.
"""

from __future__ import annotations

import json
import os
import site
import sys
from pathlib import Path
from typing import Any

import orthanc

SKIN_METADATA = "SkinBatch"
"""Instance metadata holding the id of the batch the instance was submitted in."""
LOG_PREFIX = "skin-plugin:"


def _extend_path(spec: str) -> None:
    """Put the ``SKIN_PYTHONPATH`` folders (and their ``.pth`` files) ahead of the embedded Python's own."""
    before = list(sys.path)
    for entry in filter(None, spec.split(os.pathsep)):
        site.addsitedir(entry)
    sys.path[:] = [p for p in sys.path if p not in before] + before


def _redis_compat() -> None:
    """redis-py imports ``async_timeout`` below Python 3.11.3 (Debian 12's embedded Python is 3.11.2), which a
    venv of a later 3.11 does not install; ``asyncio.timeout`` is the same context manager."""
    if not (3, 11) <= sys.version_info[:3] < (3, 11, 3):
        return
    try:
        import async_timeout  # noqa: F401
    except ImportError:
        import asyncio
        import types

        shim = types.ModuleType("async_timeout")
        shim.timeout = asyncio.timeout  # type: ignore[attr-defined]
        sys.modules["async_timeout"] = shim


_extend_path(os.environ.get("SKIN_PYTHONPATH", ""))
_redis_compat()
try:
    from skin_plugin.dicom.records import validated_uid
    from skin_plugin.dicom.sop_classes import ACCEPTED_SOP_CLASSES, modality_refusal_reason
    from skin_plugin.net.spool import write_atomically
    from workers.client import submit_batch
    from workers.config import WorkerSettings
    from workers.store import BatchStore

    LOAD_ERROR: str | None = None
except ImportError as exc:  # logged at load and on every stable study: Orthanc keeps running
    LOAD_ERROR = f"{type(exc).__name__}: {exc} (check SKIN_PYTHONPATH)"
if not LOAD_ERROR and SKIN_METADATA not in json.loads(orthanc.GetConfiguration()).get("UserMetadata", {}):
    # Without it, each study's own SRs coming back would start a new batch.
    LOAD_ERROR = f'the Orthanc configuration does not declare "UserMetadata": {{"{SKIN_METADATA}": <1024-65535>}}'

_stores: dict[WorkerSettings, BatchStore] = {}


def _get(uri: str) -> Any:
    return json.loads(orthanc.RestApiGet(uri))


def default_route() -> str:
    """This Orthanc's DICOMweb root, as a destination for the workers."""
    config = json.loads(orthanc.GetConfiguration())
    root = str(config.get("DicomWeb", {}).get("Root", "/dicom-web/")).strip("/")
    return f"dicomweb+http://127.0.0.1:{int(config.get('HttpPort', 8042))}/{root}"


def new_photographs(study_id: str) -> list[tuple[str, str]]:
    """(Orthanc id, SOPInstanceUID) of the study's skin photographs that no batch has taken yet."""
    found = []
    for series_id in _get(f"/studies/{study_id}")["Series"]:
        series = _get(f"/series/{series_id}")
        if modality_refusal_reason(series["MainDicomTags"].get("Modality", "")):
            continue  # SR (our own results coming back), radiology, other photographs
        for instance in _get(f"/series/{series_id}/instances"):
            meta = _get(f"/instances/{instance['ID']}/metadata?expand")
            if meta.get("SopClassUid") in ACCEPTED_SOP_CLASSES and SKIN_METADATA not in meta:
                found.append((instance["ID"], instance["MainDicomTags"]["SOPInstanceUID"]))
    return found


def submit_study(study_id: str) -> str | None:
    """Spool and submit the study's new photographs as one batch; its id, or None if there was nothing to do."""
    study_uid = validated_uid(_get(f"/studies/{study_id}")["MainDicomTags"].get("StudyInstanceUID"))
    photos = new_photographs(study_id)
    if not photos:
        orthanc.LogInfo(f"{LOG_PREFIX} study {study_uid}: no new skin photograph, no batch")
        return None
    settings = WorkerSettings.from_env()
    spool = Path(os.environ.get("SKIN_SPOOL_DIR") or settings.output_dir / ".spool") / "orthanc" / study_uid
    files = []
    for instance_id, sop_uid in photos:
        path = spool / f"{validated_uid(sop_uid)}.dcm"
        write_atomically(path, orthanc.RestApiGet(f"/instances/{instance_id}/file"))
        files.append(path)
    store = _stores.get(settings) or _stores.setdefault(settings, BatchStore.from_settings(settings))
    queue = os.environ.get("SKIN_ORTHANC_QUEUE", "urgent")
    route = os.environ.get("SKIN_ORTHANC_ROUTE") or default_route()
    batch_id = submit_batch(store, files, settings.output_dir / study_uid, queue=queue, route=route,
                            chunk_size=settings.chunk_size)
    for instance_id, _ in photos:
        orthanc.RestApiPut(f"/instances/{instance_id}/metadata/{SKIN_METADATA}", batch_id)
    orthanc.LogInfo(f"{LOG_PREFIX} study {study_uid}: batch {batch_id} submitted, {len(files)} image(s), "
                    f"queue {queue}")
    return batch_id


def on_change(change_type: int, level: int, resource_id: str) -> None:
    if change_type != orthanc.ChangeType.STABLE_STUDY:
        return
    if LOAD_ERROR:
        orthanc.LogError(f"{LOG_PREFIX} study {resource_id} not submitted: plugin not loaded: {LOAD_ERROR}")
        return
    try:
        submit_study(resource_id)
    except Exception as exc:  # noqa: BLE001 - a failure (broker down, disk full) must not reach Orthanc
        orthanc.LogError(f"{LOG_PREFIX} study {resource_id} not submitted: {type(exc).__name__}: {exc}")


if LOAD_ERROR:
    orthanc.LogError(f"{LOG_PREFIX} not loaded: {LOAD_ERROR}")
orthanc.RegisterOnChangeCallback(on_change)
