"""Wrap JPEG photos, bytes unchanged, as Dermoscopic Photography Image Storage DICOM files.

The JPEG stream is encapsulated as is (JPEG Baseline transfer syntax, ``YBR_FULL_422``; an SOF1
stream gets JPEG Extended, an Adobe-marked RGB stream ``RGB``), so the conversion is lossless with
respect to the photo; DICOM only pads an odd-length stream with one 0x00 after its EOI. Patient
and study come from an identities CSV or are generated test identities (``TEST^PATIENT-<12 hex>``,
``TEST-<12 hex>``, accession ``ACC<12 hex>``) derived, like every UID (``pydicom.uid.generate_uid`` from a
fixed entropy source), from a hash of the input bytes (or of the CSV's ``lesion_id``): a rerun writes the
same identities and UIDs, and distinct inputs never share a patient or a study, in any run. StudyDate/Time
(and SeriesDate/Time) come from the CSV, else from the study's earliest photo; ContentDate/Time from each
photo's EXIF DateTimeOriginal, else (no date in the CSV) the file's modification time (local time), else
the study's.

Identities CSV (UTF-8, header row; only ``file`` is required):

- ``file`` (or ``image_id``): the JPEG's file name, with or without suffix;
- ``patient_name`` (DICOM PN, e.g. ``DOE^JANE``), ``patient_id``, ``birth_date`` (YYYYMMDD or
  YYYY-MM-DD), ``sex`` (M/F/O or male/female), ``age`` (years, e.g. ``45`` or ``45.0``);
- ``study_uid``, ``accession_number``, ``study_id``, ``study_date``, ``study_time``,
  ``study_description``;
- ``localization`` (a HAM10000 site such as ``back`` or ``lower extremity``), ``lesion_id``.

Files are grouped into studies by ``study_uid``, else ``accession_number``, else patient and
``study_date``; the patient is ``patient_id``, else ``lesion_id``, else the file's bytes. Rows without
``patient_name``/``patient_id`` get generated test identities, so a HAM10000 ``metadata.csv``
(``lesion_id,image_id,dx,dx_type,age,sex,localization``) works as is: one test patient and one study
per lesion (the same ``lesion_id`` is the same test patient in every run). Each study holds one series of
dermoscopic photographs.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, JPEGBaseline8Bit, JPEGExtended12Bit, generate_uid

from skin_plugin.constants import MODEL_NAME, MODEL_VERSION
from skin_plugin.dicom.records import validated_uid
from skin_plugin.dicom.sop_classes import DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE

JPEG_SUFFIXES = (".jpg", ".jpeg")
UID_NAMESPACE = "skin-plugin/to-dicom/v1"
"""Fixed entropy prefix of every derived UID; the ``uid_namespace`` arguments add to it."""
MODALITY = "DMS"
"""Dermoscopy (CID 29). The Dermoscopic Photography Image IOD (PS3.3 A.32.11) requires Modality DMS,
not XC (checked against dicom3tools' IOD tables, which dciodvfy enforces)."""

_SKIN = codes.SCT.Skin
LOCALIZATION_CODES = {
    "abdomen": codes.SCT.SkinOfAbdomen,
    "back": codes.SCT.SkinOfBack,
    "chest": codes.SCT.SkinOfChest,
    "ear": codes.SCT.SkinOfEar,
    "face": codes.SCT.SkinOfFace,
    "foot": codes.SCT.SkinOfFoot,
    "genital": codes.SCT.SkinOfExternalGenitalia,
    "hand": codes.SCT.SkinOfHand,
    "lower extremity": codes.SCT.SkinOfLowerExtremity,
    "neck": codes.SCT.SkinOfNeck,
    "scalp": codes.SCT.SkinOfScalp,
    "trunk": codes.SCT.Trunk,
    "upper extremity": codes.SCT.SkinOfUpperExtremity,
}
"""HAM10000 ``localization`` -> SNOMED CT code, taken from pydicom's copy of the DICOM code tables
(PS3.16) rather than typed in. ``acral``, ``unknown`` and anything else map to Skin (39937001)."""


class JpegConversionError(ValueError):
    """The JPEG cannot be wrapped unchanged (not baseline/extended sequential, not colour, corrupt)."""


@dataclass(frozen=True)
class PatientStudy:
    """The patient and study a converted photo belongs to (one CSV row, or a generated test identity)."""

    patient_name: str
    patient_id: str
    birth_date: str = ""
    sex: str = ""
    age: str = ""
    """DICOM Age String, e.g. ``045Y``."""
    study_uid: str = ""
    """Empty: derived deterministically from the patient and accession number."""
    accession_number: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = "Dermoscopy"
    synthetic: bool = False
    """A generated test identity (sets Patient Identity Removed = YES)."""

    @classmethod
    def test_identity(cls, patient_token: str, study_token: str | None = None, **kwargs: str) -> PatientStudy:
        """A fake identity named by tokens (:func:`identity_token`): ``TEST^PATIENT-3F2A...``, ID
        ``TEST-3F2A...``, study ID ``S9C01...`` and accession ``ACC9C01...`` (16 characters at most)."""
        study = study_token or patient_token
        return cls(patient_name=f"TEST^PATIENT-{patient_token}", patient_id=f"TEST-{patient_token}",
                   study_id=f"S{study}", accession_number=f"ACC{study}", synthetic=True, **kwargs)


@dataclass(frozen=True)
class ConvertedFile:
    source: Path
    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class JpegHeader:
    """What the frame header (SOFn) of a JPEG stream says."""

    process: int
    """SOF marker minus 0xC0: 0 baseline, 1 extended sequential, 2 progressive, 3 lossless, ..."""
    precision: int
    rows: int
    columns: int
    components: int
    adobe_transform: int | None
    """Adobe APP14 colour transform flag (0: RGB, 1: YCbCr), None without an APP14 segment."""


def read_jpeg_header(data: bytes) -> JpegHeader:
    """Parse the markers of a JPEG stream up to its frame header (no decoding)."""
    if data[:2] != b"\xff\xd8":
        raise JpegConversionError("not a JPEG stream (no SOI marker)")
    pos, adobe = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise JpegConversionError(f"corrupt JPEG marker structure at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe = segment[11]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if len(segment) < 6:
                break
            return JpegHeader(process=marker - 0xC0, precision=segment[0],
                              rows=int.from_bytes(segment[1:3], "big"),
                              columns=int.from_bytes(segment[3:5], "big"), components=segment[5],
                              adobe_transform=adobe)
        if marker == 0xDA:
            break
        pos += 2 + length
    raise JpegConversionError("JPEG stream has no frame header (truncated or corrupt)")


def _uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=[UID_NAMESPACE, *(str(p) for p in parts)]))


