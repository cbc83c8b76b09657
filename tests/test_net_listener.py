"""``skin-plugin listen``: DCMTK storescu sends to our C-STORE SCP; the spool survives restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from queue_support import Worker, free_port, wait_until, worker_settings

from skin_plugin.net.spool import BATCH_MARKER, Spool
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]


def storescu(port: int, files: list[Path], calling: str = "MODALITY", called: str = "SKINAI"):
    return subprocess.run(["storescu", "-R", "--propose-jpeg8", "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=120)


def ct_image(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\0" * 32
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def listener(redis_url, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "skin_plugin.cli", "listen", "--out", str(tmp_path / "reports"), "--port", str(port),
         "--host", "127.0.0.1", "--allow-ae", "MODALITY", "--allow-ae", "ORTHANC", "--stable-seconds", "1",
         "--spool", str(tmp_path / "spool"), "--broker", redis_url],
        cwd=ROOT, env={**os.environ, "SKIN_BROKER_URL": ""}, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "listener.log", "wb"))  # noqa: SIM115
    wait_until(lambda: subprocess.run(["echoscu", "-aet", "MODALITY", "-aec", "SKINAI", "127.0.0.1", str(port)],
                                      capture_output=True).returncode == 0, 30, 0.2, "listener")
    yield port
    proc.terminate()
    proc.wait(10)


def test_storescu_folder_is_received_spooled_and_scored(redis_url, listener, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[:5]
    with Worker(settings, concurrency=1):
        proc = storescu(listener, files)
        assert proc.returncode == 0, proc.stderr
        wait_until(lambda: sum(b.total for b in store.recent_batches() if b.reported) == 5, 60, 0.2,
                   "every study scored")
    batches = store.recent_batches()
    assert len(batches) == 5  # one study per file in this fixture: one batch per stable study
    assert sum(b.total for b in batches) == 5 and all(b.failed == 0 for b in batches)
    assert all(b.queue == "urgent" for b in batches)
    srs = list((tmp_path / "reports").rglob("sr/*.dcm"))
    assert len(srs) == 5
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {pydicom.dcmread(f).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID for f in srs} == sources
    queued = list((tmp_path / "spool" / "queued").iterdir())
    assert queued and all((q / BATCH_MARKER).is_file() for q in queued)
    assert not list((tmp_path / "spool").rglob("*.tmp"))


def test_an_unknown_calling_ae_is_rejected(listener, fullres_dicoms, tmp_path):
    proc = storescu(listener, fullres_dicoms[:1], calling="INTRUDER")
    assert proc.returncode != 0
    assert "reject" in (proc.stdout + proc.stderr).lower()
    assert not (tmp_path / "spool" / "incoming").exists() or not any((tmp_path / "spool" / "incoming").iterdir())


def test_a_non_image_sop_class_is_refused(listener, tmp_path):
    proc = storescu(listener, [ct_image(tmp_path / "ct.dcm")])
    assert proc.returncode != 0
    assert "presentation context" in (proc.stdout + proc.stderr).lower()
    assert not any((tmp_path / "spool" / "incoming").iterdir())


def test_spooled_studies_survive_a_restart(fullres_dicoms, tmp_path):
    submitted: list[list[Path]] = []

    def submit(files: list[Path]) -> str:
        submitted.append(files)
        return f"batch-{len(submitted)}"

    first = Spool(tmp_path / "spool", submit, stable_s=0.2)
    for f in fullres_dicoms[:3]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        first.store(ds.StudyInstanceUID, ds.SOPInstanceUID, f.read_bytes())
    # the process dies here: nothing was queued
    second = Spool(tmp_path / "spool", submit, stable_s=0.2)
    assert second.recover() >= 1 and submitted == []
    time.sleep(0.3)
    batches = second.flush_stable()
    assert len(batches) >= 1 and sorted(p.name for files in submitted for p in files) == sorted(
        f"{pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID}.dcm" for f in fullres_dicoms[:3])
    with pytest.raises(ValueError):
        second.store("../../etc", "1.2.3", b"x")  # UIDs become file names only when valid


def test_a_failed_submit_is_retried_on_the_next_flush(fullres_dicoms, tmp_path):
    calls = {"n": 0}

    def flaky(files: list[Path]) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("broker down")
        return "ok"

    spool = Spool(tmp_path / "spool", flaky, stable_s=0.0)
    ds = pydicom.dcmread(fullres_dicoms[0], stop_before_pixels=True)
    spool.store(ds.StudyInstanceUID, ds.SOPInstanceUID, fullres_dicoms[0].read_bytes())
    with pytest.raises(ConnectionError):
        spool.flush_stable()
    assert spool.flush_stable() == ["ok"]
    assert spool.flush_stable() == []
