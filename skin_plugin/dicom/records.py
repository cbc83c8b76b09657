"""What a report needs to know about a DICOM source image, as one typed, PHI-safe record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

_UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID_LENGTH = 64


def validated_uid(uid: object) -> str:
    """``uid`` if it is a DICOM UID (PS3.5 9.1: digits and dots, no leading zeros, <= 64 chars).

    Safe to use as a file name: anything else (empty, ``../x``, ``1.2/3``, ``1.02``) raises ValueError.
    """
    if not isinstance(uid, str) or len(uid) > MAX_UID_LENGTH or not _UID_RE.fullmatch(uid):
        shown = uid[:80] if isinstance(uid, str) else type(uid).__name__
        raise ValueError(f"not a valid DICOM UID: {shown!r}")
    return uid


@dataclass(frozen=True)
class AnatomicRegion:
    """Anatomic Region Sequence item (code) or, failing that, Body Part Examined (meaning only)."""

    code_meaning: str
    code_value: str | None = None
    coding_scheme_designator: str | None = None

    def __str__(self) -> str:
        if self.code_value:
            return f"({self.code_value}, {self.coding_scheme_designator}, {self.code_meaning!r})"
        return self.code_meaning


def _phi() -> Any:
    """A text field holding protected health information: never shown by repr() or str()."""
    return field(default="", repr=False, metadata={"phi": True})


@dataclass(frozen=True)
class DicomSourceInfo:
    """Identity and geometry of one DICOM source image, for reports and result objects.

    ``repr()``/``str()`` list only non-identifying attributes (UIDs, classes, geometry), so a record
    can be logged; names, IDs, dates, age and sex stay in the attributes for the report writer.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str = ""
    manufacturer: str = ""
    photometric_interpretation: str = ""
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    series_number: int | None = None
    instance_number: int | None = None
    anatomic_region: AnatomicRegion | None = None
    patient_name: str = _phi()
    patient_id: str = _phi()
    patient_birth_date: str = _phi()
    patient_sex: str = _phi()
    patient_age: str = _phi()
    study_id: str = _phi()
    accession_number: str = _phi()
    study_date: str = _phi()
    study_time: str = _phi()

    def __str__(self) -> str:
        return repr(self)

    @classmethod
    def phi_fields(cls) -> tuple[str, ...]:
        """Names of the attributes that hold protected health information."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("phi"))

    def to_dict(self) -> dict[str, Any]:
        """Every attribute (PHI included) as plain JSON types, for a result store; see :meth:`from_dict`."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        region = self.anatomic_region
        data["anatomic_region"] = None if region is None else {
            "code_meaning": region.code_meaning, "code_value": region.code_value,
            "coding_scheme_designator": region.coding_scheme_designator}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DicomSourceInfo:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("anatomic_region") is not None:
            values["anatomic_region"] = AnatomicRegion(**values["anatomic_region"])
        return cls(**values)

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax_uid: str = "") -> DicomSourceInfo:
        """Build the record from a parsed dataset; missing or malformed values become defaults."""
        sop_class = element_text(ds, "SOPClassUID")
        if not sop_class and "file_meta" in ds.__dict__:
            sop_class = element_text(ds.file_meta, "MediaStorageSOPClassUID")
        return cls(
            sop_class_uid=sop_class,
            sop_instance_uid=element_text(ds, "SOPInstanceUID"),
            study_instance_uid=element_text(ds, "StudyInstanceUID"),
            series_instance_uid=element_text(ds, "SeriesInstanceUID"),
            transfer_syntax_uid=transfer_syntax_uid,
            modality=element_text(ds, "Modality"),
            manufacturer=element_text(ds, "Manufacturer"),
            photometric_interpretation=element_text(ds, "PhotometricInterpretation"),
            rows=element_int(ds, "Rows") or 0,
            columns=element_int(ds, "Columns") or 0,
            number_of_frames=element_int(ds, "NumberOfFrames") or 1,
            series_number=element_int(ds, "SeriesNumber"),
            instance_number=element_int(ds, "InstanceNumber"),
            anatomic_region=_anatomic_region(ds),
            patient_name=element_text(ds, "PatientName"),
            patient_id=element_text(ds, "PatientID"),
            patient_birth_date=element_text(ds, "PatientBirthDate"),
            patient_sex=element_text(ds, "PatientSex"),
            patient_age=element_text(ds, "PatientAge"),
            study_id=element_text(ds, "StudyID"),
            accession_number=element_text(ds, "AccessionNumber"),
            study_date=element_text(ds, "StudyDate"),
            study_time=element_text(ds, "StudyTime"),
        )


_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
"""VRs restricted to the default repertoire: decoded from the raw bytes, skipping pydicom's conversion."""


def element_text(ds: Dataset, keyword: str) -> str:
    """An attribute's value as str ('' if absent, empty or unreadable); values of a multi-valued one
    joined by a backslash."""
    try:
        raw = ds.get_item(keyword)
        if isinstance(raw, RawDataElement) and raw.VR in _ASCII_VRS and isinstance(raw.value, bytes):
            return raw.value.decode("ascii", "replace").strip(" \x00")
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element must not stop the record
        return ""
    if value is None:
        return ""
    if isinstance(value, bytes):  # undecodable or unknown-VR element
        return value.decode("ascii", "replace").strip(" \x00")
    if not isinstance(value, str) and hasattr(value, "__len__") and not hasattr(value, "original_string"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def element_int(ds: Dataset, keyword: str) -> int | None:
    """An IS/US attribute's value as int (None if absent, empty or malformed)."""
    try:
        raw = ds.get_item(keyword)
        if isinstance(raw, RawDataElement) and raw.VR == "US" and isinstance(raw.value, bytes):
            order = "little" if raw.is_little_endian else "big"
            return int.from_bytes(raw.value[:2], order) if raw.value else None
        text = element_text(ds, keyword)
        return int(text) if text else None
    except (TypeError, ValueError, KeyError):
        return None


def _anatomic_region(ds: Dataset) -> AnatomicRegion | None:
    try:
        seq = ds.get("AnatomicRegionSequence")
        if seq:
            item = seq[0]
            return AnatomicRegion(code_meaning=element_text(item, "CodeMeaning"),
                                  code_value=element_text(item, "CodeValue"),
                                  coding_scheme_designator=element_text(item, "CodingSchemeDesignator"))
    except Exception:  # noqa: BLE001 - a malformed sequence falls back to Body Part Examined
        pass
    body_part = element_text(ds, "BodyPartExamined")
    return AnatomicRegion(code_meaning=body_part) if body_part else None
