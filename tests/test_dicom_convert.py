"""JPEG -> Dermoscopic Photography DICOM: bytes unchanged, deterministic UIDs, CSV identities."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import typer
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import JPEGBaseline8Bit
from typer.testing import CliRunner

from skin_plugin.decode import decode_image
from skin_plugin.dicom.convert import (
    JpegConversionError,
    PatientStudy,
    convert_files,
    jpeg_to_dicom,
    read_jpeg_header,
    to_dicom_command,
    validate_with_dciodvfy,
)
from skin_plugin.dicom.reader import read_input
from skin_plugin.dicom.records import validated_uid
from skin_plugin.dicom.sop_classes import DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"
HAM_METADATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000" / "metadata.csv"


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[Path]:
    """Three 600x450 originals, copied so a folder holds exactly them."""
    folder = tmp_path_factory.mktemp("jpegs")
    sources = sorted(FULLRES.glob("*.jpg"))[:3]
    assert len(sources) == 3, f"no full-resolution images in {FULLRES}"
    for src in sources:
        (folder / src.name).write_bytes(src.read_bytes())
    return sorted(folder.glob("*.jpg"))


def test_jpeg_bytes_are_wrapped_unchanged_as_dermoscopic_photography(jpegs, tmp_path):
    converted = convert_files([jpegs[0].parent], tmp_path / "out")
    assert [c.source for c in converted] == jpegs
    for c in converted:
        assert c.path == tmp_path / "out" / c.study_instance_uid / f"{c.sop_instance_uid}.dcm"
        ds = pydicom.dcmread(c.path)
        (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
        jpeg = c.source.read_bytes()  # byte-identical stream; DICOM pads odd-length items with one 0x00
        assert frame[:len(jpeg)] == jpeg and frame[len(jpeg):] == b"\x00" * (len(jpeg) % 2)
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
        assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsStored) == (450, 600, 3, 8)
        assert ds.Modality == "DMS" and list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]
        assert ds.AnatomicRegionSequence[0].CodeValue == "39937001"  # Skin, location unknown
        assert "AcquisitionContextSequence" in ds and ds.RecognizableVisualFeatures == "NO"
        assert str(ds.PatientName).startswith("TEST^PATIENT") and ds.PatientIdentityRemoved == "YES"
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            validated_uid(str(uid))
        assert np.array_equal(pydicom.dcmread(c.path).pixel_array.shape, (450, 600, 3))
        (item,) = read_input(c.path)
        assert np.array_equal(item.array, decode_image(c.source))  # same stream, same decode
        errors = validate_with_dciodvfy(c.path)
        assert errors in (None, ""), errors  # None: dciodvfy not installed, re-reading above is the check


def test_uids_are_deterministic(jpegs, tmp_path):
    first = convert_files(jpegs, tmp_path / "a")
    second = convert_files(jpegs, tmp_path / "b")
    other = convert_files(jpegs, tmp_path / "c", uid_namespace="another-site")
    assert [c.sop_instance_uid for c in first] == [c.sop_instance_uid for c in second]
    assert [c.path.read_bytes() for c in first] == [c.path.read_bytes() for c in second]
    assert not {c.sop_instance_uid for c in first} & {c.sop_instance_uid for c in other}
    assert len({c.study_instance_uid for c in first}) == 3  # one generated study per image by default
    jpeg_to_dicom(jpegs[0], tmp_path / "one.dcm")
    jpeg_to_dicom(jpegs[0], tmp_path / "two.dcm")
    assert (tmp_path / "one.dcm").read_bytes() == (tmp_path / "two.dcm").read_bytes()


def test_images_per_study_groups_generated_studies(jpegs, tmp_path):
    converted = convert_files(jpegs, tmp_path, images_per_study=2)
    studies = [c.study_instance_uid for c in converted]
    assert studies[0] == studies[1] != studies[2]
    datasets = [pydicom.dcmread(c.path) for c in converted]
    assert [int(d.InstanceNumber) for d in datasets] == [1, 2, 1]
    assert datasets[0].SeriesInstanceUID == datasets[1].SeriesInstanceUID
    ids = [str(d.PatientID) for d in datasets]
    assert ids[0] == ids[1] != ids[2] and all(re.fullmatch(r"TEST-[0-9A-F]{12}", i) for i in ids)


def test_identities_csv_maps_patients_and_groups_studies(jpegs, tmp_path):
    rows = [
        {"file": jpegs[0].name, "patient_name": "DOE^JANE", "patient_id": "MRN1", "birth_date": "1970-01-31",
         "sex": "female", "age": "54", "accession_number": "A100", "study_date": "20240102",
         "localization": "back"},
        {"file": jpegs[1].stem, "patient_name": "DOE^JANE", "patient_id": "MRN1", "birth_date": "19700131",
         "sex": "F", "age": "54", "accession_number": "A100", "study_date": "20240102",
         "localization": "face"},
        {"file": jpegs[2].name, "patient_name": "ROE^RICHARD", "patient_id": "MRN2", "sex": "M",
         "study_uid": "1.2.3.4.5", "localization": "lower extremity"},
    ]
    csv_path = tmp_path / "ids.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    converted = convert_files(jpegs, tmp_path / "out", csv_path)
    a, b, c = (pydicom.dcmread(x.path) for x in converted)
    assert (str(a.PatientName), a.PatientID, a.PatientBirthDate, a.PatientSex, a.PatientAge) == (
        "DOE^JANE", "MRN1", "19700131", "F", "054Y")
    assert (a.AccessionNumber, a.StudyDate, a.ContentDate) == ("A100", "20240102", "20240102")
    assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID == "1.2.3.4.5"
    assert (int(a.InstanceNumber), int(b.InstanceNumber), int(c.InstanceNumber)) == (1, 2, 1)
    assert "PatientIdentityRemoved" not in a
    regions = [d.AnatomicRegionSequence[0] for d in (a, b, c)]
    assert [(r.CodeValue, r.CodeMeaning) for r in regions] == [
        ("66643007", "Skin of back"), ("73897004", "Skin of face"), ("371304004", "Skin of lower extremity")]
    assert all(r.CodingSchemeDesignator == "SCT" for r in regions)
    lines = [",".join(["file", "patient_id", "accession_number"])] + [f"{p.name},MRN{i},SAME" for i, p in
                                                                       enumerate(jpegs)]
    csv_path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="another patient"):
        convert_files(jpegs, tmp_path / "conflict", csv_path)
    csv_path.write_text("file,patient_id\nsomething_else.jpg,X\n")
    with pytest.raises(ValueError, match="no row"):
        convert_files(jpegs, tmp_path / "none", csv_path)


def test_ham10000_metadata_gives_one_test_patient_per_lesion(jpegs, tmp_path):
    ids = {p.stem for p in jpegs}
    with HAM_METADATA.open() as f:
        rows = [r for r in csv.DictReader(f) if r["image_id"] in ids]
    assert len(rows) == 3
    subset = tmp_path / "metadata.csv"
    with subset.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    converted = convert_files(jpegs, tmp_path / "out", subset)
    by_image = {r["image_id"]: r for r in rows}
    lesions = {}
    for c in converted:
        ds, row = pydicom.dcmread(c.path), by_image[c.source.stem]
        assert str(ds.PatientName).startswith("TEST^PATIENT") and ds.PatientIdentityRemoved == "YES"
        assert ds.PatientSex == {"male": "M", "female": "F"}.get(row["sex"], "")
        lesions.setdefault(row["lesion_id"], set()).add(ds.StudyInstanceUID)
    assert all(len(studies) == 1 for studies in lesions.values())
    assert len({s for v in lesions.values() for s in v}) == len(lesions)


def test_non_wrappable_jpegs_are_refused(tmp_path):
    src = sorted(FULLRES.glob("*.jpg"))[0]
    image = Image.open(src)
    image.save(tmp_path / "progressive.jpg", progressive=True)
    image.convert("L").save(tmp_path / "grey.jpg")
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg at all")
    for name, match in [("progressive.jpg", "SOF2"), ("grey.jpg", "1 colour component"), ("fake.jpg", "SOI")]:
        with pytest.raises(JpegConversionError, match=match):
            jpeg_to_dicom(tmp_path / name, tmp_path / "x.dcm")
    header = read_jpeg_header(src.read_bytes())
    assert (header.process, header.precision, header.components) == (0, 8, 3)
    assert (header.rows, header.columns) == (450, 600)


def test_explicit_identity_and_phi_free_record(tmp_path):
    src = sorted(FULLRES.glob("*.jpg"))[1]
    ds = jpeg_to_dicom(src, tmp_path / "x.dcm", PatientStudy("DOE^JOHN", "MRN42", birth_date="19800101"),
                       localization="scalp")
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Skin of scalp"
    (item,) = read_input(tmp_path / "x.dcm")
    assert item.source.patient_name == "DOE^JOHN"
    assert "DOE" not in repr(item.source) and "MRN42" not in str(item.source)


def test_to_dicom_command(jpegs, tmp_path):
    app = typer.Typer()
    app.command("to-dicom")(to_dicom_command)
    app.command("noop")(lambda: None)  # keep to-dicom a sub-command, as in the real CLI
    runner = CliRunner()
    result = runner.invoke(app, ["to-dicom", str(jpegs[0].parent), "--out", str(tmp_path / "out"),
                                 "--images-per-study", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 DICOM file(s) in 1 study" in result.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(io.BytesIO(b"nope").getvalue())
    result = runner.invoke(app, ["to-dicom", str(bad), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 1 and "not a JPEG" in result.output
