"""``skin-plugin score --out``: DICOM and photos in, SR + JSON + summary + HTML out, validated."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pytest

from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.convert import jpeg_to_dicom

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"
CLI = str(Path(sys.executable).parent / "skin-plugin")


@pytest.fixture(scope="module")
def scored(tmp_path_factory, samples_dir):
    inbox = tmp_path_factory.mktemp("inbox")
    for i, jpeg in enumerate(sorted(FULLRES.glob("*.jpg"))[:3]):
        jpeg_to_dicom(jpeg, inbox / f"img{i}.dcm")
    for jpeg in sorted(samples_dir.glob("*.jpg"))[:2]:
        shutil.copy(jpeg, inbox / jpeg.name)
    (inbox / "corrupt.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 40)
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run([CLI, "score", str(inbox), "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    return inbox, out, proc


def test_layout_and_summary(scored):
    _, out, proc = scored
    assert proc.returncode == 1, proc.stderr  # one input failed
    assert len(list((out / "sr").glob("*.dcm"))) == 3
    assert len(list((out / "json").glob("*.json"))) == 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 6 and summary["scored"] == 5
    assert [f["input"].endswith("corrupt.dcm") for f in summary["failed"]] == [True]
    assert summary["failed"][0]["reason"]
    assert summary["wall_s"] > 0 and summary["images_per_s"] > 0
    html = (out / "report.html").read_text()
    assert "Not for clinical use" in html and "corrupt.dcm" in html


def test_sr_files_validate_and_reference_their_source(scored):
    inbox, out, _ = scored
    sources = {}
    import pydicom

    for f in inbox.glob("img*.dcm"):
        ds = pydicom.dcmread(f)
        sources[ds.SOPInstanceUID] = ds
    for sr_path in (out / "sr").glob("*.dcm"):
        check = subprocess.run(["dciodvfy", "-new", str(sr_path)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors
        assert subprocess.run(["dsrdump", str(sr_path)], capture_output=True).returncode == 0
        sr = hd.sr.srread(sr_path)
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        src = sources[ref]
        assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == src.PatientID
        assert sr.SeriesInstanceUID != src.SeriesInstanceUID


def test_rerun_is_idempotent(scored, tmp_path):
    """The same inputs and model give the same SR UIDs: a re-run overwrites rather than duplicates."""
    inbox, out, _ = scored
    again = tmp_path / "again"
    subprocess.run([CLI, "score", str(inbox), "--out", str(again)], capture_output=True, timeout=600)
    first = sorted(p.name for p in (out / "sr").glob("*.dcm"))
    assert first == sorted(p.name for p in (again / "sr").glob("*"))
    reports = [json.loads(p.read_text()) for p in (out / "json").glob("*.json")]
    assert all(r["prediction"]["code"] in CLASS_CODES for r in reports)