def identity_token(*parts: object) -> str:
    """12 upper-case hex digits (48 bits) of a SHA-256 of ``parts``: names a generated patient or study."""
    text = "\x1f".join([UID_NAMESPACE, *(str(p) for p in parts)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12].upper()


def exif_datetime(jpeg: bytes) -> datetime | None:
    """The EXIF DateTimeOriginal (else DateTime) of a JPEG stream, None if it has none."""
    try:
        exif = Image.open(BytesIO(jpeg)).getexif()
        value = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
        return datetime.strptime(str(value).strip("\x00 "), "%Y:%m:%d %H:%M:%S") if value else None
    except (OSError, ValueError, SyntaxError):
        return None


def photo_datetime(path: Path, jpeg: bytes) -> datetime:
    """When a photo was taken: its EXIF date, else the file's modification time (local time)."""
    return exif_datetime(jpeg) or datetime.fromtimestamp(Path(path).stat().st_mtime)


def _da_tm(when: datetime) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def dicom_age(years: str | float | None) -> str:
    """``45``/``45.0`` -> ``045Y``; empty or unparseable -> ``''``."""
    try:
        value = int(float(years))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{value:03d}Y" if 0 <= value <= 999 else ""


def dicom_sex(value: str) -> str:
    v = value.strip().upper()
    return {"MALE": "M", "FEMALE": "F", "OTHER": "O"}.get(v, v if v in ("M", "F", "O") else "")


def dicom_date(value: str) -> str:
    v = value.strip().replace("-", "")
    if v and not re.fullmatch(r"\d{8}", v):
        raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {value!r}")
    return v


def anatomic_region(localization: str | None) -> Dataset:
    code = LOCALIZATION_CODES.get((localization or "").strip().lower(), _SKIN)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def build_dataset(jpeg: bytes, identity: PatientStudy, *, series_uid: str | None = None,
                  instance_number: int = 1, localization: str | None = None,
                  uid_namespace: str = "", acquired: datetime | None = None) -> Dataset:
    """The Dermoscopic Photography Image dataset (with file meta) encapsulating ``jpeg`` unchanged.

    ``acquired``: when the photo was taken (ContentDate/Time; without it, the study's date and time)."""
    header = read_jpeg_header(jpeg)
    if header.process not in (0, 1) or header.precision != 8:
        raise JpegConversionError(f"only 8-bit sequential (baseline/extended) JPEG can be wrapped unchanged, "
                                  f"this is SOF{header.process} with {header.precision}-bit samples")
    if header.components != 3:
        raise JpegConversionError(f"not a colour photograph: {header.components} colour component(s)")
    if header.rows == 0 or header.columns == 0:
        raise JpegConversionError("JPEG with a zero or deferred (DNL) image height is not supported")
    digest = hashlib.sha256(jpeg).hexdigest()
    study_uid = identity.study_uid or _uid(uid_namespace, "study", identity.patient_id,
                                           identity.accession_number, identity.study_id)
    series_uid = series_uid or _uid(uid_namespace, "series", study_uid)
    transfer_syntax = JPEGBaseline8Bit if header.process == 0 else JPEGExtended12Bit

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(uid_namespace, "instance", study_uid, series_uid, digest)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"SKINPLUGIN_{MODEL_VERSION}"[:16]
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    # Patient, Patient Study
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = dicom_date(identity.birth_date)
    ds.PatientSex = dicom_sex(identity.sex)
    if identity.age:
        ds.PatientAge = identity.age
    if identity.synthetic:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "Synthetic test identity (skin-plugin to-dicom)"
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = dicom_date(identity.study_date)
    ds.StudyTime = identity.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    ds.StudyDescription = identity.study_description
    # General Series, Dermoscopic Photography Series
    ds.Modality = MODALITY
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    if identity.study_date:  # one series per study, started with it
        ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
    ds.SeriesDescription = "Dermoscopic photographs"
    ds.Laterality = ""  # Type 2C in General Series: unknown for a converted photo
    # Frame of Reference module (required by the Dermoscopic Photography IOD): a frame per series.
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "frame-of-reference"])
    ds.PositionReferenceIndicator = ""
    # General Equipment, Enhanced General Equipment (type 1: identifies the converting software)
    ds.Manufacturer = "skin-lesion-plugin"
    ds.ManufacturerModelName = f"{MODEL_NAME} plugin JPEG to DICOM converter"
    ds.DeviceSerialNumber = "NONE"
    ds.SoftwareVersions = MODEL_VERSION
    # General Image, VL Image, Acquisition Context
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    if acquired is not None:
        ds.ContentDate, ds.ContentTime = _da_tm(acquired)
    elif identity.study_date:
        ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionContextSequence = DicomSequence()
    ds.AnatomicRegionSequence = DicomSequence([anatomic_region(localization)])
    ds.BurnedInAnnotation = "NO"
    # Dermoscopic Image (type 2 attributes: unknown for converted photos)
    ds.RecognizableVisualFeatures = "NO"
    ds.LightSourcePolarization = ""
    ds.EmitterColorTemperature = None
    ds.ContactMethod = ""
    ds.OpticalMagnificationFactor = None
    # Image Pixel
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB" if header.adobe_transform == 0 else "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = header.rows, header.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{header.rows * header.columns * 3 / len(jpeg):.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    return ds


def jpeg_to_dicom(jpeg_path: str | Path, out_path: str | Path, identity: PatientStudy | None = None, *,
                  series_uid: str | None = None, instance_number: int = 1, localization: str | None = None,
                  uid_namespace: str = "") -> Dataset:
    """Write ``jpeg_path`` as a Dermoscopic Photography DICOM file at ``out_path``; return the dataset.

    Without ``identity`` a test identity named from the JPEG's SHA-256 is used, so the same photo
    always gets the same identity and UIDs, and another photo another one. Without a study date, the
    photo's own date and time (:func:`photo_datetime`) are the study's.
    """
    jpeg = Path(jpeg_path).read_bytes()
    if identity is None:
        identity = PatientStudy.test_identity(identity_token(uid_namespace, "photo", hashlib.sha256(jpeg).hexdigest()))
    acquired = exif_datetime(jpeg)
    if not identity.study_date:
        acquired = acquired or photo_datetime(Path(jpeg_path), jpeg)
        identity = replace(identity, study_date=acquired.strftime("%Y%m%d"), study_time=acquired.strftime("%H%M%S"))
    ds = build_dataset(jpeg, identity, series_uid=series_uid, instance_number=instance_number,
                       localization=localization, uid_namespace=uid_namespace, acquired=acquired)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out_path, enforce_file_format=True)
    return ds


