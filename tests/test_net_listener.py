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

from skin_plugin.net.spool import BATCH_MARKER, REPORTED_MARKER, BatchState, Spool
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
    # reported (no route): the received files leave the spool at the next sweep (retention 0 by default)
    wait_until(lambda: not list((tmp_path / "spool").rglob("*.dcm")), 30, 0.2, "spool emptied")
    assert not list((tmp_path / "spool").rglob("*.tmp"))


def test_an_unknown_calling_ae_is_rejected(listener, fullres_dicoms, tmp_path):
    proc = storescu(listener, fullres_dicoms[:1], calling="INTRUDER")
    assert proc.returncode != 0
    assert "reject" in (proc.stdout + proc.stderr).lower()
    assert not (tmp_path / "spool" / "incoming").exists() or not any((tmp_path / "spool" / "incoming").iterdir())
    wait_until(lambda: "calling AE 'INTRUDER'" in (tmp_path / "listener.log").read_text(), 10, 0.1, "log line")
    line = next(x for x in (tmp_path / "listener.log").read_text().splitlines() if "'INTRUDER'" in x)
    assert "refused an association from 127.0.0.1:" in line and "calling AE title not allowed" in line


def test_an_association_to_another_called_ae_is_rejected(listener, fullres_dicoms, tmp_path):
    proc = storescu(listener, fullres_dicoms[:1], called="OTHERPACS")
    assert proc.returncode != 0
    assert "called ae title not recognized" in (proc.stdout + proc.stderr).lower()
    assert not any((tmp_path / "spool" / "incoming").iterdir())
    wait_until(lambda: "called AE 'OTHERPACS'" in (tmp_path / "listener.log").read_text(), 10, 0.1, "log line")
    line = next(x for x in (tmp_path / "listener.log").read_text().splitlines() if "'OTHERPACS'" in x)
    assert "from 127.0.0.1:" in line and "calling AE 'MODALITY'" in line and "called AE title is not ours" in line


def test_a_non_image_sop_class_is_refused(listener, tmp_path):
    proc = storescu(listener, [ct_image(tmp_path / "ct.dcm")])
    assert proc.returncode != 0
    assert "presentation context" in (proc.stdout + proc.stderr).lower()
    assert not any((tmp_path / "spool" / "incoming").iterdir())
    wait_until(lambda: "no proposed SOP class" in (tmp_path / "listener.log").read_text(), 10, 0.1, "log line")


class RecordingQueue:
    """The spool's queue contract in memory: what was submitted, and a state per batch set by the test."""

    def __init__(self, fail_first: int = 0) -> None:
        self.submitted: dict[str, list[Path]] = {}
        self.states: dict[str, BatchState] = {}
        self.fail_first = fail_first

    def submit(self, files: list[Path], batch_id: str) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("broker down")
        self.submitted[batch_id] = files
        self.states[batch_id] = "pending"

    def state(self, batch_id: str) -> BatchState:
        return self.states.get(batch_id, "unknown")


def store_files(spool: Spool, files: list[Path]) -> None:
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        spool.store(ds.StudyInstanceUID, ds.SOPInstanceUID, f.read_bytes())


def test_spooled_studies_survive_a_restart(fullres_dicoms, tmp_path):
    queue = RecordingQueue()
    store_files(Spool(tmp_path / "spool", queue, stable_s=0.2), fullres_dicoms[:3])
    # the process dies here: nothing was queued
    second = Spool(tmp_path / "spool", queue, stable_s=0.2)
    assert second.recover() >= 1 and queue.submitted == {}
    time.sleep(0.3)
    batches = second.flush_stable()
    assert len(batches) >= 1 and sorted(p.name for files in queue.submitted.values() for p in files) == sorted(
        f"{pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID}.dcm" for f in fullres_dicoms[:3])
    with pytest.raises(ValueError):
        second.store("../../etc", "1.2.3", b"x")  # UIDs become file names only when valid


def test_a_failed_submit_is_retried_under_the_same_batch_id(fullres_dicoms, tmp_path):
    queue = RecordingQueue(fail_first=1)
    spool = Spool(tmp_path / "spool", queue, stable_s=0.0)
    store_files(spool, fullres_dicoms[:1])
    with pytest.raises(ConnectionError):
        spool.flush_stable()
    folder = next((tmp_path / "spool" / "queued").iterdir())
    batch_id = (folder / BATCH_MARKER).read_text()  # the id is kept before the submit is tried
    assert spool.flush_stable() == []
    assert spool.sweep().resubmitted == [batch_id] and list(queue.submitted) == [batch_id]
    assert spool.sweep().resubmitted == []


def test_a_batch_the_queue_lost_is_submitted_again_and_a_reported_one_removed_after_retention(
        fullres_dicoms, tmp_path):
    queue = RecordingQueue()
    spool = Spool(tmp_path / "spool", queue, stable_s=0.0, retention_s=3600)
    store_files(spool, fullres_dicoms[:2])  # two studies
    first, second = spool.flush_stable()
    # a restart with an empty queue (embedded Redis died with the listener): both are unknown now
    restarted = RecordingQueue()
    spool = Spool(tmp_path / "spool", restarted, stable_s=0.0, retention_s=3600)
    assert sorted(spool.sweep().resubmitted) == sorted([first, second])  # same ids: same report folders
    assert sorted(restarted.submitted) == sorted([first, second])
    restarted.states[first] = "done"
    t0 = time.time()
    assert spool.sweep(t0).removed == 0  # reported: kept for the retention time
    folders = {(f / BATCH_MARKER).read_text(): f for f in (tmp_path / "spool" / "queued").iterdir()}
    assert (folders[first] / REPORTED_MARKER).is_file()
    del restarted.states[first]  # its record expired from Redis before the retention: not submitted again
    assert spool.sweep(t0 + 1800).resubmitted == []
    result = spool.sweep(t0 + 3600)
    assert result.removed == 1 and result.pending == 1 and result.resubmitted == []
    assert not folders[first].exists() and folders[second].is_dir()


def test_the_flush_thread_knows_when_the_next_study_becomes_stable(fullres_dicoms, tmp_path):
    """The listener sleeps until then (not a fixed second): the urgent path waits ``--stable-seconds``, no more."""
    spool = Spool(tmp_path / "spool", RecordingQueue(), stable_s=5.0)
    assert spool.seconds_to_next_stable() is None
    store_files(spool, fullres_dicoms[:2])
    first = min(spool._last.values())
    assert spool.seconds_to_next_stable(first + 1.5) == pytest.approx(3.5)
    assert spool.seconds_to_next_stable(first + 9.0) == 0.0
    assert len(spool.flush_stable(first + 9.0)) == 2 and spool.seconds_to_next_stable() is None
