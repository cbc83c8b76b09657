"""Results back into a real Orthanc: C-STORE and STOW-RS, DICOMweb pull, an outage, the dead-letter box."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
from orthanc_support import OrthancServer
from queue_support import Worker, free_port, worker_settings

from skin_plugin.net.dead_letter import DeadLetterBox
from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore
from workers.tasks import DEAD_LETTER_DIR

ROOT = Path(__file__).resolve().parents[1]


def sr_instances(orthanc: OrthancServer) -> list[pydicom.Dataset]:
    out = []
    for iid in orthanc.instances():
        if orthanc.instance_tags(iid).get("Modality") == "SR":
            out.append(pydicom.dcmread(__import__("io").BytesIO(orthanc.instance_file(iid))))
    return out


def referenced_sop(sr: pydicom.Dataset) -> str:
    return sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
        .ReferencedSOPSequence[0].ReferencedSOPInstanceUID


def assert_srs_back_in_their_studies(orthanc: OrthancServer, sources: list[Path]) -> None:
    srs = sr_instances(orthanc)
    by_sop = {(ds := pydicom.dcmread(f, stop_before_pixels=True)).SOPInstanceUID: ds.StudyInstanceUID
              for f in sources}
    assert len(srs) == len(sources)
    for sr in srs:
        assert referenced_sop(sr) in by_sop
        assert sr.StudyInstanceUID == by_sop[referenced_sop(sr)]  # same study as the photograph


def test_srs_are_stored_in_orthanc_with_c_store(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[50:53]
    with OrthancServer(tmp_path / "orthanc") as orthanc, Worker(settings, concurrency=1):
        batch = submit_batch(store, files, tmp_path / "out", route=f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
        status = wait_for_batch(store, batch, timeout_s=120)
        assert (status.routed, status.route_failed) == (3, 0)
        assert_srs_back_in_their_studies(orthanc, files)


def test_pull_from_dicomweb_scores_new_instances_and_stows_the_srs(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    files = fullres_dicoms[53:57]
    with OrthancServer(tmp_path / "orthanc") as orthanc, Worker(settings, concurrency=1):
        for f in files:
            orthanc.upload(f)
        args = [sys.executable, "-m", "skin_plugin.cli", "pull", "--dicomweb", orthanc.dicomweb_url,
                "--out", str(tmp_path / "out"), "--broker", redis_url, "--wait",
                "--route", "dicomweb+" + orthanc.dicomweb_url]
        first = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert first.returncode == 0, first.stderr[-2000:]
        assert (f"4 scored, 0 failed; SRs: 4 sent, 0 pending, 0 dead-lettered to dicomweb+{orthanc.dicomweb_url}"
                in first.stderr)
        assert_srs_back_in_their_studies(orthanc, files)
        again = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert again.returncode == 0 and "nothing new to score" in again.stderr  # SRs are not photographs


def test_srs_wait_out_an_orthanc_outage(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[57:60]
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    route = f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    orthanc.stop()
    try:
        with Worker(settings, concurrency=1):
            batch = submit_batch(store, files, tmp_path / "out", route=route)
            deadline = time.monotonic() + 60
            while not store.status(batch).reported and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)  # a delivery attempt or two fail while Orthanc is down
            assert store.status(batch).routed == 0
            orthanc.start(keep_ports=True)
            status = wait_for_batch(store, batch, timeout_s=180)
        assert (status.routed, status.route_failed) == (3, 0)
        assert_srs_back_in_their_studies(orthanc, files)
    finally:
        orthanc.stop()


def test_undeliverable_srs_go_to_the_dead_letter_box_and_can_be_resent(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url, max_retries=1)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[60:62]
    nobody = f"dicom://NOBODY@127.0.0.1:{free_port()}"
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, files, tmp_path / "out", route=nobody)
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.routed, status.route_failed) == (0, 2)
    box = DeadLetterBox(tmp_path / "out" / DEAD_LETTER_DIR)
    letters = box.letters()
    assert len(letters) == 2 and all("unreachable" in letter.reason for letter in letters)
    with OrthancServer(tmp_path / "orthanc") as orthanc:
        to = f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
        proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "resend", str(box.folder), "--to", to],
                              capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr
        assert "2 sent, 0 still failing" in proc.stderr
        assert_srs_back_in_their_studies(orthanc, files)
    assert box.letters() == []