@dataclass(frozen=True)
class _Row:
    identity: PatientStudy
    patient_key: str
    study_key: str
    localization: str


def read_identities(csv_path: Path) -> dict[str, dict[str, str]]:
    """Identities CSV -> {file name or stem: row}; see the module docstring for the columns."""
    with Path(csv_path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        key = next((k for k in ("file", "image_id") if k in (reader.fieldnames or [])), None)
        if key is None:
            raise ValueError(f"{csv_path}: needs a 'file' (or 'image_id') column")
        rows = {}
        for row in reader:
            clean = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            name = clean[key]
            rows[name] = clean
            rows.setdefault(Path(name).stem, clean)
    return rows


_STUDY_COLUMNS = ("study_uid", "accession_number", "study_id", "study_description")


def _plan(files: Sequence[Path], digests: Sequence[str], rows: dict[str, dict[str, str]] | None,
          images_per_study: int, uid_namespace: str) -> list[_Row]:
    """Identity, patient key and study key for every file, in order.

    A patient is keyed by ``patient_id``, else ``lesion_id``, else the bytes of its files (without a CSV:
    each run of ``images_per_study`` files); generated identities are named from those keys, so they
    depend on the inputs, not on their position in the run."""
    raw = []
    for i, (f, digest) in enumerate(zip(files, digests)):
        row = {} if rows is None else rows.get(f.name) or rows.get(f.stem)
        if row is None:
            raise ValueError(f"{f.name}: no row in the identities CSV")
        if rows is None:
            group = digests[i - i % images_per_study:i - i % images_per_study + images_per_study]
            patient = "files:" + hashlib.sha256("".join(group).encode()).hexdigest()
        else:  # a given patient or lesion keeps the study UIDs of earlier versions
            patient = row.get("patient_id") or row.get("lesion_id") or "file:" + digest
        study = (row.get("study_uid") or row.get("accession_number")
                 or f"{patient}|{row.get('study_date', '')}")
        raw.append((row, patient, study))
    plan = []
    for row, patient, study in raw:
        common = {"age": dicom_age(row.get("age")), "sex": dicom_sex(row.get("sex", ""))}
        if row.get("patient_name") or row.get("patient_id"):
            identity = PatientStudy(patient_name=row.get("patient_name", ""),
                                    patient_id=row.get("patient_id", ""),
                                    birth_date=dicom_date(row.get("birth_date", "")), **common)
        else:
            identity = PatientStudy.test_identity(identity_token(uid_namespace, "patient", patient),
                                                  identity_token(uid_namespace, "study", study), **common)
        given = {k: row[k] for k in _STUDY_COLUMNS if row.get(k)}
        identity = replace(identity, **given, study_date=dicom_date(row.get("study_date", "")),
                           study_time=row.get("study_time", ""))
        if identity.study_uid:
            validated_uid(identity.study_uid)
        plan.append(_Row(identity, patient, study, row.get("localization", "")))
    return plan


def collect_jpegs(inputs: Iterable[Path]) -> list[Path]:
    """Files as given, folders expanded to their JPEGs (sorted, not recursive)."""
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in JPEG_SUFFIXES and f.is_file()))
        else:
            files.append(p)
    return files


