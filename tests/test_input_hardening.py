"""Bad input fails alone (issue 16, items 1-4): invalid UIDs, memory bombs, duplicate inputs, empty files.

Real files, the real ``skin-plugin`` CLI, real Redis and real Celery worker processes; peak memory is
read from the kernel (``wait4`` rusage of a child, ``VmHWM`` of a worker's child), never timed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from input_bombs import black_png, deflated_dicom, small_dicom
from queue_support import Worker, worker_settings
from test_dicom_reader import SAMPLE, build

from skin_plugin.dicom.reader import (
    EmptyFileError,
    ImageTooLargeError,
    InvalidUidError,
    UnreadableImageError,
    read_input,
)
from skin_plugin.pipeline import DUPLICATE_INSTANCE, SOP_CONFLICT, write_reports
from skin_plugin.reports.batch_writer import BatchWriter
from skin_plugin.reports.json_report import report_file_name
from skin_plugin.results import ModelIdentity, ScoreResult
from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore

CLI = str(Path(sys.executable).parent / "skin-plugin")
IDENTICAL_PAIRS = [("ISIC_0024366", "ISIC_0029861"), ("ISIC_0024777", "ISIC_0029938")]
PEAK_RSS_LIMIT_MB = 500
BAD_UIDS = {"letters": "1.2.abc", "slash": "1.2/3", "dot-dot": "1.2..3", "traversal": "../../etc/passwd",
            "too-long": "1.2." + "3" * 70}


def score_in_process(inputs: list[Path] | Path, out: Path, env: dict[str, str] | None = None,
                     ) -> tuple[subprocess.CompletedProcess, int]:
    """``skin-plugin score --in-process`` in a child process: (its result, its peak RSS in MB from the
    kernel's accounting of that child, ``wait4``)."""
    args = [CLI, "score", *map(str, inputs if isinstance(inputs, list) else [inputs]), "--in-process",
            "--out", str(out)]
    logs = out.parent / f".{out.name}.log"
    peak_file = logs.with_suffix(".peak")
    # A child's ru_maxrss counts the memory of the process it was forked from (the kernel records the old
    # mm's high-water mark at exec), so a large pytest process would inflate it: a small launcher forks it.
    launcher = [sys.executable, "-c", WAIT4_LAUNCHER, str(peak_file), *args]
    with open(logs.with_suffix(".out"), "w") as stdout, open(logs.with_suffix(".err"), "w") as stderr:
        code = subprocess.run(launcher, stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}).returncode
    result = subprocess.CompletedProcess(args, code, logs.with_suffix(".out").read_text(),
                                         logs.with_suffix(".err").read_text())
    return result, int(peak_file.read_text()) // 1024


WAIT4_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def reports_in(out: Path) -> tuple[list[Path], list[Path]]:
    files = [p for p in sorted(out.rglob("*")) if p.is_file()]
    return [p for p in files if p.parent.name == "json"], [p for p in files if p.parent.name == "sr"]


# --- 4. an empty file ---------------------------------------------------------------------------------

def test_a_zero_byte_file_says_empty_file(tmp_path):
    for name in ("empty.dcm", "empty.jpg", "empty"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(EmptyFileError, match="^empty file"):
            read_input(tmp_path / name)


# --- 1. invalid UIDs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attribute", ["sop", "study", "series"])
@pytest.mark.parametrize("kind", list(BAD_UIDS))
def test_the_reader_refuses_an_invalid_uid_without_quoting_it(attribute, kind, tmp_path):
    path = small_dicom(tmp_path / "x.dcm", **{attribute: BAD_UIDS[kind]})
    name = {"sop": "SOP Instance UID", "study": "Study Instance UID", "series": "Series Instance UID"}[attribute]
    with pytest.raises(InvalidUidError, match=f"invalid {name}") as info:
        read_input(path)
    assert BAD_UIDS[kind] not in str(info.value)


def test_a_missing_study_uid_is_refused(tmp_path):
    path = small_dicom(tmp_path / "x.dcm")
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InvalidUidError, match="invalid Study Instance UID: missing"):
        read_input(path)


