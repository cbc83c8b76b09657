"""Per-image JSON reports (schema ``image-report-1.1``): prediction, probabilities and review flags.

A report is a clinical document: it holds the DICOM patient fields (PHI) next to the prediction, so it
is written to the report folder only and never logged. File names come from the validated SOP Instance
UID (DICOM) or from a sanitised stem plus a hash of the full path (photos), never from raw input text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from skin_plugin.constants import CLASS_CODES, LESION_CLASSES
from skin_plugin.dicom.records import DicomSourceInfo, validated_uid
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import ReviewThresholds, malignancy_score, review_reasons

SCHEMA_VERSION = "1.1"
"""1.1: the malignancy score and its operating point in the review flags (1.0: melanoma and low confidence)."""
IMAGE_SCHEMA_NAME = f"image-report-{SCHEMA_VERSION}"
IMAGE_SCHEMA_ID = f"urn:skin-lesion-plugin:schema:image-report:{SCHEMA_VERSION}"
DISCLAIMER = ("Not for clinical use. Research software: every result must be reviewed by a qualified "
              "clinician and must not be used as the sole basis for a diagnosis.")
_CLASSES = {c.code: c for c in LESION_CLASSES}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_STEM = 64


def utc_now() -> str:
    """The current time as an RFC 3339 UTC timestamp, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_schema(name: str = IMAGE_SCHEMA_NAME) -> dict:
    """A bundled JSON Schema by name (``image-report-1.1``, ``summary-1.2``; the earlier ones describe the
    reports of earlier versions)."""
    return json.loads((files("skin_plugin.reports") / "schemas" / f"{name}.json").read_text("utf-8"))


def _dicom_fields(source: DicomSourceInfo) -> dict[str, Any]:
    region = source.anatomic_region
    return {
        "study_instance_uid": source.study_instance_uid,
        "series_instance_uid": source.series_instance_uid,
        "sop_instance_uid": source.sop_instance_uid,
        "sop_class_uid": source.sop_class_uid,
        "patient_id": source.patient_id,
        "patient_name": source.patient_name,
        "patient_sex": source.patient_sex,
        "patient_age": source.patient_age,
        "accession_number": source.accession_number,
        "study_date": source.study_date,
        "anatomic_region": None if region is None else {
            "code_meaning": region.code_meaning, "code_value": region.code_value,
            "coding_scheme_designator": region.coding_scheme_designator},
    }


def image_report(result: ScoreResult, model: ModelIdentity, *, created: str | None = None,
                 thresholds: ReviewThresholds | None = None) -> dict[str, Any]:
    """The report of one scored image frame as a JSON-ready dict; ValueError for a failed result.

    ``thresholds`` None: the model's (``ModelIdentity.review``).
    """
    if not result.ok or result.label is None or result.probabilities is None:
        raise ValueError(f"no report for a result that failed: {result.error}")
    thresholds = thresholds or model.review
    probs = {code: float(result.probabilities[code]) for code in CLASS_CODES}
    cls = _CLASSES[result.label]
    reasons = review_reasons(probs, cls.code, thresholds)
    return {
        "schema": IMAGE_SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "created": created or utc_now(),
        "disclaimer": DISCLAIMER,
        "model": model.to_dict(),
        "input": {
            "path": result.input,
            "frame": result.frame,
            "kind": "dicom" if result.source else "photo",
            "dicom": _dicom_fields(result.source) if result.source else None,
        },
        "prediction": {"code": cls.code, "name": cls.name, "malignant": cls.malignant,
                       "probability": probs[cls.code]},
        "probabilities": probs,
        "flags": {
            "review": bool(reasons), "reasons": reasons,
            "malignancy_score": malignancy_score(probs),
            "melanoma_probability": probs["mel"], "top_probability": max(probs.values()),
            "thresholds": thresholds.to_dict(),
        },
        "latency_ms": None if result.latency_ms is None else round(float(result.latency_ms), 3),
    }


def _safe_stem(path: str) -> str:
    stem = _UNSAFE.sub("_", Path(path).stem).strip("_-")[:MAX_STEM]
    return stem or "image"


def report_file_name(result: ScoreResult) -> str:
    """``<SOP Instance UID>_f<frame>.json`` (DICOM; ValueError if the UID is not a valid UID) or
    ``<safe stem>_<hash of the absolute path>.json`` (photos)."""
    if result.source is not None:
        return f"{validated_uid(result.source.sop_instance_uid)}_f{int(result.frame)}.json"
    digest = hashlib.sha256(os.path.abspath(result.input).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_safe_stem(result.input)}_{digest[:10]}.json"


def write_text_atomic(text: str, path: Path) -> Path:
    """Write ``text`` as UTF-8 via a temporary file and a rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented UTF-8 JSON, atomically."""
    return write_text_atomic(json.dumps(data, indent=2, ensure_ascii=False) + "\n", path)


def write_image_report(result: ScoreResult, model: ModelIdentity, out_dir: str | Path, *,
                       created: str | None = None, thresholds: ReviewThresholds | None = None) -> Path:
    """Write the report of one scored frame into ``out_dir``; return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = image_report(result, model, created=created, thresholds=thresholds)
    return write_json(report, out / report_file_name(result))


def write_image_reports(results: list[ScoreResult], model: ModelIdentity, out_dir: str | Path, *,
                        created: str | None = None, thresholds: ReviewThresholds | None = None) -> list[Path]:
    """One report per scored result (failed results are skipped: they are listed in the summary)."""
    created = created or utc_now()
    return [write_image_report(r, model, out_dir, created=created, thresholds=thresholds)
            for r in results if r.ok]