def convert_files(inputs: Iterable[Path], out_dir: Path, identities_csv: Path | None = None, *,
                  images_per_study: int = 1, uid_namespace: str = "") -> list[ConvertedFile]:
    """Convert JPEGs (files or folders) to ``out_dir/<StudyInstanceUID>/<SOPInstanceUID>.dcm``.

    Files are grouped into studies as described in the module docstring; without a CSV, each run of
    ``images_per_study`` consecutive files (sorted per folder) is one generated test patient and study.
    """
    files = collect_jpegs(inputs)
    jpegs = [f.read_bytes() for f in files]
    digests = [hashlib.sha256(j).hexdigest() for j in jpegs]
    plan = _plan(files, digests, read_identities(identities_csv) if identities_csv else None,
                 max(1, images_per_study), uid_namespace)
    # when each photo was taken: EXIF, else (only for a study without a given date) the file's time
    taken = [exif_datetime(j) or (None if item.identity.study_date else photo_datetime(f, j))
             for f, j, item in zip(files, jpegs, plan)]
    first_photo: dict[str, datetime] = {}
    for item, when in zip(plan, taken):
        if when is not None:
            first_photo[item.study_key] = min(when, first_photo.get(item.study_key, when))
    study_of: dict[str, PatientStudy] = {}
    patient_of: dict[str, str] = {}
    counters: dict[str, int] = {}
    results = []
    for f, jpeg, item, when in zip(files, jpegs, plan, taken):
        if item.study_key not in study_of:  # the first row of a study defines it
            identity = replace(item.identity, study_uid=item.identity.study_uid or _uid(
                uid_namespace, "study", item.study_key))
            if not identity.study_date and item.study_key in first_photo:  # it began with its first photo
                date, time = _da_tm(first_photo[item.study_key])
                identity = replace(identity, study_date=date, study_time=identity.study_time or time)
            study_of[item.study_key] = identity
            patient_of[item.study_key] = item.patient_key
        elif patient_of[item.study_key] != item.patient_key:
            raise ValueError(f"{f.name}: its study already holds another patient's images")
        identity = study_of[item.study_key]
        counters[item.study_key] = counters.get(item.study_key, 0) + 1
        ds = build_dataset(jpeg, identity, instance_number=counters[item.study_key],
                           localization=item.localization, uid_namespace=uid_namespace, acquired=when)
        study_uid = validated_uid(str(ds.StudyInstanceUID))
        path = Path(out_dir) / study_uid / f"{validated_uid(str(ds.SOPInstanceUID))}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        results.append(ConvertedFile(f, path, study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)))
    return results


