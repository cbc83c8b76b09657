"""``to-dicom`` (issue 17 item 6): generated test identities never collide across runs, and every study is
dated (StudyDate/Time, SeriesDate/Time, ContentDate/Time), so an archive neither merges different photos
into one patient nor hides them from ``pull --since``; dciodvfy shows no date warning on images or SRs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from orthanc_support import OrthancServer
from PIL import Image

from skin_plugin.dicom.convert import convert_files

ROOT = Path(__file__).resolve().parents[1]
FULLRES = ROOT.parent / "shared" / "data" / "ham10000_fullres" / "images"
WHEN = datetime(2025, 3, 4, 5, 6, 7)


def to_dicom(*args: str) -> list[pydicom.Dataset]:
    out = Path(args[args.index("--out") + 1])
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "to-dicom", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(f) for f in sorted(out.rglob("*.dcm"))]


def dciodvfy_warnings(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not found: `make system-deps` installs dicom3tools")
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Warning", "Error"))]


@pytest.fixture()
def photos(tmp_path) -> list[Path]:
    """Two different photos in two folders (two people converting their own photos), dated by their files."""
    out = []
    for i, src in enumerate(sorted(FULLRES.glob("*.jpg"))[:2]):
        folder = tmp_path / f"photos{i}"
        folder.mkdir()
        shutil.copy(src, folder / src.name)
        os.utime(folder / src.name, (WHEN.timestamp(), WHEN.timestamp()))
        out.append(folder / src.name)
    return out


def test_two_runs_on_different_photos_give_two_patients_and_two_studies(photos, tmp_path):
    (a,) = to_dicom(str(photos[0].parent), "--out", str(tmp_path / "run1"))
    (b,) = to_dicom(str(photos[1].parent), "--out", str(tmp_path / "run2"))
    for attr in ("PatientID", "PatientName", "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert a.get(attr) != b.get(attr), attr
    assert a.PatientID.startswith("TEST-") and len(a.AccessionNumber) <= 16 and len(a.StudyID) <= 16
    (again,) = to_dicom(str(photos[0].parent), "--out", str(tmp_path / "run3"))
    assert (again.PatientID, again.StudyInstanceUID, again.SOPInstanceUID) == (
        a.PatientID, a.StudyInstanceUID, a.SOPInstanceUID)  # the same photo: the same identity
    with OrthancServer(tmp_path / "orthanc") as orthanc:
        for f in sorted((tmp_path / "run1").rglob("*.dcm")) + sorted((tmp_path / "run2").rglob("*.dcm")):
            orthanc.upload(f)
        assert len(orthanc.get("/patients")) == 2 and len(orthanc.get("/studies")) == 2


def test_studies_series_and_photos_are_dated(photos, tmp_path):
    (ds,) = to_dicom(str(photos[0]), "--out", str(tmp_path / "dcm"))
    stamp = (WHEN.strftime("%Y%m%d"), WHEN.strftime("%H%M%S"))
    assert (ds.StudyDate, ds.StudyTime) == (ds.SeriesDate, ds.SeriesTime) == (ds.ContentDate, ds.ContentTime) == stamp
    # a photo's EXIF date wins over its file's time, for the photo and for its study
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2024:12:31 23:59:58"
    buf = BytesIO()
    Image.open(photos[1]).save(buf, "JPEG", quality=90, exif=exif)
    (tmp_path / "exif").mkdir()
    (tmp_path / "exif" / "dated.jpg").write_bytes(buf.getvalue())
    (dated,) = to_dicom(str(tmp_path / "exif" / "dated.jpg"), "--out", str(tmp_path / "dcm_exif"))
    assert (dated.StudyDate, dated.StudyTime, dated.ContentDate, dated.ContentTime) == (
        "20241231", "235958", "20241231", "235958")
    # a study of several photos starts with its earliest; each photo keeps its own time
    later = photos[1].parent / "later.jpg"
    shutil.copy(photos[0], later)
    os.utime(later, (WHEN.timestamp() + 90, WHEN.timestamp() + 90))
    first, second = (pydicom.dcmread(c.path) for c in convert_files([photos[1], later], tmp_path / "pair",
                                                                    images_per_study=2))
    assert first.StudyInstanceUID == second.StudyInstanceUID and first.StudyTime == second.StudyTime == "050607"
    assert (first.ContentTime, second.ContentTime) == ("050607", "050737")


def test_dciodvfy_shows_no_date_warning_on_the_image_nor_its_sr(photos, tmp_path):
    (ds,) = to_dicom(str(photos[0]), "--out", str(tmp_path / "dcm"))
    (image,) = (tmp_path / "dcm").rglob("*.dcm")
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "score", str(image), "--out",
                           str(tmp_path / "scored"), "--in-process"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (sr,) = (tmp_path / "scored" / "sr").glob("*.dcm")
    image_warnings = dciodvfy_warnings(image)
    assert not [w for w in image_warnings if "Date" in w or "Time" in w], image_warnings
    assert not [w for w in image_warnings if w.startswith("Error")], image_warnings
    # before: StudyDate/StudyTime "Missing attribute or value that would be needed to build DICOMDIR"
    assert dciodvfy_warnings(sr) == []
    assert pydicom.dcmread(sr).StudyDate == ds.StudyDate