def bad_uid_folder(folder: Path, good: int = 5) -> Path:
    folder.mkdir(parents=True)
    for i in range(good):
        small_dicom(folder / f"good{i}.dcm", shade=17 * i)
    small_dicom(folder / "bad_sop.dcm", sop=BAD_UIDS["letters"])
    small_dicom(folder / "bad_study.dcm", study=BAD_UIDS["traversal"])
    small_dicom(folder / "bad_series.dcm", series=BAD_UIDS["too-long"])
    return folder


def assert_bad_uids_failed_alone(out: Path, summary: dict, good: int = 5) -> None:
    assert summary["scored"] == good
    reasons = {Path(f["input"]).name: f["reason"] for f in summary["failed"]}
    assert reasons == {"bad_sop.dcm": "invalid SOP Instance UID: holds characters other than digits and dots",
                       "bad_study.dcm": "invalid Study Instance UID: holds characters other than digits and dots",
                       "bad_series.dcm": "invalid Series Instance UID: 74 characters long, over the 64 allowed"}
    json_reports, srs = reports_in(out)
    assert len(json_reports) == good and len(srs) == good  # no orphan report of a failed input
    assert not list(out.rglob("*.tmp"))


def test_invalid_uids_fail_alone_in_process(tmp_path):
    folder = bad_uid_folder(tmp_path / "in")
    proc, _ = score_in_process(folder, tmp_path / "out")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert_bad_uids_failed_alone(tmp_path / "out", summary_of(tmp_path / "out"))


def test_invalid_uids_fail_alone_in_a_queued_chunk(redis_url, tmp_path):
    folder = bad_uid_folder(tmp_path / "in")
    settings = worker_settings(redis_url, chunk_size=32)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, sorted(folder.iterdir()), tmp_path / "out", chunk_size=32)  # one chunk
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.done, status.failed) == (5, 3)
    assert_bad_uids_failed_alone(tmp_path / "out", summary_of(tmp_path / "out"))


# --- 1. an unexpected error while handling one job fails that job alone, leaving none of its files ------

def blocked_multiframe(folder: Path) -> tuple[Path, list[Path]]:
    """Four good DICOMs and a 2-frame one whose second frame's JSON report path is a folder (a report
    that cannot be written after its first frame's JSON and SR were)."""
    folder.mkdir(parents=True)
    good = [small_dicom(folder / f"good{i}.dcm", shade=9 * i) for i in range(4)]
    blocked = small_dicom(folder / "two_frames.dcm", frames=2)
    return blocked, [*good, blocked]


def block_second_frame(blocked: Path, out: Path) -> Path:
    sop = pydicom.dcmread(blocked, stop_before_pixels=True).SOPInstanceUID
    wall = out / "json" / f"{sop}_f1.json"
    wall.mkdir(parents=True)
    return wall


def assert_blocked_input_failed_alone(out: Path, summary: dict, reason_start: str) -> None:
    assert summary["scored"] == 4
    [failed] = summary["failed"]
    assert Path(failed["input"]).name == "two_frames.dcm" and failed["reason"].startswith(reason_start)
    json_reports, srs = reports_in(out)
    assert len(json_reports) == 4 and len(srs) == 4  # the blocked input's frame-0 JSON and SR are gone


def test_a_job_whose_reports_cannot_be_written_fails_alone_in_process(tmp_path):
    blocked, files = blocked_multiframe(tmp_path / "in")
    block_second_frame(blocked, tmp_path / "out")
    proc, _ = score_in_process(files, tmp_path / "out")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert_blocked_input_failed_alone(tmp_path / "out", summary_of(tmp_path / "out"),
                                      "cannot write its reports: Is a directory")


