"""The Orthanc plugin end to end: Debian's Orthanc with the Python plugin, real Redis, a real worker, SRs back."""

from __future__ import annotations

import json
import shutil
import sysconfig
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from conftest import FULLRES
from orthanc_support import OrthancServer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from queue_support import Worker, wait_until, worker_settings

from skin_plugin.dicom.convert import convert_files
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "deploy" / "orthanc" / "skin_plugin_orthanc.py"
DEPLOY_CONFIG = json.loads((ROOT / "deploy" / "orthanc" / "orthanc.json").read_text())
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def plugin_orthanc(tmp_path: Path, redis_url: str, user_metadata: dict | None = None, **env: str) -> OrthancServer:
    """Orthanc running the plugin with the deployed ``UserMetadata``, the repo and this venv importable."""
    variables = {"SKIN_BROKER_URL": redis_url, "SKIN_OUTPUT_DIR": str(tmp_path / "reports"),
                 "SKIN_SPOOL_DIR": str(tmp_path / "spool"),
                 "SKIN_PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}", **env}
    return OrthancServer(tmp_path / "orthanc", python_script=PLUGIN, env=variables,
                         extra={"UserMetadata": DEPLOY_CONFIG["UserMetadata"] if user_metadata is None
                                else user_metadata})


def one_study(tmp_path: Path, n: int = 3) -> list[Path]:
    """``n`` HAM10000 photos as Dermoscopic Photography DICOM files of one study."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for jpeg in sorted(FULLRES.glob("*.jpg"))[:n]:
        shutil.copy(jpeg, photos)
    converted = convert_files([photos], tmp_path / "dicom", images_per_study=n)
    assert len({c.path.parent for c in converted}) == 1
    return [c.path for c in converted]


def sr_file(path: Path) -> Path:
    """A minimal Comprehensive SR of a new study (what a PACS holds besides images)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = COMPREHENSIVE_SR, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = COMPREHENSIVE_SR, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "TEST^SRONLY", "SRONLY1", "SR"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.save_as(path, enforce_file_format=True)
    return path


def wait_or_fail(predicate, timeout_s: float, what: str, orthanc: OrthancServer, *logs: Path) -> None:
    try:
        wait_until(predicate, timeout_s, poll_s=0.2, what=what)
    except TimeoutError as exc:
        tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs
                          if log.exists())
        pytest.fail(f"{exc}\n--- orthanc.log\n{orthanc.log_text()[-4000:]}\n{tails}")


def batches_under(store: BatchStore, root: Path) -> list:
    """This test's batches (another test run may share the Redis database)."""
    return [b for b in store.recent_batches(100) if Path(b.out_dir).is_relative_to(root)]


def plugin_lines(orthanc: OrthancServer) -> list[str]:
    return [line for line in orthanc.log_text().splitlines() if "skin-plugin:" in line]


