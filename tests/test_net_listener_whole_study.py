"""Whole-study routing (issue 17 item 1): a real Orthanc routes a study holding photographs, an MR image and
our own earlier SRs to ``skin-plugin listen --accept-all-storage``; every photo is scored, the rest is
acknowledged and ignored, and Orthanc's store job succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pydicom
import pytest
from orthanc_support import OrthancServer
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from queue_support import Worker, free_port, wait_until, worker_settings
from test_orthanc_plugin import batches_under, one_study

from skin_plugin.dicom.sop_classes import ACCEPTED_SOP_CLASSES
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def mr_of(study_file: Path, path: Path) -> Path:
    """pydicom's MR test image moved into the study (and patient) of ``study_file``."""
    photo = pydicom.dcmread(study_file, stop_before_pixels=True)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyDate", "StudyTime", "StudyID"):
        setattr(mr, keyword, getattr(photo, keyword, ""))
    mr.SeriesInstanceUID, mr.SOPInstanceUID = generate_uid(), generate_uid()
    mr.file_meta.MediaStorageSOPInstanceUID = mr.SOPInstanceUID
    mr.save_as(path, enforce_file_format=True)
    return path


def sop_classes(orthanc: OrthancServer, study_uid: str) -> list[str]:
    return sorted(orthanc.instance_tags(i["ID"])["SOPClassUID"] for i in orthanc.study_instances(study_uid))


def route(orthanc: OrthancServer, study_uid: str) -> dict:
    [study] = [f["ID"] for f in orthanc.post("/tools/lookup", study_uid) if f["Type"] == "Study"]
    return orthanc.post("/modalities/skinai/store", study)


def test_orthanc_routes_a_mixed_study_and_every_photo_is_scored(redis_url, tmp_path):
    photos = one_study(tmp_path, n=2)
    study_uid = str(pydicom.dcmread(photos[0], stop_before_pixels=True).StudyInstanceUID)
    patient = str(pydicom.dcmread(photos[0], stop_before_pixels=True).PatientName)
    port = free_port()
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    reports = tmp_path / "reports"
    log = tmp_path / "listener.log"
    with Worker(settings, concurrency=1, log=tmp_path / "worker.log"), \
            OrthancServer(tmp_path / "orthanc", modalities={"skinai": ["SKINAI", "127.0.0.1", port]}) as orthanc:
        listener = subprocess.Popen(
            [sys.executable, "-m", "skin_plugin.cli", "listen", "--out", str(reports), "--port", str(port),
             "--allow-ae", orthanc.aet, "--stable-seconds", "1", "--accept-all-storage", "--spool",
             str(tmp_path / "spool"), "--broker", redis_url, "--route", f"dicom://{orthanc.aet}@127.0.0.1:"
             f"{orthanc.dicom_port}"], cwd=ROOT, env={**os.environ, "SKIN_BROKER_URL": ""},
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
        try:
            wait_until(lambda: subprocess.run(["echoscu", "-aet", orthanc.aet, "-aec", "SKINAI", "127.0.0.1",
                                               str(port)], capture_output=True).returncode == 0, 30, 0.2, "listener")
            for f in photos:
                orthanc.upload(f)

            def srs() -> int:
                return sop_classes(orthanc, study_uid).count(COMPREHENSIVE_SR)

            # first the photos alone (this always worked): our SRs come back into the study
            assert route(orthanc, study_uid)["InstancesCount"] == 2
            wait_until(lambda: srs() == 2, 120, 0.5, "the first SRs in Orthanc")
            # now the study as a PACS holds it: photos, our SRs, and an MR image
            orthanc.upload(mr_of(photos[0], tmp_path / "mr.dcm"))
            held = sop_classes(orthanc, study_uid)
            assert len(held) == 5 and sum(c in ACCEPTED_SOP_CLASSES for c in held) == 2
            job = route(orthanc, study_uid)  # HTTP 500 "Cannot transcode" before --accept-all-storage
            assert job["InstancesCount"] == 5 and job.get("FailedInstancesCount", 0) == 0, job
            wait_until(lambda: len(batches_under(store, reports)) == 2
                       and all(b.reported for b in batches_under(store, reports)), 120, 0.5, "the second batch")
        except (AssertionError, TimeoutError, urllib.error.HTTPError) as exc:
            pytest.fail(f"{exc!r}\n--- listener\n{log.read_text(errors='replace')[-3000:]}\n"
                        f"--- orthanc\n{orthanc.log_text()[-3000:]}")
        finally:
            listener.terminate()
            listener.wait(20)
        batches = batches_under(store, reports)
        # each routing scored the two photos only: the MR and our own SRs were never queued
        assert sorted((b.total, b.done, b.failed) for b in batches) == [(2, 2, 0), (2, 2, 0)]
        assert srs() == 2  # the same SR UIDs sent again: no duplicates
    text = log.read_text()
    assert "ignored 3 instance(s) that are not photographs" in text, text[-2000:]
    assert "MR" in text and "structured report" in text
    assert patient not in text and str(pydicom.dcmread(photos[0], stop_before_pixels=True).PatientID) not in text
    assert not list((tmp_path / "spool").rglob("*.dcm")) or all(
        pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID in ACCEPTED_SOP_CLASSES
        for p in (tmp_path / "spool").rglob("*.dcm"))
