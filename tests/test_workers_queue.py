"""The queue path end to end: real Redis, real ``celery worker`` processes, real reports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pydicom
import pytest
from queue_support import Worker, wait_until, worker_settings

from skin_plugin.reports.json_report import load_schema
from skin_plugin.reports.summary import SUMMARY_SCHEMA_NAME
from workers.client import next_time_of_day, submit_batch, wait_for_batch
from workers.finalize import batch_results
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]


def bad_inputs(tmp: Path, good_dicom: Path) -> list[Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "notes.txt").write_text("not an image at all\n")
    (tmp / "empty.dcm").write_bytes(b"")
    data = good_dicom.read_bytes()
    (tmp / "truncated.dcm").write_bytes(data[: len(data) // 2])
    return [tmp / "notes.txt", tmp / "empty.dcm", tmp / "truncated.dcm"]


def validate_summary(summary: dict) -> None:
    schema = load_schema(SUMMARY_SCHEMA_NAME)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                                    ).validate(summary)


def test_a_batch_mixing_good_and_corrupt_inputs_completes(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    good = fullres_dicoms[:6]
    bad = bad_inputs(tmp_path / "bad", good[0])
    files = good[:3] + bad + good[3:]
    with Worker(settings, concurrency=2, log=tmp_path / "worker.log"):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=2)
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.total, status.done, status.failed) == (9, 6, 3)
    assert store.payloads(batch) == []  # input paths are not kept once the batch is reported
    records = store.job_records(batch)
    assert len(records) == 9 and len({r["job_id"] for r in records}) == 9
    reasons = {Path(r["input"]).name: r["error"] for r in records if r["error"]}
    assert set(reasons) == {"notes.txt", "empty.dcm", "truncated.dcm"}
    assert all(len(reason) > 15 for reason in reasons.values())  # a reason, not just "failed"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    validate_summary(summary)
    assert summary["scored"] == 6 and len(summary["failed"]) == 3 and summary["batch_id"] == batch
    assert summary["queue_wait_p50_ms"] is not None and summary["latency_p95_ms"] >= summary["latency_p50_ms"]
    assert sum(w["images"] for w in summary["workers"]) == 6
    assert all(w["worker"].startswith("test@") for w in summary["workers"])
    srs = sorted((tmp_path / "out" / "sr").glob("*.dcm"))
    assert len(srs) == 6 and len(list((tmp_path / "out" / "json").glob("*.json"))) == 6
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in good}
    referenced = {pydicom.dcmread(f).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                  .ReferencedSOPSequence[0].ReferencedSOPInstanceUID for f in srs}
    assert referenced == sources
    assert (tmp_path / "out" / "report.html").read_text().count("notes.txt") >= 1


def test_an_input_already_scored_by_this_model_is_not_scored_again(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[6:10]
    with Worker(settings, concurrency=1):
        first = submit_batch(store, files, tmp_path / "a")
        wait_for_batch(store, first, timeout_s=60)
        second = submit_batch(store, files, tmp_path / "b")
        wait_for_batch(store, second, timeout_s=60)
    assert not any(r["reused"] for r in store.job_records(first))
    again = store.job_records(second)
    assert len(again) == 4 and all(r["reused"] for r in again)
    labels = {r.input: r.label for r in batch_results(store, first)}
    assert {r.input: r.label for r in batch_results(store, second)} == labels
    assert sorted(p.name for p in (tmp_path / "b" / "sr").iterdir()) == \
        sorted(p.name for p in (tmp_path / "a" / "sr").iterdir())


def test_urgent_jobs_are_taken_before_waiting_batch_jobs(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    overnight = submit_batch(store, fullres_dicoms[10:40], tmp_path / "night", queue="batch", chunk_size=2)
    urgent = submit_batch(store, fullres_dicoms[40:42], tmp_path / "now", queue="urgent", chunk_size=2)
    with Worker(settings, concurrency=1):
        wait_for_batch(store, overnight, timeout_s=120)
    night = store.status(overnight)
    first_night_start = min(night.submitted + r["frames"][0]["queue_wait_ms"] / 1000
                            for r in store.job_records(overnight))
    assert store.status(urgent).finished <= first_night_start + 0.05


def test_a_scheduled_batch_waits_for_its_time(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, fullres_dicoms[42:44], tmp_path / "out",
                             release_at=datetime.now() + timedelta(seconds=3))
        assert store.status(batch).state == "scheduled"
        time.sleep(1.5)
        assert store.status(batch).completed == 0
        status = wait_for_batch(store, batch, timeout_s=30)
    assert status.done == 2 and status.started >= status.release_at


def test_next_time_of_day():
    now = datetime(2026, 11, 25, 23, 30)
    assert next_time_of_day("22:00", now) == datetime(2026, 11, 26, 22, 0)
    assert next_time_of_day("23:45", now) == datetime(2026, 11, 25, 23, 45)
    with pytest.raises(ValueError, match="HH:MM"):
        next_time_of_day("late", now)


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "skin_plugin.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_score_without_a_broker_runs_the_embedded_queue(samples_dir, tmp_path):
    proc = run_cli("score", str(samples_dir), "--out", str(tmp_path / "out"), "--workers", "2",
                   env={"SKIN_BROKER_URL": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "embedded Redis and 2 worker" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    validate_summary(summary)
    assert summary["scored"] == 7 and all(w["worker"].startswith("embedded#") for w in summary["workers"])
    assert "7 scored, 0 failed" in proc.stdout
    leftover = subprocess.run(["pgrep", "-f", "embedded@"], capture_output=True, text=True).stdout
    assert leftover.strip() == ""  # workers and Redis were shut down


def test_submit_and_status_on_an_existing_broker(redis_url, samples_dir, tmp_path):
    settings = worker_settings(redis_url)
    proc = run_cli("submit", str(samples_dir), "--out", str(tmp_path / "out"), "--broker", redis_url,
                   "--queue", "urgent")
    assert proc.returncode == 0, proc.stderr
    batch = proc.stdout.strip()
    status = json.loads(run_cli("status", batch, "--json", "--broker", redis_url).stdout)
    assert status["state"] == "queued" and status["total"] == 7 and status["queue"] == "urgent"
    with Worker(settings, concurrency=1):
        wait_until(lambda: BatchStore.from_settings(settings).status(batch).reported, 60, what="batch")
    status = json.loads(run_cli("status", batch, "--json", "--broker", redis_url).stdout)
    assert status["state"] == "finished" and status["done"] == 7
    assert run_cli("status", "no-such-batch", "--broker", redis_url).returncode == 1


def test_jobs_whose_message_was_lost_are_sent_again(redis_url, fullres_dicoms, tmp_path):
    from workers.client import requeue_lost_jobs

    store = BatchStore.from_settings(worker_settings(redis_url))
    batch = submit_batch(store, fullres_dicoms[:4], tmp_path / "out", chunk_size=2)
    assert requeue_lost_jobs(store, stall_s=0) == []  # its messages are still queued
    store.r.delete("batch")  # both messages lost (a consumer killed at the wrong moment)
    store.record_job(batch, "0000000", {"job_id": "0000000", "error": None, "frames": [], "reports": []})
    assert requeue_lost_jobs(store, stall_s=3600) == []  # not stalled long enough
    assert requeue_lost_jobs(store, stall_s=0) == [batch]
    assert requeue_lost_jobs(store, stall_s=0) == []  # one requeue per stall period
    sent = [json.loads(m) for m in store.r.lrange("batch", 0, -1)]
    import base64

    jobs = sorted(j["job_id"] for m in sent for j in json.loads(base64.b64decode(m["body"]))[1]["jobs"])
    assert jobs == ["0000001", "0000002", "0000003"]
    settings = worker_settings(redis_url)
    with Worker(settings, concurrency=1):
        status = wait_for_batch(store, batch, timeout_s=60)
    assert (status.done, status.total) == (4, 4)


def test_worker_logs_carry_no_patient_data(redis_url, samples_dir, tmp_path):
    """A DEBUG-level worker scoring DICOM with patient data (and a truncated copy) logs none of it,
    while the SR, whose job is to carry it, does."""
    from skin_plugin.dicom.convert import PatientStudy, build_dataset

    secrets = ("SECRETNAME^JANE", "MRN-98765", "19700101", "ACC-55501")
    study = PatientStudy(secrets[0], secrets[1], birth_date=secrets[2], sex="F", age="054Y",
                         accession_number=secrets[3])
    files = []
    for i, jpeg in enumerate(sorted(samples_dir.glob("*.jpg"))[:2]):
        files.append(tmp_path / f"phi{i}.dcm")
        build_dataset(jpeg.read_bytes(), study).save_as(files[-1], enforce_file_format=True)
    data = files[0].read_bytes()
    (tmp_path / "phi_truncated.dcm").write_bytes(data[: len(data) // 2])
    files.append(tmp_path / "phi_truncated.dcm")
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    log = tmp_path / "worker.log"
    with Worker(settings, concurrency=1, log=log, loglevel="DEBUG"):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=3)
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.done, status.failed) == (2, 1)
    text = log.read_text(errors="replace")
    assert "Task skin.score_chunk" in text and "succeeded in" in text  # it did log each task
    for secret in secrets:
        assert secret not in text, f"{secret} in the worker log"
    sr = pydicom.dcmread(next((tmp_path / "out" / "sr").glob("*.dcm")))
    assert (str(sr.PatientName), sr.PatientID) == secrets[:2]