def test_a_stable_study_is_scored_and_its_srs_come_back_to_orthanc(redis_url, tmp_path):
    sources = one_study(tmp_path)
    source_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in sources}
    study_uid = sources[0].parent.name
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    worker_log = tmp_path / "worker.log"
    with Worker(settings, concurrency=1, log=worker_log), plugin_orthanc(tmp_path, redis_url) as orthanc:
        for f in sources:
            orthanc.upload(f)
        wait_or_fail(lambda: batches_under(store, tmp_path), 60, "the plugin's batch", orthanc, worker_log)
        [batch] = batches_under(store, tmp_path)
        wait_or_fail(lambda: store.status(batch.batch_id).reported, 120, "the batch's reports", orthanc, worker_log)
        status = store.status(batch.batch_id)
        out = tmp_path / "reports" / study_uid
        assert (status.total, status.done, status.failed, status.queue) == (3, 3, 0, "urgent")
        assert Path(status.out_dir) == out
        assert status.route == f"dicomweb+{orthanc.dicomweb_url}"
        spooled = sorted((tmp_path / "spool" / "orthanc" / study_uid).glob("*.dcm"))
        assert {p.stem for p in spooled} == source_uids
        assert len(list((out / "sr").glob("*.dcm"))) == 3 and (out / "summary.json").exists()

        # The workers send the SRs back to this Orthanc over DICOMweb (the batch's route).
        def srs() -> list[dict]:
            instances = orthanc.study_instances(study_uid)
            return [i for i in instances if orthanc.get(f"/series/{i['ParentSeries']}")["MainDicomTags"].get(
                "Modality") == "SR"]

        wait_or_fail(lambda: len(srs()) == 3, 60, "3 SRs back in Orthanc", orthanc, worker_log)
        referenced = set()
        for instance in srs():
            sr = pydicom.dcmread(BytesIO(orthanc.instance_file(instance["ID"])))
            assert sr.Modality == "SR" and sr.StudyInstanceUID == study_uid
            evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
            assert evidence.StudyInstanceUID == study_uid
            referenced.add(evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        assert referenced == source_uids

        # The SRs made the study stable again: the plugin looked at it and started no second batch.
        wait_or_fail(lambda: sum("no new skin photograph" in line for line in plugin_lines(orthanc)) >= 1, 30,
                     "the plugin's second look at the study", orthanc)
        assert len(batches_under(store, tmp_path)) == 1
    lines = plugin_lines(orthanc)
    assert any(f"study {study_uid}: batch {batch.batch_id} submitted, 3 image(s)" in line for line in lines)
    patient = str(pydicom.dcmread(sources[0], stop_before_pixels=True).PatientName)
    assert not any(patient in line or "PATIENT" in line for line in lines), "patient data in the plugin's log"


def test_a_study_without_photographs_starts_no_batch(redis_url, tmp_path):
    sr = sr_file(tmp_path / "sr.dcm")
    study_uid = pydicom.dcmread(sr).StudyInstanceUID
    store = BatchStore.from_settings(worker_settings(redis_url))
    with plugin_orthanc(tmp_path, redis_url) as orthanc:
        orthanc.upload(sr)
        wait_or_fail(lambda: any(f"study {study_uid}: no new skin photograph" in line
                                 for line in plugin_lines(orthanc)), 30, "the plugin's look at the study", orthanc)
        assert orthanc.proc is not None and orthanc.proc.poll() is None
    assert batches_under(store, tmp_path) == []
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").rglob("*.dcm"))


def test_a_failed_submission_is_logged_and_orthanc_keeps_serving(redis_url, tmp_path):
    sources = one_study(tmp_path, n=1)
    store = BatchStore.from_settings(worker_settings(redis_url))
    with plugin_orthanc(tmp_path, redis_url, SKIN_ORTHANC_QUEUE="no-such-queue") as orthanc:
        instance = orthanc.upload(sources[0])
        wait_or_fail(lambda: any("not submitted: ValueError: unknown queue" in line for line in plugin_lines(orthanc)),
                     30, "the plugin's error", orthanc)
        assert orthanc.get("/system")["DicomAet"] == orthanc.aet
        assert "SkinBatch" not in orthanc.get(f"/instances/{instance['ID']}/metadata")
    assert batches_under(store, tmp_path) == []
    assert all(line.startswith("E") for line in plugin_lines(orthanc) if "not submitted" in line)


def test_without_its_metadata_declared_the_plugin_refuses_to_submit(redis_url, tmp_path):
    """Without ``SkinBatch`` the SRs coming back would start new batches: refused, visibly, Orthanc still up."""
    sources = one_study(tmp_path, n=1)
    store = BatchStore.from_settings(worker_settings(redis_url))
    with plugin_orthanc(tmp_path, redis_url, user_metadata={}) as orthanc:
        assert any(line.startswith("E") and "not loaded" in line and "UserMetadata" in line
                   for line in plugin_lines(orthanc))
        orthanc.upload(sources[0])
        wait_or_fail(lambda: any("not submitted: plugin not loaded" in line for line in plugin_lines(orthanc)), 30,
                     "the plugin's error", orthanc)
        assert orthanc.instances()
    assert batches_under(store, tmp_path) == []