def test_a_job_whose_reports_cannot_be_written_fails_alone_when_queued(redis_url, tmp_path):
    blocked, files = blocked_multiframe(tmp_path / "in")
    block_second_frame(blocked, tmp_path / "out")
    settings = worker_settings(redis_url, max_retries=1)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=8)  # one chunk
        status = wait_for_batch(store, batch, timeout_s=120)
    assert (status.done, status.failed) == (4, 1)
    assert_blocked_input_failed_alone(tmp_path / "out", summary_of(tmp_path / "out"),
                                      "gave up after 1 retries: TransientError: 1 input(s): "
                                      "cannot write its reports: Is a directory")


def test_an_unexpected_error_in_one_input_s_reports_fails_only_that_input(tmp_path):
    """A result that never went through the reader (e.g. from an older record) with an invalid UID."""
    good = read_input(small_dicom(tmp_path / "good.dcm"))[0]
    bad = read_input(small_dicom(tmp_path / "bad.dcm"))[0]
    from dataclasses import replace

    probabilities = {c: 1 / 7 for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")}
    results = [ScoreResult(str(bad.path), 0, replace(bad.source, sop_instance_uid="1.2.abc"), "nv", probabilities),
               ScoreResult(str(good.path), 0, good.source, "nv", probabilities)]
    writer = BatchWriter(tmp_path / "out", ModelIdentity("LesionCNN", "test", "openvino", "int8", "0" * 64))
    done = write_reports(results, writer)
    assert [r.error for r in done] == ["internal error while trying to write its reports: ValueError", None]
    json_reports, srs = reports_in(tmp_path / "out")
    assert [p.name for p in json_reports] == [f"{good.source.sop_instance_uid}_f0.json"] and len(srs) == 1


# --- 2. memory bombs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Tiny files with huge decoded sizes, and the sizes their refusal must name."""
    d = tmp_path_factory.mktemp("bombs")
    return {
        "deflated 16-bit RGB DICOM": (deflated_dicom(d / "deflated16.dcm", bits=16),
                                      "600000000 bytes (10000x10000 pixels x 3 samples x 2 byte(s))"),
        "deflated 8-bit RGB DICOM": (deflated_dicom(d / "deflated8.dcm", bits=8),
                                     "300000000 bytes (10000x10000 pixels x 3 samples x 1 byte(s))"),
        "black PNG": (black_png(d / "black.png"), "300000000 bytes (10000x10000 pixels x 3 samples x 1 byte(s))"),
    }


def test_bombs_are_small_files(bombs):
    sizes = {name: path.stat().st_size for name, (path, _) in bombs.items()}
    assert sizes["deflated 16-bit RGB DICOM"] < 700_000 and max(sizes.values()) < 700_000, sizes


def test_each_bomb_fails_with_its_sizes_and_a_scoring_process_stays_small(bombs, tmp_path):
    peaks = {}
    for i, (name, (path, sizes)) in enumerate(bombs.items()):
        out = tmp_path / f"out{i}"
        proc, peaks[name] = score_in_process(path, out)
        assert proc.returncode == 1, proc.stderr[-2000:]
        [failed] = summary_of(out)["failed"]
        assert sizes in failed["reason"] and "SKIN_MAX_DECODED_BYTES" in failed["reason"], failed
    print("peak RSS (MB) of skin-plugin score --in-process:", peaks)
    assert max(peaks.values()) < PEAK_RSS_LIMIT_MB, peaks


def test_a_worker_scoring_the_bombs_stays_small(bombs, redis_url, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    files = [path for path, _ in bombs.values()] + [SAMPLE]
    with Worker(settings, concurrency=1) as worker:
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=1)
        status = wait_for_batch(store, batch, timeout_s=240)
        children = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True)
        peaks = {pid: _vm_hwm_mb(int(pid)) for pid in children.stdout.split()}
    assert (status.done, status.failed) == (1, 3)
    print("peak RSS (VmHWM, MB) of the worker's child:", peaks)
    assert peaks and max(peaks.values()) < PEAK_RSS_LIMIT_MB, peaks
    reasons = sorted(f["reason"] for f in summary_of(tmp_path / "out")["failed"])
    assert all("over the" in r and "SKIN_MAX_DECODED_BYTES" in r for r in reasons), reasons


