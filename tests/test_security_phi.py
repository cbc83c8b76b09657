"""Nobody reads patient data or secrets without a key: credentials come from the environment, never from a
URL, and no secret lands in a log, in Redis or in a file; Redis forgets a batch's patient data once its
report is written. Real Orthanc (authentication on), real Redis, real worker processes, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from orthanc_support import OrthancServer
from queue_support import RedisServer, Worker, free_port, listening_addresses, wait_until, worker_settings

from skin_plugin.dicom.convert import PatientStudy, build_dataset
from skin_plugin.net.credentials import CredentialError, HttpCredentials, redact_text, redact_url
from skin_plugin.net.dead_letter import DeadLetterBox
from skin_plugin.net.destination import Destination, DestinationError
from skin_plugin.net.sender import send_files
from workers.client import submit_batch, wait_for_batch
from workers.config import DEFAULT_RESULT_TTL_S, DEFAULT_SCORED_TTL_S
from workers.finalize import finalize_batch
from workers.store import REPORT_PHI_FIELDS, BatchStore

ROOT = Path(__file__).resolve().parents[1]
USER, SECRET = "alice", "S3cr3t-pw-7f2c9e"
PATIENT = PatientStudy("SECRETNAME^JANE", "MRN-98765", birth_date="19700101", sex="F", age="054Y",
                       accession_number="ACC-55501", study_id="STUDYID-313", study_time="101112")
PHI = ("SECRETNAME", "MRN-98765", "19700101", "ACC-55501", "STUDYID-313")
NOT_FOR_REDIS = ("19700101", "STUDYID-313")
"""Patient data no report page shows: it goes into the SR only, never into Redis."""


@pytest.fixture()
def phi_dicoms(samples_dir, tmp_path) -> list[Path]:
    """Three Dermoscopic Photography files of one (fake) patient, named after the patient."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    files = []
    for i, jpeg in enumerate(sorted(samples_dir.glob("*.jpg"))[:3]):
        files.append(folder / f"SECRETNAME_JANE_MRN-98765_{i}.dcm")
        build_dataset(jpeg.read_bytes(), PATIENT, instance_number=i + 1).save_as(files[-1], enforce_file_format=True)
    return files


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skin_plugin.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, **(env or {})})


