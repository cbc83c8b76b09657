"""Reference implementation of the per-image classification report, built with highdicom (~50-100 ms).

One Comprehensive SR per scored image: a TID 1500 Measurement Report holding one TID 1501 group with
the diagnosis (the group's Finding = SNOMED CT code of the predicted class), one probability per class
(a measurement named by the class's SNOMED CT code, method Probability, value 0..1, UCUM "1"), the
malignancy score (the same kind of measurement, named "Malignant"), the review flag (a qualitative
evaluation "For Physician Review": Yes or No, see ``skin_plugin.review``), the algorithm identification
(TID 4019: name, version, backend, precision, weights sha256, review thresholds), the referenced source
image and its finding site. Patient and study are the source's; the report is in a
new series. It is PRELIMINARY and UNVERIFIED and says "not for clinical use" in its series description
and in a Comment item. :class:`skin_plugin.sr.template.SRTemplate` writes the same file ~300x faster.
"""

from __future__ import annotations

import re
from datetime import datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, DT, TM

from skin_plugin.constants import CLASS_CODES
from skin_plugin.dicom.records import DicomSourceInfo, validated_uid
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import malignancy_score, review_reasons
from skin_plugin.sr import codes, numbering

MANUFACTURER = "skin-lesion-plugin"
SPECIFIC_CHARACTER_SET = "ISO_IR 192"
"""UTF-8: any patient name read from a source can be written."""
TRACKING_IDENTIFIER = "Skin lesion classification"
UID_NAMESPACE = "skin-plugin/sr/v1"
"""Entropy prefix of the derived (deterministic) tracking and device observer UIDs."""

NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "DOC", "KO", "PR", "PLAN", "RWV", "REG", "FID", "RTDOSE",
                                  "RTPLAN", "RTRECORD", "RTSTRUCT"})
"""Modalities highdicom refuses as a source image (checked here, so the template path refuses them too)."""
_DA = re.compile(r"[0-9]{8}")
_TM = re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?")
_AS = re.compile(r"[0-9]{3}[DWMY]")


class SRSourceError(ValueError):
    """The result cannot be reported as a DICOM SR (no DICOM source, or no prediction)."""


def series_description(model: ModelIdentity) -> str:
    """``"LesionCNN skin-lesion classification - NOT FOR CLINICAL USE"`` (LO: at most 64 characters)."""
    suffix = " skin-lesion classification - NOT FOR CLINICAL USE"
    return model.name[:64 - len(suffix)] + suffix


def derived_uid(*parts: str) -> str:
    """A deterministic UID derived from ``parts`` (same inputs, same UID)."""
    return str(generate_uid(entropy_srcs=[UID_NAMESPACE, *parts]))


def device_observer_uid(model: ModelIdentity) -> str:
    """Device Observer UID of a model: one per name, version, backend, precision and weights."""
    return derived_uid("device", model.name, model.version, model.backend, model.precision, model.sha256)


def tracking_uid(sop_instance_uid: str) -> str:
    """Tracking Unique Identifier of the finding of one report."""
    return derived_uid("tracking", sop_instance_uid)


def checked_source(result: ScoreResult) -> DicomSourceInfo:
    """The DICOM source of a scored result; SRSourceError for a plain photo or an unscored input."""
    if result.source is None:
        raise SRSourceError(f"{result.input}: not a DICOM image (plain photo): a DICOM SR needs a DICOM "
                            "source image to reference, and its patient and study")
    if not result.ok or result.label is None or result.probabilities is None:
        raise SRSourceError(f"{result.input}: no prediction to report ({result.error or 'missing label'})")
    if result.source.modality in NON_IMAGE_MODALITIES:
        raise SRSourceError(f"{result.input}: a {result.source.modality} object is not an image to report on")
    if set(result.probabilities) != set(CLASS_CODES):
        raise SRSourceError(f"{result.input}: probabilities for {sorted(result.probabilities)}, "
                            f"expected {list(CLASS_CODES)}")
    return result.source


def referenced_frame_numbers(result: ScoreResult) -> list[int] | None:
    """1-based frame number for a multi-frame source; None for a single-frame one."""
    source = checked_source(result)
    if source.number_of_frames > 1:
        if not 0 <= result.frame < source.number_of_frames:
            raise SRSourceError(f"{result.input}: frame {result.frame} outside the "
                                f"{source.number_of_frames} frames of the source")
        return [result.frame + 1]
    return None


def finding_site_code(source: DicomSourceInfo) -> Code | None:
    """The coded anatomic region of the source (None without one, or with Body Part Examined only)."""
    region = source.anatomic_region
    if region is None or not region.code_value or not region.coding_scheme_designator:
        return None
    return Code(region.code_value, region.coding_scheme_designator, region.code_meaning or region.code_value)


def patient_study_values(source: DicomSourceInfo) -> dict[str, str]:
    """Patient and study attributes of the source, keyword -> value.

    Values the DICOM value representation cannot hold (a malformed date, time, age or sex of the source)
    are written empty rather than copied; PatientAge is left out when the source has none.
    """
    values = {
        "PatientName": source.patient_name,
        "PatientID": source.patient_id,
        "PatientBirthDate": _valid(_DA, source.patient_birth_date),
        "PatientSex": source.patient_sex if source.patient_sex in ("M", "F", "O") else "",
        "StudyID": source.study_id,
        "AccessionNumber": source.accession_number,
        "StudyDate": _valid(_DA, source.study_date),
        "StudyTime": _valid(_TM, source.study_time),
    }
    if age := _valid(_AS, source.patient_age):
        values["PatientAge"] = age
    return values