def validate_with_dciodvfy(path: Path) -> str | None:
    """dciodvfy's error lines for ``path`` ('' if none), or None when dciodvfy is not installed."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error"))


def to_dicom_command(
    inputs: Annotated[list[Path], typer.Argument(help="JPEG files or folders of JPEGs.", exists=True)],
    out: Annotated[Path, typer.Option("--out", help="Output folder: OUT/<StudyUID>/<SOPInstanceUID>.dcm.")],
    identities_csv: Annotated[Path | None, typer.Option(
        "--identities", help="CSV: file,patient_name,patient_id,birth_date,sex,age,study_uid,"
                             "accession_number,study_date,localization,lesion_id "
                             "(or a HAM10000 metadata.csv).",
        exists=True, dir_okay=False)] = None,
    images_per_study: Annotated[int, typer.Option(
        help="Without --identities: consecutive images per generated test study.", min=1)] = 1,
    uid_namespace: Annotated[str, typer.Option(
        help="Extra entropy for the derived UIDs (same inputs + namespace = same UIDs).")] = "",
) -> None:
    """Wrap JPEG photos unchanged as Dermoscopic Photography DICOM (test identities unless --identities)."""
    try:
        converted = convert_files(inputs, out, identities_csv, images_per_study=images_per_study,
                                  uid_namespace=uid_namespace)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    studies = {c.study_instance_uid for c in converted}
    noun = "study" if len(studies) == 1 else "studies"
    typer.echo(f"wrote {len(converted)} DICOM file(s) in {len(studies)} {noun} to {out}")