def redis_dump(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key of the database with all of its content (any type) as one byte string."""
    readers = {b"string": lambda k: [client.get(k)], b"hash": lambda k: list(client.hgetall(k).items()),
               b"list": lambda k: client.lrange(k, 0, -1), b"set": lambda k: list(client.smembers(k)),
               b"zset": lambda k: client.zrange(k, 0, -1)}
    out = {}
    for key in client.scan_iter(count=1000):
        parts = readers[client.type(key)](key)
        out[key] = b"|".join(b"|".join(p) if isinstance(p, tuple) else p for p in parts if p is not None)
    return out


def files_holding(root: Path, needle: str, skip: Path) -> dict[str, int]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and skip not in path.parents:
            n = path.read_bytes().count(needle.encode())
            if n:
                found[str(path.relative_to(root))] = n
    return found


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_credentials_come_from_variables_or_files_and_stay_out_of_repr(tmp_path):
    (tmp_path / "pw").write_text(SECRET + "\n")
    creds = HttpCredentials.from_env("X", {"X_USERNAME": USER, "X_PASSWORD_FILE": str(tmp_path / "pw")})
    assert creds is not None and creds.accepts(creds.authorization()) and SECRET not in repr(creds)
    assert not creds.accepts(HttpCredentials(USER, SECRET + "x").authorization())
    (tmp_path / "token").write_text("tok-1")
    bearer = HttpCredentials.from_env("X", {"X_TOKEN_FILE": str(tmp_path / "token")})
    assert bearer is not None and bearer.accepts("Bearer tok-1") and not bearer.accepts("Bearer tok-2")
    assert HttpCredentials.from_env("X", {}) is None
    for env, message in (({"X_USERNAME": USER}, "X_PASSWORD"), ({"X_PASSWORD": SECRET}, "X_USERNAME"),
                         ({"X_TOKEN": "a", "X_TOKEN_FILE": "b"}, "not both"),
                         ({"X_TOKEN_FILE": str(tmp_path / "missing")}, "cannot read")):
        with pytest.raises(CredentialError, match=message) as caught:
            HttpCredentials.from_env("X", env)
        assert SECRET not in str(caught.value)
    assert redact_url(f"dicomweb+https://{USER}:{SECRET}@h:1/dw?access_token=t&limit=5") == (
        f"dicomweb+https://{USER}:***@h:1/dw?access_token=***&limit=5")
    assert redact_text(f"failed: http://{USER}:{SECRET}@h/x (retry)") == f"failed: http://{USER}:***@h/x (retry)"
    assert redact_url("dicom://PACS@h:104?calling=SKINAI") == "dicom://PACS@h:104?calling=SKINAI"


def test_urls_holding_a_password_are_refused_without_echoing_it(tmp_path):
    url = f"http://{USER}:{SECRET}@127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(DestinationError, match=r"SKIN_DICOMWEB_PASSWORD") as caught:
        Destination.parse("dicomweb+" + url)
    assert SECRET not in str(caught.value) and f"{USER}:***@" in str(caught.value)
    for args in (["pull", "--dicomweb", url], ["pull", "--dicomweb", url.replace(f"{USER}:{SECRET}@", ""),
                                               "--route", "dicomweb+" + url]):
        proc = cli(*args, "--out", str(tmp_path / "out"), "--broker", "redis://127.0.0.1:1/0")
        line = one_line_error(proc)
        assert "holds a password" in line and SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_authenticated_pull_and_route_leave_the_secret_nowhere(phi_dicoms, tmp_path, monkeypatch):
    """Pull from and STOW back to an Orthanc that requires a password, given only in the environment; then
    grep every log, every Redis key and value (and its append-only file), and every file written."""
    work = tmp_path / "run"
    (work / "redis").mkdir(parents=True)
    creds = {"SKIN_DICOMWEB_USERNAME": USER, "SKIN_DICOMWEB_PASSWORD": SECRET}
    server = RedisServer(work / "redis").start()  # appendonly: what Redis writes to disk is grepped too
    settings = worker_settings(server.url, max_retries=0)
    try:
        with OrthancServer(tmp_path / "orthanc", users={USER: SECRET}) as orthanc, \
                Worker(settings, concurrency=1, log=work / "worker.log", loglevel="DEBUG", env=creds):
            for f in phi_dicoms:
                orthanc.upload(f)
            # without credentials, or with a wrong one: one line naming the server, no traceback
            base = ["pull", "--dicomweb", orthanc.dicomweb_url, "--out", str(work / "refused"),
                    "--broker", server.url]
            line = one_line_error(cli(*base))
            assert orthanc.dicomweb_url in line and "HTTP 401" in line and "none is configured" in line
            wrong = one_line_error(cli(*base, env={**creds, "SKIN_DICOMWEB_PASSWORD": "not-it"}))
            assert orthanc.dicomweb_url in wrong and "refused our credentials (HTTP 401)" in wrong
            # the authenticated run: QIDO + WADO with the credential, SRs stored back by STOW-RS
            proc = cli("pull", "--dicomweb", orthanc.dicomweb_url, "--out", str(work / "out"), "--broker",
                       server.url, "--wait", "--route", "dicomweb+" + orthanc.dicomweb_url, env=creds)
            (work / "pull.log").write_text(proc.stdout + proc.stderr)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert (f"3 scored, 0 failed; SRs: 3 sent, 0 pending, 0 dead-lettered to dicomweb+{orthanc.dicomweb_url}"
                    in proc.stderr)
            assert sum(orthanc.instance_tags(i).get("Modality") == "SR" for i in orthanc.instances()) == 3
            # a route whose credential is refused: one-line reason, dead-lettered without any secret
            monkeypatch.setenv("SKIN_DICOMWEB_PASSWORD", SECRET)
            monkeypatch.setenv("SKIN_DICOMWEB_USERNAME", USER)
            monkeypatch.setenv("SKIN_ROUTE_USERNAME", USER)
            monkeypatch.setenv("SKIN_ROUTE_PASSWORD", "not-it-either")
            dest = Destination.parse("dicomweb+" + orthanc.dicomweb_url)
            sr = sorted((work / "out" / "sr").glob("*.dcm"))[0]
            (failure,) = send_files(dest, [sr])
            assert "\n" not in failure.reason and orthanc.dicomweb_url in failure.reason
            assert "refused our credentials (HTTP 401)" in failure.reason
            DeadLetterBox(work / "out" / "dead-letter").add(sr, dest, failure.reason, 1)
        client = redis.Redis.from_url(server.url)
        in_redis = {k.decode(): v.count(SECRET.encode()) for k, v in redis_dump(client).items()}
        assert len(in_redis) > 5 and not any(in_redis.values()), in_redis
    finally:
        server.stop()
    # every log, the Redis append-only file, reports, spool, dead letters (Orthanc's own config excluded)
    assert (work / "worker.log").stat().st_size > 0 and list(work.rglob("*.aof"))
    assert files_holding(work, SECRET, skip=tmp_path / "orthanc") == {}
    assert json.loads(next((work / "out" / "dead-letter").glob("*.json")).read_text())["destination"] == (
        "dicomweb+" + orthanc.dicomweb_url)


def test_redis_keeps_no_patient_data_once_a_batch_is_reported(redis_url, phi_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    out, log = tmp_path / "out", tmp_path / "worker.log"
    with Worker(settings, concurrency=1, log=log, loglevel="DEBUG"):
        batch = submit_batch(store, phi_dicoms, out, chunk_size=2)
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.done, status.failed) == (3, 0)
    report = (out / "report.html").read_text()
    assert "SECRETNAME" in report and "MRN-98765" in report  # the page holds them: its job
    # the batch's job records: no patient data, no preview
    for record in store.job_records(batch):
        for frame in record["frames"]:
            assert "thumbnail" not in frame and frame["phi_removed"]
            assert not set(frame["source"]) & (REPORT_PHI_FIELDS | {"patient_birth_date", "study_id"})
    # the whole database: what still holds a name is an idempotency record (a later report of the same
    # input needs it), with only the reports' fields, expiring within the result TTL; and the input paths
    # of the job records (this test names its files after the patient)
    client = redis.Redis.from_url(redis_url)
    for key, value in redis_dump(client).items():
        ttl = client.ttl(key)
        assert not any(s.encode() in value for s in NOT_FOR_REDIS), key
        if key.endswith(b":jobs"):
            records = [json.loads(raw) for raw in client.hvals(key)]
            value = json.dumps([{k: v for k, v in r.items() if k not in ("input", "frames")}
                                for rec in records for r in (rec, *rec["frames"])]).encode()
        if any(s.encode() in value for s in PHI):
            assert key.startswith(b"skin:done:") and b"thumbnail" not in value, key
            assert 0 < ttl <= DEFAULT_RESULT_TTL_S, (key, ttl)
        if key.startswith(b"skin:batch:"):
            assert 0 < ttl <= DEFAULT_RESULT_TTL_S, (key, ttl)
        if key.startswith(b"skin:sop:"):
            assert 0 < ttl <= DEFAULT_SCORED_TTL_S, (key, ttl)
    # a second finalize (a redelivered last task) does not rewrite the report without its patient data
    assert finalize_batch(store, batch, None) is None  # type: ignore[arg-type]
    assert (out / "report.html").read_text() == report
    # --loglevel DEBUG: no patient data, and not the input file names that embed it
    text = log.read_text(errors="replace")
    assert "DEBUG" in text and "succeeded in" in text
    for s in (*PHI, "SECRETNAME_JANE"):
        assert s not in text, f"{s} in the DEBUG worker log"


def test_the_dicom_listener_binds_localhost_unless_told(redis_url, tmp_path):
    """``skin-plugin listen`` without --host accepts connections from this host only."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skin_plugin.cli", "listen", "--port", str(port), "--out",
                             str(tmp_path / "reports"), "--broker", redis_url], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening_addresses(port) or proc.poll() is not None, 60, 0.2, "the listener")
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(20)