def _vm_hwm_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_the_budget_is_a_setting(tmp_path):
    """``SKIN_MAX_DECODED_BYTES`` lowers the budget (a 200x150 RGB DICOM is 90,000 bytes decoded);
    a value that is not a positive number stops the process at start with the variable's name."""
    path = build(pydicom.uid.ExplicitVRLittleEndian, tmp_path)
    code = ("import sys\nfrom skin_plugin.dicom.reader import read_input, InputError\n"
            "try:\n    read_input(sys.argv[1])\nexcept InputError as e:\n    print(e)\n")
    run = [sys.executable, "-c", code, str(path)]
    small = subprocess.run(run, capture_output=True, text=True, env={**os.environ, "SKIN_MAX_DECODED_BYTES": "80000"})
    assert "90000 bytes (200x150 pixels x 3 samples x 1 byte(s)), over the 80000-byte budget" in small.stdout
    assert subprocess.run(run, capture_output=True, text=True).stdout == ""  # the default budget takes it
    bad = subprocess.run(run, capture_output=True, text=True, env={**os.environ, "SKIN_MAX_DECODED_BYTES": "lots"})
    assert bad.returncode != 0 and "SKIN_MAX_DECODED_BYTES must be a positive number of bytes" in bad.stderr


def test_a_jpeg_header_over_the_budget_is_refused_before_decoding(tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (10000).to_bytes(2, "big") * 2  # height, width: 300 MB decoded
    (tmp_path / "big.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageTooLargeError, match=r"300000000 bytes \(10000x10000 pixels"):
        read_input(tmp_path / "big.jpg")


@pytest.mark.parametrize("transfer_syntax", [pydicom.uid.JPEGExtended12Bit, pydicom.uid.JPEGLossless,
                                             pydicom.uid.JPEGLSLossless, pydicom.uid.JPEG2000Lossless,
                                             pydicom.uid.RLELossless], ids=lambda u: u.name)
def test_a_compressed_frame_larger_than_its_header_is_refused_before_decoding(transfer_syntax, tmp_path):
    """The budget is checked on the header: a codestream declaring more pixels must not be decoded."""
    ds = pydicom.dcmread(build(transfer_syntax, tmp_path))
    ds.Rows, ds.Columns = ds.Rows // 2, ds.Columns // 2
    ds.save_as(tmp_path / "lying.dcm", enforce_file_format=True)
    match = "RLE segment decodes to more than" if transfer_syntax == pydicom.uid.RLELossless else \
        f"frame of {2 * ds.Columns}x{2 * ds.Rows} does not match the header"
    with pytest.raises(UnreadableImageError, match=match):
        read_input(tmp_path / "lying.dcm")


# --- 3. byte-identical inputs and shared SOP Instance UIDs ------------------------------------------------

@pytest.fixture()
def ham_pairs(ham_dir, tmp_path) -> Path:
    """The two byte-identical HAM10000 pairs and four other images, in chunks that put each copy after
    its original has been scored (the "already scored, copy its reports" path)."""
    folder = tmp_path / "ham"
    folder.mkdir()
    names = [n for pair in IDENTICAL_PAIRS for n in pair] + ["ISIC_0024306", "ISIC_0024307", "ISIC_0024308",
                                                             "ISIC_0024309"]
    for name in names:
        shutil.copyfile(ham_dir / "images" / f"{name}.jpg", folder / f"{name}.jpg")
    for a, b in IDENTICAL_PAIRS:
        assert (folder / f"{a}.jpg").read_bytes() == (folder / f"{b}.jpg").read_bytes()
    return folder


def assert_one_report_per_scored_input(out: Path, n: int) -> None:
    summary = summary_of(out)
    json_reports, _ = reports_in(out)
    assert summary["scored"] == n and not summary["failed"] and len(json_reports) == n
    named = sorted(Path(json.loads(p.read_text())["input"]["path"]).name for p in json_reports)
    assert named == sorted(p.name for p in (out.parent / "ham").iterdir())  # each report names its input


def test_byte_identical_photos_each_get_their_own_report_when_queued(redis_url, ham_pairs, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, sorted(ham_pairs.iterdir()), tmp_path / "out", chunk_size=2)
        wait_for_batch(store, batch, timeout_s=120)
    assert sum(r["reused"] for r in store.job_records(batch)) == 2  # both copies took the reuse path
    assert_one_report_per_scored_input(tmp_path / "out", 8)


def test_byte_identical_photos_each_get_their_own_report_in_process(ham_pairs, tmp_path):
    proc, _ = score_in_process(ham_pairs, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_one_report_per_scored_input(tmp_path / "out", 8)


def shared_sop_inputs(folder: Path) -> list[Path]:
    """Two different patients' images with one SOP Instance UID, a byte-identical copy of one, and two
    unrelated images."""
    folder.mkdir()
    sop = pydicom.uid.generate_uid()
    first = small_dicom(folder / "a_patient1.dcm", sop=sop)
    other = small_dicom(folder / "b_patient2.dcm", shade=80, sop=sop)
    ds = pydicom.dcmread(other)
    ds.PatientName, ds.PatientID = "OTHER^PATIENT", "OTHER-2"
    ds.save_as(other, enforce_file_format=True)
    copy = folder / "c_copy_of_patient1.dcm"
    copy.write_bytes(first.read_bytes())
    return [first, other, copy, small_dicom(folder / "d.dcm", shade=40), small_dicom(folder / "e.dcm", shade=60)]


def assert_shared_sop_kept_apart(out: Path, summary: dict) -> None:
    assert summary["scored"] == 3
    reasons = {Path(f["input"]).name: f["reason"] for f in summary["failed"]}
    assert reasons == {"b_patient2.dcm": SOP_CONFLICT, "c_copy_of_patient1.dcm": DUPLICATE_INSTANCE}
    json_reports, srs = reports_in(out)
    assert len(json_reports) == 3 and len(srs) == 3
    patients = {pydicom.dcmread(p).PatientID for p in srs}
    assert "OTHER-2" not in patients and "BOMB-1" in patients  # the first image's SR, not a merge


def test_a_shared_sop_instance_uid_fails_the_second_input_in_process(tmp_path):
    files = shared_sop_inputs(tmp_path / "in")
    proc, _ = score_in_process(files, tmp_path / "out")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_shared_sop_kept_apart(tmp_path / "out", summary_of(tmp_path / "out"))


def test_a_shared_sop_instance_uid_fails_the_second_input_when_queued(redis_url, tmp_path):
    files = shared_sop_inputs(tmp_path / "in")
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=1)  # claimed chunk by chunk, in order
        wait_for_batch(store, batch, timeout_s=120)
    assert_shared_sop_kept_apart(tmp_path / "out", summary_of(tmp_path / "out"))


def test_the_same_photo_named_twice_is_one_input(tmp_path):
    proc, _ = score_in_process([SAMPLE, SAMPLE], tmp_path / "out")
    summary = summary_of(tmp_path / "out")
    assert summary["scored"] == 1 and [f["reason"] for f in summary["failed"]] == [
        "duplicate input: this file is already an input of this batch"]
    assert [p.name for p in reports_in(tmp_path / "out")[0]] == [report_file_name(ScoreResult(str(SAMPLE)))]
    assert proc.returncode == 1
