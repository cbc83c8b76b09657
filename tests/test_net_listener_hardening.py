"""``skin-plugin listen`` against hostile peers and crashes (issue 16 items 5-7): real listener processes,
DCMTK storescu/echoscu, raw sockets, real Redis and Celery workers, ``kill -9``."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from queue_support import Worker, free_port, wait_until, worker_settings

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


class Listener:
    """A ``skin-plugin listen`` process on a free port (``broker=None``: its embedded Redis and workers)."""

    def __init__(self, tmp: Path, broker: str | None, *extra: str, tag: str = "1") -> None:
        self.tmp, self.port, self.tag = tmp, free_port(), tag
        args = [sys.executable, "-m", "skin_plugin.cli", "listen", "--out", str(tmp / "reports"), "--port",
                str(self.port), "--allow-ae", "MODALITY", "--stable-seconds", "1", "--spool", str(tmp / "spool"),
                *(["--broker", broker] if broker else ["--workers", "1"]), *extra]
        self.log = tmp / f"listener-{tag}.log"
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "SKIN_BROKER_URL": ""},
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))  # noqa: SIM115
        wait_until(lambda: self.echo() or self.proc.poll() is not None, 90, 0.2, "listener")
        assert self.proc.poll() is None, self.log.read_text()

    def echo(self, timeout: int = 5) -> bool:
        return subprocess.run(["echoscu", "-to", str(timeout), "-ta", str(timeout), "-aet", "MODALITY", "-aec",
                               "SKINAI", "127.0.0.1", str(self.port)], capture_output=True).returncode == 0

    def store(self, files: list[Path]) -> subprocess.CompletedProcess:
        return subprocess.run(["storescu", "-R", "--propose-jpeg8", "-aet", "MODALITY", "-aec", "SKINAI",
                               "127.0.0.1", str(self.port), *map(str, files)], capture_output=True, text=True,
                              timeout=300)

    def peak_rss_kb(self) -> int:
        return int(next(x for x in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
                        if x.startswith("VmHWM")).split()[1])

    def children(self) -> list[int]:
        """Every descendant process (the embedded Redis, the Celery worker and its pool)."""
        found, frontier = [], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            for task in Path(f"/proc/{pid}/task").iterdir():
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                frontier += kids
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


@pytest.fixture()
def listener(redis_url, tmp_path):
    listening = Listener(tmp_path, redis_url)
    yield listening
    listening.stop()


def garbage_connection(port: int, data: bytes, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    try:
        s.sendall(data)
    except OSError:
        pass  # already dropped
    return s


def test_a_garbage_flood_does_not_deny_good_associations(listener, fullres_dicoms):
    """Before: 10 connections of 10 KB of random bytes, held open, refused every association (local limit)."""
    held = [garbage_connection(listener.port, os.urandom(10_240)) for _ in range(10)]
    stop = threading.Event()

    def keep_flooding() -> None:
        while not stop.is_set():
            held.append(garbage_connection(listener.port, os.urandom(10_240)))
            time.sleep(0.02)

    flooder = threading.Thread(target=keep_flooding)
    flooder.start()
    try:
        for _ in range(3):
            assert listener.echo()
        result = listener.store(fullres_dicoms[:3])
        assert result.returncode == 0, result.stderr
    finally:
        stop.set()
        flooder.join()
        for s in held:
            s.close()
    assert listener.proc.poll() is None
    assert "dropped the connection from 127.0.0.1:" in listener.log.read_text()


def test_idle_connections_do_not_take_association_slots(listener, fullres_dicoms):
    """Before: 10 connections that never send a request held all 10 association slots until a timeout."""
    idle = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(12)]
    try:
        assert listener.echo()
        assert listener.store(fullres_dicoms[:1]).returncode == 0
    finally:
        for s in idle:
            s.close()


def test_associations_beyond_the_limit_are_refused_and_logged(redis_url, tmp_path):
    listening = Listener(tmp_path, redis_url, "--max-associations", "2")
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    held = [ae.associate("127.0.0.1", listening.port, ae_title="SKINAI") for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        third = ae.associate("127.0.0.1", listening.port, ae_title="SKINAI")
        assert third.is_rejected
        for a in held:
            a.release()
        assert listening.echo()  # slots are given back
    finally:
        listening.stop()
    line = next(x for x in listening.log.read_text().splitlines() if "associations already open" in x)
    assert "from 127.0.0.1:" in line and "calling AE 'MODALITY'" in line


def pdu_bomb(port: int, pdu_type: int, megabytes: int, sock: socket.socket | None = None) -> int:
    """A PDU header claiming 4 GB, then ``megabytes`` of data; returns how many MB went out."""
    s = sock or socket.create_connection(("127.0.0.1", port))
    chunk, sent = b"\0" * (1 << 20), 0
    try:
        s.sendall(struct.pack(">BBL", pdu_type, 0, 0xFFFFFFFF))
        for _ in range(megabytes):
            s.sendall(chunk)
            sent += 1
    except OSError:
        pass  # dropped by the listener: what this test wants
    finally:
        s.close()
    return sent


def test_a_pdu_claiming_4_gb_is_dropped_before_it_is_buffered(listener):
    """Before: 3 connections each streaming 1.3 GB after such a header raised the listener from 115 MB to
    4.1 GB (VmHWM); pynetdicom buffered whatever the length field announced."""
    before = listener.peak_rss_kb()
    threads = [threading.Thread(target=pdu_bomb, args=(listener.port, 0x01, 300)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the same inside an association: a P-DATA-TF longer than the maximum PDU we announced
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="SKINAI")
    assert assoc.is_established
    pdu_bomb(listener.port, 0x04, 300, sock=assoc.dul.socket.socket)
    wait_until(lambda: not assoc.is_alive(), 30, 0.1, "association ended")
    assert listener.echo()
    grown_mb = (listener.peak_rss_kb() - before) / 1024
    assert grown_mb < 100, f"listener peak RSS grew by {grown_mb:.0f} MB"
    log = listener.log.read_text()
    assert "claims 4294967295 bytes" in log


def big_secondary_capture(path: Path, megabytes: int) -> Path:
    side = int((megabytes * 2**20 / 3) ** 0.5)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "XC"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_an_instance_over_the_size_limit_aborts_its_association_only(redis_url, tmp_path, fullres_dicoms):
    listening = Listener(tmp_path, redis_url, "--max-instance-mb", "2")
    try:
        big = big_secondary_capture(tmp_path / "big.dcm", 3)
        assert listening.store([big]).returncode != 0
        assert "data set over 2097152 bytes" in listening.log.read_text()
        assert not list((tmp_path / "spool").rglob("*.dcm"))
        assert listening.store(fullres_dicoms[:1]).returncode == 0
    finally:
        listening.stop()


# --- crashes ------------------------------------------------------------------------------------------
def reported_sops(reports: Path) -> dict[str, int]:
    """Referenced SOP Instance UID -> how many SRs report it."""
    counts: dict[str, int] = {}
    for sr in reports.rglob("sr/*.dcm"):
        ref = (pydicom.dcmread(sr).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
               .ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        counts[ref] = counts.get(ref, 0) + 1
    return counts


def queued_markers(tmp: Path) -> int:
    return len(list((tmp / "spool" / "queued").glob("*/.batch")))


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_of_the_embedded_listener_loses_nothing_and_orphans_nothing(tmp_path, fullres_dicoms):
    """Before: the embedded Redis and Celery worker outlived a ``kill -9`` of the listener, and with them
    gone (killed together, as by the OOM killer or a container stop) 350 of 400 acknowledged images were
    never reported: queued folders with a ``.batch`` marker were never submitted again."""
    files = fullres_dicoms[:12]
    sops = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    first = Listener(tmp_path, None)
    assert first.store(files).returncode == 0  # all 12 acknowledged
    wait_until(lambda: queued_markers(tmp_path) >= 1, 60, 0.05, "a study queued")
    children = first.children()
    assert len(children) >= 3  # redis-server, celery master, its pool child
    workdir = next(d for d in Path(tempfile.gettempdir()).glob("skin-embedded-*")
                   if (d / "owner.pid").read_text() == str(first.proc.pid))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    wait_until(lambda: not any(alive(p) for p in children), 30, 0.1, "the embedded processes to die with it")
    second = Listener(tmp_path, None, tag="2")
    try:
        assert not workdir.exists()  # the dead cluster's folder is cleared by the next one
        wait_until(lambda: set(reported_sops(tmp_path / "reports")) >= sops, 180, 0.5, "every image reported")
        assert all(n == 1 for n in reported_sops(tmp_path / "reports").values())  # exactly once
        wait_until(lambda: not list((tmp_path / "spool").rglob("*.dcm")), 30, 0.2, "spool emptied")
    finally:
        second.stop()


@pytest.mark.parametrize("lose_redis_state", [True, False], ids=["redis-state-lost", "redis-state-kept"])
def test_kill_9_with_an_external_broker_reports_each_instance_exactly_once(redis_url, tmp_path, fullres_dicoms,
                                                                           lose_redis_state):
    """Listener killed with batches queued and no worker yet; with the broker's state lost (as an embedded
    Redis is) they are submitted again under their ids, with it kept they are not submitted twice.
    Before: with the state lost, those batches were never scored."""
    import redis

    files = fullres_dicoms[12:20]
    sops = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    first = Listener(tmp_path, redis_url)
    assert first.store(files).returncode == 0
    wait_until(lambda: queued_markers(tmp_path) == len(files), 60, 0.1, "every study queued")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    if lose_redis_state:
        redis.Redis.from_url(redis_url).flushdb()
    second = Listener(tmp_path, redis_url, tag="2")
    try:
        with Worker(worker_settings(redis_url), concurrency=1):
            wait_until(lambda: set(reported_sops(tmp_path / "reports")) >= sops, 180, 0.5, "every image reported")
            wait_until(lambda: not list((tmp_path / "spool").rglob("*.dcm")), 30, 0.2, "spool emptied")
        assert all(n == 1 for n in reported_sops(tmp_path / "reports").values())
        assert len(list((tmp_path / "reports").glob("*/summary.json"))) == len(files)  # one batch per study
    finally:
        second.stop()


def test_reported_studies_stay_in_the_spool_for_the_retention_time(redis_url, tmp_path, fullres_dicoms):
    listening = Listener(tmp_path, redis_url, "--spool-retention-hours", "1")
    try:
        with Worker(worker_settings(redis_url), concurrency=1):
            assert listening.store(fullres_dicoms[20:22]).returncode == 0
            wait_until(lambda: len(list((tmp_path / "spool").rglob(".reported"))) == 2, 120, 0.2, "reported")
        assert len(list((tmp_path / "spool").rglob("*.dcm"))) == 2  # kept: an hour is not over
    finally:
        listening.stop()
