"""Fast path: the reference SR encoded once per model, then patched per image (~0.15 ms instead of ~60 ms).

:class:`SRTemplate` builds :func:`~skin_plugin.sr.reference.build_reference_sr` once on a placeholder
result whose varying values (UIDs, patient, study, dates, diagnosis, probabilities, ...) are unique
sentinels, encodes it with pydicom, and records where each sentinel element and each enclosing length
(sequence, item, file meta group) sits in the bytes. :meth:`SRTemplate.render` then writes the new
values into a copy of those bytes and fixes the lengths: the result is byte for byte the file pydicom
writes for the reference SR built from the same inputs (``tests/test_sr.py`` checks this).

The content tree differs with the source in two ways (a coded finding site or not; a frame number for a
multi-frame source or not): one template per variant is built on first use. A finding site whose code
does not fit a plain Code Value (long or URN codes) is built with the reference implementation instead.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.valuerep import DA, DS, DT, TM

from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.records import AnatomicRegion, DicomSourceInfo, validated_uid
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import malignancy_score
from skin_plugin.sr import codes, numbering
from skin_plugin.sr.reference import (
    build_reference_sr,
    checked_source,
    finding_site_code,
    patient_study_values,
    referenced_frame_numbers,
    review_flag_code,
    tracking_uid,
)

_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                              b"UT", b"UV"})
_ITEM = b"\xfe\xff\x00\xe0"
_PREAMBLE_AND_PREFIX = 132
_MAX_SHORT_LENGTH = 0xFFFF
_ROOT = "1.2.826.0.1.3680043.8.498.999"

_SENTINELS: dict[str, str | float] = {
    "sop_instance_uid": f"{_ROOT}.1.1", "series_instance_uid": f"{_ROOT}.1.2",
    "study_instance_uid": f"{_ROOT}.1.3", "source_series_uid": f"{_ROOT}.1.4",
    "source_sop_instance_uid": f"{_ROOT}.1.5",
    "content_date": "19010102", "content_time": "010203.040506", "content_datetime": "19010102010203.040506",
    "patient_name": "SENTINEL^PATIENTNAME", "patient_id": "SENTINEL-PATIENT-ID",
    "patient_birth_date": "19030405", "patient_sex": "O", "patient_age": "987Y",
    "study_id": "SENTINEL-STUDYID", "accession_number": "SENTINEL-ACCNO",
    "study_date": "19060708", "study_time": "060708.091011",
    "series_number": "987601", "instance_number": "987602", "frame_number": "987603",
    "finding_value": "SENTINEL-FINDING", "finding_meaning": "SENTINEL FINDING MEANING",
    "review_value": "SENTINEL-REVIEW", "review_meaning": "SENTINEL REVIEW MEANING",
    "site_value": "SENTINEL-SITE", "site_scheme": "SENTINEL-SCHEME", "site_meaning": "SENTINEL SITE MEANING",
}
"""Field -> placeholder value: unique strings, each valid for the VR of the elements it stands in."""
for _i, _code in enumerate(CLASS_CODES):
    _SENTINELS[f"probability_{_code}"] = 0.98760001 + _i * 1e-8
_SENTINELS["malignancy_score"] = 0.98770001
_SENTINEL_FRAMES = 999_999
_FIELD_COUNTS = {"sop_instance_uid": 2, "study_instance_uid": 2, "source_sop_instance_uid": 2,
                 "content_date": 2, "content_time": 2}
"""Fields written in more than one element (file meta and SOP Common, study and evidence, ...)."""
_SITE_VALUE_MAX = 16
"""Longer code values are encoded as Long Code Value by highdicom: not covered by the template."""


@dataclass(frozen=True)
class _Slot:
    """An element of the template whose value is a field (replaced, header included, on render)."""

    start: int
    end: int
    tag_vr: bytes
    field: str
    containers: tuple[int, ...]


@dataclass(frozen=True)
class _Container:
    """A 4-byte length (sequence, item or file meta group) enclosing one or more slots."""

    offset: int
    length: int


@dataclass(frozen=True)
class _Encoded:
    """One template variant: its bytes and the patch points, in file order."""

    data: bytes
    slots: tuple[_Slot, ...]
    containers: tuple[_Container, ...]
    patches: tuple[tuple[int, int, bool], ...]
    """(offset, index, is_slot) sorted by offset."""


_Element = tuple[int, int, int, bytes, tuple[int, ...]]
"""(header start, value start, value end, VR, enclosing containers) of one encoded element."""


def _parse(data: bytes, start: int, end: int, parents: tuple[int, ...],
           containers: list[tuple[int, int]], elements: list[_Element]) -> None:
    """Walk explicit VR little endian elements in data[start:end]; collect elements and defined lengths."""
    pos = start
    while pos < end:
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_LENGTH_VRS:
            (length,), header = struct.unpack_from("<I", data, pos + 8), 12
            length_offset = pos + 8
        else:
            (length,), header = struct.unpack_from("<H", data, pos + 6), 8
            length_offset = pos + 6
        if length == 0xFFFFFFFF:
            raise ValueError("undefined length in the template encoding")
        value_start, value_end = pos + header, pos + header + length
        elements.append((pos, value_start, value_end, vr, parents))
        if vr == b"SQ":
            containers.append((length_offset, length))
            seq_parents = (*parents, len(containers) - 1)
            item = value_start
            while item < value_end:
                if data[item:item + 4] != _ITEM:
                    raise ValueError(f"unexpected item tag at byte {item}")
                (item_length,) = struct.unpack_from("<I", data, item + 4)
                containers.append((item + 4, item_length))
                _parse(data, item + 8, item + 8 + item_length, (*seq_parents, len(containers) - 1),
                       containers, elements)
                item += 8 + item_length
        pos = value_end


def _encode_template(data: bytes, fields: dict[bytes, str], expected: dict[str, int]) -> _Encoded:
    """Locate in ``data`` (a Part 10 file) the elements whose value is an encoded sentinel.

    ``expected``: how many elements each field must fill (a safeguard against a sentinel also matching
    an unrelated element, or a change of the reference that the template does not know about).
    """
    if data[128:_PREAMBLE_AND_PREFIX] != b"DICM" or data[132:138] != b"\x02\x00\x00\x00UL":
        raise ValueError("the template is not a Part 10 file starting with its meta group length")
    (group_length,) = struct.unpack_from("<I", data, 140)
    meta_end = 144 + group_length
    containers: list[tuple[int, int]] = [(140, group_length)]
    elements: list[_Element] = []
    _parse(data, 144, meta_end, (0,), containers, elements)
    _parse(data, meta_end, len(data), (), containers, elements)
    slots = []
    for start, value_start, value_end, vr, parents in elements:
        field = fields.get(data[value_start:value_end])
        if field is not None and vr not in (b"SQ", b"UT"):
            slots.append(_Slot(start, value_end, data[start:start + 6], field, parents))
    found: dict[str, int] = {}
    for slot in slots:
        found[slot.field] = found.get(slot.field, 0) + 1
    if found != expected:
        wrong = sorted(f for f in found.keys() | expected.keys() if found.get(f) != expected.get(f))
        raise ValueError(f"template fields found a wrong number of times: {wrong}")
    used = sorted({c for s in slots for c in s.containers})
    renumber = {c: i for i, c in enumerate(used)}
    slots = [replace(s, containers=tuple(renumber[c] for c in s.containers)) for s in slots]
    kept = tuple(_Container(*containers[c]) for c in used)
    patches = sorted([(s.start, i, True) for i, s in enumerate(slots)]
                     + [(c.offset, i, False) for i, c in enumerate(kept)])
    return _Encoded(data, tuple(slots), kept, tuple(patches))


def _sentinel_fields(with_site: bool, multi_frame: bool) -> tuple[dict[bytes, str], dict[str, int]]:
    """Encoded sentinel value -> field, and how many elements each field fills, for one variant.

    A probability fills two elements: Numeric Value (DS, field ``probability_<class>``) and Floating
    Point Value (FD, field ``fp:probability_<class>``).
    """
    fields: dict[bytes, str] = {}
    counts: dict[str, int] = {}
    for field, value in _SENTINELS.items():
        if field == "frame_number" and not multi_frame or field.startswith("site_") and not with_site:
            continue
        counts[field] = _FIELD_COUNTS.get(field, 1)
        if isinstance(value, float):
            fields[struct.pack("<d", value)] = f"fp:{field}"
            counts[f"fp:{field}"] = 1
            value = str(DS(value, auto_format=True))
        fields[_text(value, b"UI" if field.endswith("uid") else b"")] = field
    fields[_text(tracking_uid(str(_SENTINELS["sop_instance_uid"])), b"UI")] = "tracking_uid"
    counts["tracking_uid"] = 1
    return fields, counts


def _text(value: str, vr_bytes: bytes) -> bytes:
    """An element value as pydicom writes it with Specific Character Set ISO_IR 192 (UTF-8)."""
    raw = value.encode("utf-8")
    if len(raw) % 2:
        raw += b"\x00" if vr_bytes == b"UI" else b" "
    return raw


def _field_values(result: ScoreResult, source: DicomSourceInfo, model: ModelIdentity, *, series_instance_uid: str,
                  sop_instance_uid: str, series_number: int, instance_number: int,
                  when: datetime) -> dict[str, str | float | None]:
    values: dict[str, str | float | None] = {
        "sop_instance_uid": validated_uid(sop_instance_uid),
        "series_instance_uid": validated_uid(series_instance_uid),
        "study_instance_uid": validated_uid(source.study_instance_uid),
        "source_series_uid": validated_uid(source.series_instance_uid),
        "source_sop_instance_uid": validated_uid(source.sop_instance_uid),
        "tracking_uid": tracking_uid(sop_instance_uid),
        "content_date": str(DA(when.date())), "content_time": str(TM(when.time())),
        "content_datetime": str(DT(when)),
        "series_number": str(series_number), "instance_number": str(instance_number),
        "patient_age": None,
    }
    for keyword, value in patient_study_values(source).items():
        values[_KEYWORD_FIELDS[keyword]] = value
    finding = codes.diagnosis_code(result.label or "")
    values["finding_value"], values["finding_meaning"] = finding.value, finding.meaning
    review = review_flag_code(result, model)
    values["review_value"], values["review_meaning"] = review.value, review.meaning
    values["malignancy_score"] = malignancy_score(result.probabilities)  # type: ignore[arg-type]
    site = finding_site_code(source)
    if site is not None:
        values["site_value"], values["site_scheme"] = site.value, site.scheme_designator
        values["site_meaning"] = site.meaning
    frames = referenced_frame_numbers(result)
    if frames is not None:
        values["frame_number"] = str(frames[0])
    for c in CLASS_CODES:
        values[f"probability_{c}"] = float(result.probabilities[c])  # type: ignore[index]
    return values


_KEYWORD_FIELDS = {
    "PatientName": "patient_name", "PatientID": "patient_id", "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex", "PatientAge": "patient_age", "StudyID": "study_id",
    "AccessionNumber": "accession_number", "StudyDate": "study_date", "StudyTime": "study_time",
}


class SRTemplate:
    """Per-image classification SRs of one model, rendered from a pre-encoded reference SR.

    Build once per model identity (name, version, backend, precision, weights) and share: rendering
    only reads the encoded templates (a variant is built, ~60-80 ms, on its first use).
    """

    def __init__(self, model: ModelIdentity) -> None:
        self.model = model
        self._variants: dict[tuple[str, bool, bool], _Encoded] = {}
        self._lock = threading.Lock()

    def render(self, result: ScoreResult, *, series_instance_uid: str, sop_instance_uid: str,
               series_number: int | None = None, instance_number: int | None = None,
               content_datetime: datetime | None = None) -> bytes:
        """The SR of ``result`` as a DICOM Part 10 file (bytes), equal to the reference implementation's.

        Same arguments and errors as :func:`~skin_plugin.sr.reference.build_reference_sr`.
        """
        source = checked_source(result)
        series_number, instance_number = numbering.numbers(result, series_number, instance_number)
        when = content_datetime or datetime.now()
        site = finding_site_code(source)
        if site is not None and (len(site.value) > _SITE_VALUE_MAX or ":" in site.value):
            sr = build_reference_sr(result, self.model, series_instance_uid=series_instance_uid,
                                    sop_instance_uid=sop_instance_uid, series_number=series_number,
                                    instance_number=instance_number, content_datetime=when)
            buffer = BytesIO()
            sr.save_as(buffer, enforce_file_format=True)
            return buffer.getvalue()
        values = _field_values(result, source, self.model, series_instance_uid=series_instance_uid,
                               sop_instance_uid=sop_instance_uid, series_number=series_number,
                               instance_number=instance_number, when=when)
        variant = self._variant(validated_uid(source.sop_class_uid), site is not None,
                                source.number_of_frames > 1)
        return self._patch(variant, values)

    def write(self, path: str | Path, result: ScoreResult, **kwargs: object) -> Path:
        """Render (same keyword arguments as :meth:`render`) and write the file at ``path``."""
        path = Path(path)
        path.write_bytes(self.render(result, **kwargs))  # type: ignore[arg-type]
        return path

    def render_dataset(self, result: ScoreResult, **kwargs: object) -> Dataset:
        """:meth:`render`, parsed back into a pydicom dataset (for inspection; slower)."""
        return pydicom.dcmread(BytesIO(self.render(result, **kwargs)))  # type: ignore[arg-type]

    def prebuild(self, sop_class_uid: str, with_site: bool = True, multi_frame: bool = False) -> None:
        """Build a variant ahead of its first use (a long-lived worker does this at start-up)."""
        self._variant(validated_uid(sop_class_uid), with_site, multi_frame)

    def _variant(self, sop_class_uid: str, with_site: bool, multi_frame: bool) -> _Encoded:
        key = (sop_class_uid, with_site, multi_frame)
        if key not in self._variants:
            with self._lock:  # report threads may ask for the same new variant at once
                if key not in self._variants:
                    self._variants[key] = self._build(*key)
        return self._variants[key]

    def _build(self, sop_class_uid: str, with_site: bool, multi_frame: bool) -> _Encoded:
        s = _SENTINELS
        region = AnatomicRegion(str(s["site_meaning"]), str(s["site_value"]), str(s["site_scheme"]))
        source = DicomSourceInfo(
            sop_class_uid=sop_class_uid, sop_instance_uid=str(s["source_sop_instance_uid"]),
            study_instance_uid=str(s["study_instance_uid"]), series_instance_uid=str(s["source_series_uid"]),
            transfer_syntax_uid="", number_of_frames=_SENTINEL_FRAMES if multi_frame else 1,
            anatomic_region=region if with_site else None,
            patient_name=str(s["patient_name"]), patient_id=str(s["patient_id"]),
            patient_birth_date=str(s["patient_birth_date"]), patient_sex=str(s["patient_sex"]),
            patient_age=str(s["patient_age"]), study_id=str(s["study_id"]),
            accession_number=str(s["accession_number"]), study_date=str(s["study_date"]),
            study_time=str(s["study_time"]))
        placeholder = ScoreResult(input="<template>", frame=int(str(s["frame_number"])) - 1, source=source,
                                  label=CLASS_CODES[0],
                                  probabilities={c: float(s[f"probability_{c}"]) for c in CLASS_CODES})
        when = datetime.strptime(f"{s['content_date']}{s['content_time']}", "%Y%m%d%H%M%S.%f")
        sr = build_reference_sr(placeholder, self.model, series_instance_uid=str(s["series_instance_uid"]),
                                sop_instance_uid=str(s["sop_instance_uid"]),
                                series_number=int(str(s["series_number"])),
                                instance_number=int(str(s["instance_number"])), content_datetime=when)
        _insert_sentinels(sr, codes.diagnosis_code(placeholder.label or ""),
                          review_flag_code(placeholder, self.model))
        buffer = BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        return _encode_template(buffer.getvalue(), *_sentinel_fields(with_site, multi_frame))

    @staticmethod
    def _patch(template: _Encoded, values: dict[str, str | float | None]) -> bytes:
        data, slots, containers = template.data, template.slots, template.containers
        encoded: list[bytes | None] = []
        deltas = [0] * len(containers)
        for slot in slots:
            if slot.field.startswith("fp:"):
                value = values[slot.field[3:]]
                raw: bytes | None = slot.tag_vr + b"\x08\x00" + struct.pack("<d", value)
            else:
                value = values[slot.field]
                if value is None:
                    raw = None
                else:
                    text = str(DS(value, auto_format=True)) if isinstance(value, float) else value
                    body = _text(text, slot.tag_vr[4:])
                    if len(body) > _MAX_SHORT_LENGTH:
                        raise ValueError(f"{slot.field} too long for its element ({len(body)} bytes)")
                    raw = slot.tag_vr + struct.pack("<H", len(body)) + body
            encoded.append(raw)
            delta = (len(raw) if raw is not None else 0) - (slot.end - slot.start)
            if delta:
                for c in slot.containers:
                    deltas[c] += delta
        out: list[bytes] = []
        pos = 0
        for offset, index, is_slot in template.patches:
            out.append(data[pos:offset])
            if is_slot:
                raw = encoded[index]
                if raw is not None:
                    out.append(raw)
                pos = slots[index].end
            else:
                out.append(struct.pack("<I", containers[index].length + deltas[index]))
                pos = offset + 4
        out.append(data[pos:])
        return b"".join(out)


def _insert_sentinels(sr: Dataset, finding: Code, review: Code) -> None:
    """Put the sentinels of the coded and computed items into the reference built from the placeholder
    result: its Finding (``finding``), its review flag (``review``) and its malignancy score (a sum of the
    probability sentinels, not itself a sentinel)."""
    coded = {(codes.FINDING.value, codes.FINDING.scheme_designator): ("finding", finding),
             (codes.REVIEW_FLAG.value, codes.REVIEW_FLAG.scheme_designator): ("review", review)}
    malignant = (codes.MALIGNANT.value, codes.MALIGNANT.scheme_designator)
    found: list[tuple[str, str]] = []
    for item in _content_items(sr):
        name = item.ConceptNameCodeSequence[0]
        key = (name.CodeValue, name.CodingSchemeDesignator)
        if key in coded:
            field, code = coded[key]
            concept = item.ConceptCodeSequence[0]
            if concept.CodeValue != code.value:
                raise ValueError(f"unexpected {field} code in the template")
            concept.CodeValue = _SENTINELS[f"{field}_value"]
            concept.CodeMeaning = _SENTINELS[f"{field}_meaning"]
            found.append(key)
        elif key == malignant:
            measured = item.MeasuredValueSequence[0]
            measured.NumericValue = DS(_SENTINELS["malignancy_score"], auto_format=True)
            measured.FloatingPointValue = _SENTINELS["malignancy_score"]
            found.append(key)
    if sorted(found) != sorted([*coded, malignant]):
        raise ValueError("the reference SR does not hold one Finding, review flag and malignancy score each")


def _content_items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _content_items(item)
