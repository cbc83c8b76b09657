"""``skin-plugin pull`` (issue 17 item 7) against a real Orthanc: it says what it found, skipped and queued,
``--since`` finds instances whose StudyDate is empty by their other dates, and every failure to reach or
read the archive is one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
from orthanc_support import OrthancServer
from queue_support import Worker, free_port, worker_settings
from test_net_delivery import BlackHole

ROOT = Path(__file__).resolve().parents[1]
DATES = ("StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "AcquisitionDate",
         "AcquisitionDateTime")


def pull(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SKIN_DICOMWEB_", "SKIN_ROUTE_"))}
    return subprocess.run([sys.executable, "-m", "skin_plugin.cli", "pull", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**base, "COLUMNS": "400", **(env or {})})


def dated(src: Path, out: Path, **dates: str) -> Path:
    """A copy of ``src`` with only the given date attributes (others removed)."""
    ds = pydicom.dcmread(src)
    for name in DATES:
        if name in ds:
            delattr(ds, name)
    for name, value in dates.items():
        setattr(ds, name, value)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def test_pull_says_what_it_found_skipped_and_queued_and_dates_empty_study_dates(redis_url, fullres_dicoms,
                                                                                tmp_path):
    src = fullres_dicoms[66:71]
    files = [dated(src[0], tmp_path / "in" / "a.dcm", StudyDate="20261105", StudyTime="101010"),
             dated(src[1], tmp_path / "in" / "b.dcm", StudyDate="", SeriesDate="20261112"),
             dated(src[2], tmp_path / "in" / "c.dcm", StudyDate="", ContentDate="20261110"),
             dated(src[3], tmp_path / "in" / "d.dcm", StudyDate="", AcquisitionDateTime="20261120083000"),
             # dated by its study before --since: a later ContentDate does not bring it in
             dated(src[4], tmp_path / "in" / "e.dcm", StudyDate="20261001", ContentDate="20261120")]
    settings = worker_settings(redis_url)
    with OrthancServer(tmp_path / "orthanc") as orthanc, Worker(settings, concurrency=1):
        for f in files:
            orthanc.upload(f)
        args = ["--dicomweb", orthanc.dicomweb_url, "--since", "20261101", "--out", str(tmp_path / "out"),
                "--broker", redis_url, "--wait"]
        first = pull(*args)
        assert first.returncode == 0, first.stderr
        lines = first.stderr.splitlines()
        assert (f"found 4 photographic instance(s) dated 20261101 or later at {orthanc.dicomweb_url} "
                "(1 by SeriesDate, 1 by ContentDate, 1 by AcquisitionDateTime: their StudyDate is empty)") in lines
        assert "skipped 0 already scored by this model" in lines
        assert any(line.startswith("queued 4 instance(s) on batch: batch ") for line in lines), lines
        assert "4 scored, 0 failed" in first.stderr
        again = pull(*args)
        assert again.returncode == 0, again.stderr
        lines = again.stderr.splitlines()
        assert any(line.startswith("found 4 photographic instance(s)") for line in lines), lines
        assert "skipped 4 already scored by this model" in lines and "nothing new to score" in lines
        everything = pull(*args[:2], *args[4:])  # without --since: the older study too
        assert "found 5 photographic instance(s) at" in everything.stderr
        assert "skipped 4 already scored by this model" in everything.stderr


def test_pull_failures_are_one_line_naming_the_archive(redis_url, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    hole = BlackHole()
    hung = f"http://127.0.0.1:{hole.port}/dicom-web"
    out = ["--out", str(tmp_path / "out"), "--broker", redis_url]
    try:
        with OrthancServer(tmp_path / "orthanc", users={"skin": "pull-test-pw-4d0e"}) as orthanc:
            cases = [
                (pull("--dicomweb", closed, *out), f"pull: {closed} unreachable: connection refused"),
                (pull("--dicomweb", hung, *out, env={"SKIN_NET_READ_TIMEOUT": "1"}),
                 f"pull: {hung} unreachable: no answer within 1 s"),
                (pull("--dicomweb", orthanc.dicomweb_url, *out),
                 f"pull: {orthanc.dicomweb_url} requires authentication (HTTP 401) and none is configured: set "
                 "SKIN_DICOMWEB_* (USERNAME + PASSWORD or PASSWORD_FILE, or TOKEN or TOKEN_FILE)"),
                (pull("--dicomweb", orthanc.http_url + "/not-dicom-web", *out,
                      env={"SKIN_DICOMWEB_USERNAME": "skin", "SKIN_DICOMWEB_PASSWORD": "pull-test-pw-4d0e"}),
                 f"pull: {orthanc.http_url}/not-dicom-web answered HTTP 404"),
                (pull("--dicomweb", "archive/dicom-web", *out),
                 "pull: archive/dicom-web is not an http(s):// DICOMweb URL (e.g. https://archive/dicom-web)"),
                (pull("--dicomweb", closed, "--since", "2026-13-01", *out),
                 "pull: --since: not a calendar date: '2026-13-01'"),
                (pull("--dicomweb", closed, "--since", "last week", *out),
                 "pull: --since: expected a date as YYYYMMDD, got 'last week'"),
            ]
    finally:
        hole.close()
    for proc, expected in cases:
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "out").exists()