def _valid(pattern: re.Pattern[str], value: str) -> str:
    """``value`` if it has the form of ``pattern`` and, for a date or time, exists on the calendar."""
    if not pattern.fullmatch(value):
        return ""
    try:
        if pattern is _DA:
            DA(value)
        elif pattern is _TM:
            TM(value)
    except ValueError:
        return ""
    return value


def source_dataset(source: DicomSourceInfo) -> Dataset:
    """A minimal dataset standing for the source image: what highdicom reads from an evidence instance."""
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.SOPClassUID = validated_uid(source.sop_class_uid)
    ds.SOPInstanceUID = validated_uid(source.sop_instance_uid)
    ds.StudyInstanceUID = validated_uid(source.study_instance_uid)
    ds.SeriesInstanceUID = validated_uid(source.series_instance_uid)
    ds.Modality = source.modality
    for keyword, value in patient_study_values(source).items():
        setattr(ds, keyword, value)
    ds.ReferringPhysicianName = ""
    ds.Rows, ds.Columns = source.rows, source.columns
    if source.number_of_frames > 1:
        ds.NumberOfFrames = source.number_of_frames
    return ds


def algorithm_parameters(model: ModelIdentity) -> list[str]:
    """TID 4019 Algorithm Parameters: backend, precision, the sha256 of the weights that ran and the review
    thresholds (the malignancy threshold is ``none`` for a release that records no operating point)."""
    t = model.review
    return [f"backend={model.backend}", f"precision={model.precision}", f"sha256={model.sha256}",
            f"review_malignancy_threshold={'none' if t.malignancy is None else f'{t.malignancy:.6g}'}",
            f"review_melanoma_threshold={t.melanoma:g}", f"review_low_confidence_threshold={t.low_confidence:g}"]


def review_flag_code(result: ScoreResult, model: ModelIdentity) -> Code:
    """``codes.YES`` if the result is flagged for review under the model's thresholds, else ``codes.NO``."""
    assert result.probabilities is not None and result.label is not None
    return codes.YES if review_reasons(result.probabilities, result.label, model.review) else codes.NO


def build_measurement_report(result: ScoreResult, model: ModelIdentity, *, sop_instance_uid: str,
                             source: Dataset | None = None) -> hd.sr.MeasurementReport:
    """The TID 1500 content tree of one result (``source``: the dataset standing for its image)."""
    info = checked_source(result)
    source = source if source is not None else source_dataset(info)
    algorithm = hd.sr.AlgorithmIdentification(name=model.name, version=model.version,
                                               parameters=algorithm_parameters(model),
                                               family=codes.ALGORITHM_FAMILY)
    measurements = [
        hd.sr.Measurement(name=codes.diagnosis_code(c), value=float(result.probabilities[c]),
                          unit=codes.NO_UNITS, method=codes.PROBABILITY)
        for c in CLASS_CODES
    ]
    measurements.append(hd.sr.Measurement(name=codes.MALIGNANT, value=malignancy_score(result.probabilities),
                                          unit=codes.NO_UNITS, method=codes.PROBABILITY))
    try:
        image = hd.sr.SourceImageForMeasurementGroup.from_source_image(
            source, referenced_frame_numbers=referenced_frame_numbers(result))
    except TypeError as exc:  # frame numbers for an image whose IOD is single-frame
        raise SRSourceError(f"{result.input}: {info.number_of_frames} frames, but SOP class "
                            f"{info.sop_class_uid} is a single-frame image") from exc
    site = finding_site_code(info)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid(sop_instance_uid),
                                                     identifier=TRACKING_IDENTIFIER),
        finding_type=codes.diagnosis_code(result.label),  # TID 1501 row 4: (121071, DCM, "Finding")
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.REVIEW_FLAG, review_flag_code(result, model))],
        source_images=[image],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_observer_uid(model), name=model.name, manufacturer_name=MANUFACTURER,
            model_name=f"{model.name} {model.version}"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE_REPORTED,
        imaging_measurements=[group],
        title=codes.DOCUMENT_TITLE,
    )
    report[0].ContentSequence.append(hd.sr.TextContentItem(
        name=codes.COMMENT, value=codes.NOT_FOR_CLINICAL_USE,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return report


def build_reference_sr(result: ScoreResult, model: ModelIdentity, *, series_instance_uid: str,
                       sop_instance_uid: str, series_number: int | None = None,
                       instance_number: int | None = None,
                       content_datetime: datetime | None = None) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR reporting ``result`` (which must have a DICOM source), in a new series.

    ``series_number`` and ``instance_number`` default to :mod:`skin_plugin.sr.numbering`'s (the SR
    series' setting, a number derived from the source image). ``content_datetime`` (default: now) is
    written as Content Date/Time, Instance Creation Date/Time and the contribution time of the creating
    software, so a report is reproducible from its inputs.
    """
    info = checked_source(result)
    series_number, instance_number = numbering.numbers(result, series_number, instance_number)
    source = source_dataset(info)
    when = content_datetime or datetime.now()
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=build_measurement_report(result, model, sop_instance_uid=sop_instance_uid, source=source),
        series_instance_uid=validated_uid(series_instance_uid),
        series_number=series_number,
        sop_instance_uid=validated_uid(sop_instance_uid),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=series_description(model),
        manufacturer_model_name=model.name,
        software_versions=model.version,
        content_date=when.date(),
        content_time=when.time(),
        specific_character_set=SPECIFIC_CHARACTER_SET,
    )
    sr.InstanceCreationDate, sr.InstanceCreationTime = DA(when.date()), TM(when.time())
    for equipment in sr.ContributingEquipmentSequence:
        equipment.ContributionDateTime = DT(when)
    return sr
