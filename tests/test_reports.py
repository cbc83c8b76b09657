"""Per-image JSON reports and the batch summary: schema validity, file names, counts, failures."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from skin_plugin.constants import CLASS_CODES, LESION_CLASSES
from skin_plugin.dicom.convert import PatientStudy, jpeg_to_dicom
from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.pipeline import score_files
from skin_plugin.prediction import Prediction
from skin_plugin.reports import (
    BatchSummary,
    ReviewThresholds,
    image_report,
    load_schema,
    report_file_name,
    write_image_report,
    write_image_reports,
)
from skin_plugin.reports.summary import SUMMARY_SCHEMA_NAME
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import REVIEW_REASONS

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
STUB_MODEL = ModelIdentity("LesionCNN", "1.0.0", "openvino", "int8", hashlib.sha256(b"stub").hexdigest(),
                           review=ReviewThresholds(malignancy=0.2, target_sensitivity=0.95))
# Rows (akiec, bcc, bkl, df, mel, nv, vasc) handed out in input order; labels are the argmax. Flags at
# STUB_MODEL's thresholds (malignancy score = akiec + bcc + mel >= 0.2, mel > 0.3, top < 0.5):
STUB_PROBS = np.array([
    [0.02, 0.03, 0.05, 0.01, 0.72, 0.15, 0.02],   # mel, score 0.77: malignancy, malignant class, melanoma
    [0.01, 0.01, 0.03, 0.01, 0.04, 0.89, 0.01],   # nv, score 0.06: not flagged
    [0.20, 0.35, 0.15, 0.05, 0.10, 0.10, 0.05],   # bcc, score 0.65: malignancy, malignant class, low confidence
    [0.02, 0.03, 0.05, 0.02, 0.40, 0.45, 0.03],   # nv, score 0.45: malignancy, melanoma, low confidence
    [0.62, 0.03, 0.25, 0.02, 0.04, 0.03, 0.01],   # akiec, score 0.69: malignancy, malignant class
    [0.10, 0.10, 0.05, 0.60, 0.03, 0.10, 0.02],   # df, score 0.23: malignancy only
    [0.01, 0.01, 0.01, 0.005, 0.005, 0.01, 0.95],  # vasc, score 0.025: not flagged
    [0.02, 0.02, 0.05, 0.01, 0.31, 0.55, 0.04],   # nv, score 0.35: malignancy, melanoma (the DICOM frame)
])
PATIENT = PatientStudy(patient_name="DOE^JANE<script>", patient_id="P<1>&2", sex="F", age="045Y",
                       study_date="20250102", accession_number="ACC&1")


class StubClassifier:
    """Deterministic probabilities (``STUB_PROBS`` by position): fast, and every flag case occurs."""

    def predict(self, images: np.ndarray) -> Prediction:
        probs = STUB_PROBS[np.arange(len(images)) % len(STUB_PROBS)]
        return Prediction(probs.astype(np.float32), probs.argmax(axis=1))


def batch_inputs(folder: Path) -> list[Path]:
    """The seven samples, one DICOM with (fake) PHI needing escaping, a corrupt JPEG and a text file."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom = folder / "case.dcm"
    jpeg_to_dicom(SAMPLES / "ISIC_0024400.jpg", dicom, PATIENT, localization="back")
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes((SAMPLES / "ISIC_0024306.jpg").read_bytes()[:600])
    text = folder / "notes.txt"
    text.write_text("not an image")
    return [*sorted(SAMPLES.glob("*.jpg")), dicom, corrupt, text]


def stub_batch(folder: Path) -> list[ScoreResult]:
    return score_files(batch_inputs(folder), StubClassifier())


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[ScoreResult]:
    return stub_batch(tmp_path_factory.mktemp("inputs"))


@pytest.mark.parametrize("name", ["image-report-1.0", "image-report-1.1", "summary-1.0", "summary-1.1",
                                  "summary-1.2"])
def test_schemas_are_draft_2020_12_with_versioned_ids(name):
    """image-report 1.1 and summary 1.2 are written now; earlier ones stay bundled for earlier reports."""
    kind, _, version = name.rpartition("-")
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:skin-lesion-plugin:schema:{kind}:{version}"
    assert schema["properties"]["schema"]["const"] == schema["$id"]
    assert load_schema()["$id"] == "urn:skin-lesion-plugin:schema:image-report:1.1"


def test_schemas_list_every_review_reason():
    flags = load_schema("image-report-1.1")["properties"]["flags"]["properties"]
    assert flags["reasons"]["items"]["enum"] == list(REVIEW_REASONS)
    assert load_schema(SUMMARY_SCHEMA_NAME)["properties"]["flag_reasons"]["required"] == list(REVIEW_REASONS)


def test_image_reports_validate_and_carry_the_prediction(results, tmp_path):
    paths = write_image_reports(results, STUB_MODEL, tmp_path)
    assert len(paths) == 8 and len({p.name for p in paths}) == 8
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no temporary files left behind
    check = validator("image-report-1.1")
    for p in paths:
        report = json.loads(p.read_text("utf-8"))
        check.validate(report)
        assert report["prediction"]["code"] == max(report["probabilities"], key=report["probabilities"].get)
        assert sum(report["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert report["disclaimer"].startswith("Not for clinical use.")
    photo = [p for p in paths if p.name.startswith("ISIC_0024400")]
    assert len(photo) == 1 and re.fullmatch(r"ISIC_0024400_[0-9a-f]{10}\.json", photo[0].name)


def test_dicom_report_holds_identity_and_phi(results, tmp_path):
    dicom = next(r for r in results if r.source is not None)
    path = write_image_report(dicom, STUB_MODEL, tmp_path)
    assert path.name == f"{dicom.source.sop_instance_uid}_f0.json"
    report = json.loads(path.read_text("utf-8"))
    d = report["input"]["dicom"]
    assert report["input"]["kind"] == "dicom"
    assert (d["patient_name"], d["patient_id"], d["patient_sex"], d["patient_age"]) == (
        "DOE^JANE<script>", "P<1>&2", "F", "045Y")
    assert d["anatomic_region"]["code_meaning"] == "Skin of back"
    assert d["sop_instance_uid"] == dicom.source.sop_instance_uid
    assert d["study_instance_uid"] and d["series_instance_uid"]
    assert report["prediction"] == {"code": "nv", "name": "Melanocytic nevi", "malignant": False,
                                    "probability": pytest.approx(0.55)}
    flags = report["flags"]
    assert flags["review"] and flags["reasons"] == ["malignancy_score", "melanoma_probability"]
    assert flags["malignancy_score"] == pytest.approx(0.35)
    assert flags["thresholds"] == {"malignancy": 0.2, "target_sensitivity": 0.95, "melanoma": 0.3,
                                   "low_confidence": 0.5}


def test_review_flags_and_thresholds():
    def flags(probs: list[float], model: ModelIdentity = STUB_MODEL, **kw) -> list[str]:
        r = ScoreResult("x.jpg", label=CLASS_CODES[int(np.argmax(probs))],
                        probabilities=dict(zip(CLASS_CODES, probs)))
        return image_report(r, model, thresholds=ReviewThresholds(**kw) if kw else None)["flags"]["reasons"]

    assert flags(list(STUB_PROBS[0])) == ["malignancy_score", "malignant_class", "melanoma_probability"]
    assert flags(list(STUB_PROBS[1])) == []
    assert flags(list(STUB_PROBS[2])) == ["malignancy_score", "malignant_class", "low_confidence"]
    assert flags(list(STUB_PROBS[3])) == ["malignancy_score", "melanoma_probability", "low_confidence"]
    assert flags(list(STUB_PROBS[4])) == ["malignancy_score", "malignant_class"]  # a confident akiec call
    assert flags(list(STUB_PROBS[5])) == ["malignancy_score"]  # a benign call with a high malignancy score
    assert flags(list(STUB_PROBS[3]), malignancy=0.5, melanoma=0.5, low_confidence=0.4) == []
    assert flags([0, 0, 0, 0, 0.3, 0.7, 0], malignancy=0.31) == []  # "above": a tie on melanoma is not flagged
    assert flags([0.1, 0.05, 0, 0, 0.05, 0.8, 0], malignancy=0.2) == ["malignancy_score"]  # "at or above"
    with pytest.raises(ValueError):
        ReviewThresholds(melanoma=1.5)
    with pytest.raises(ValueError):
        ReviewThresholds(malignancy=-0.1)


def test_a_release_without_an_operating_point_still_flags_malignant_calls():
    """Releases packaged before the operating point load with malignancy None: no score reason, every other
    reason still applies, and the report says the threshold is missing."""
    old = ModelIdentity("LesionCNN", "1.1.0", "openvino", "int8", STUB_MODEL.sha256)
    r = ScoreResult("x.jpg", label="akiec", probabilities=dict(zip(CLASS_CODES, STUB_PROBS[4])))
    report = image_report(r, old)
    assert report["flags"]["reasons"] == ["malignant_class"]
    assert report["flags"]["thresholds"]["malignancy"] is None
    validator("image-report-1.1").validate(report)


def test_failed_results_get_no_image_report(results, tmp_path):
    failed = [r for r in results if not r.ok]
    with pytest.raises(ValueError, match="failed"):
        write_image_report(failed[0], STUB_MODEL, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_summary_counts_failures_and_schema(results, tmp_path):
    summary = BatchSummary.from_results(results, 2.0, STUB_MODEL)
    path = summary.write(tmp_path)
    data = json.loads(path.read_text("utf-8"))
    validator(SUMMARY_SCHEMA_NAME).validate(data)
    assert path.name == "summary.json"
    assert (data["images"], data["scored"], len(data["failed"])) == (10, 8, 2)
    assert data["images_per_s"] == 5.0 and data["wall_s"] == 2.0
    assert data["counts"] == {"akiec": 1, "bcc": 1, "bkl": 0, "df": 1, "mel": 1, "nv": 3, "vasc": 1}
    assert data["flagged"] == 6
    assert data["flag_reasons"] == {"malignancy_score": 6, "malignant_class": 3, "melanoma_probability": 3,
                                    "low_confidence": 2}
    assert data["thresholds"]["malignancy"] == 0.2
    assert [Path(f["input"]).name for f in data["failed"]] == ["corrupt.jpg", "notes.txt"]
    assert "truncated" in data["failed"][0]["reason"] or "unreadable" in data["failed"][0]["reason"]
    assert "neither a DICOM file nor" in data["failed"][1]["reason"]
    latencies = [r.latency_ms for r in results if r.ok]
    assert data["latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50), abs=1e-3)
    assert data["latency_p95_ms"] >= data["latency_p50_ms"] > 0
    text = path.read_text("utf-8")
    assert "DOE" not in text and "P<1>" not in text  # the summary is free of PHI


def test_summary_of_an_empty_or_all_failed_batch():
    data = BatchSummary.from_results([ScoreResult("a.jpg", error="bad")], 0.0, STUB_MODEL).to_dict()
    validator(SUMMARY_SCHEMA_NAME).validate(data)
    assert data["images_per_s"] is None and data["latency_p50_ms"] is None and data["scored"] == 0
    assert data["failed"] == [{"input": "a.jpg", "reason": "bad"}]
    validator(SUMMARY_SCHEMA_NAME).validate(BatchSummary.from_results([], 0.0, STUB_MODEL).to_dict())


def _dicom_result(uid: str) -> ScoreResult:
    source = DicomSourceInfo(sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.4.1", sop_instance_uid=uid,
                             study_instance_uid="1.2.3", series_instance_uid="1.2.3.4",
                             transfer_syntax_uid="1.2.840.10008.1.2.4.50")
    return ScoreResult("in.dcm", 2, source, "nv", dict(zip(CLASS_CODES, STUB_PROBS[1])))


@pytest.mark.parametrize("uid", ["../evil", "1.2/3", "", "1.02.3", "1.2.3\\..\\x", "1." + "2" * 70])
def test_invalid_sop_instance_uids_are_refused_as_file_names(uid, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="not a valid DICOM UID"):
        write_image_report(_dicom_result(uid), STUB_MODEL, out)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_dicom_file_name_has_uid_and_frame():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert report_file_name(_dicom_result(uid)) == f"{uid}_f2.json"


@pytest.mark.parametrize("name", ["../../etc/passwd", "a b;rm -rf~.jpg", "..", "/tmp/.hidden.png",
                                  "ñandú<>|:*?.jpg", "x" * 300 + ".jpg", "C:\\evil\\..\\x.jpg", "$(id).jpeg"])
def test_photo_file_names_are_safe(name, tmp_path):
    r = ScoreResult(name, 0, None, "nv", dict(zip(CLASS_CODES, STUB_PROBS[1])))
    file_name = report_file_name(r)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}_[0-9a-f]{10}\.json", file_name), file_name
    path = write_image_report(r, STUB_MODEL, tmp_path)
    assert path.parent == tmp_path and path.exists()


def test_same_stem_in_two_folders_gets_two_files(tmp_path):
    probs = dict(zip(CLASS_CODES, STUB_PROBS[1]))
    names = {report_file_name(ScoreResult(f"{d}/ISIC_1.jpg", 0, None, "nv", probs)) for d in ("a", "b")}
    assert len(names) == 2


def test_class_names_come_from_the_class_table(results):
    for r in results:
        if r.ok:
            pred = image_report(r, STUB_MODEL)["prediction"]
            assert pred["name"] == next(c.name for c in LESION_CLASSES if c.code == pred["code"])


def _real_classifier():
    from skin_plugin.classifier import make_classifier
    from skin_plugin.ir_manifest import IR_DIR
    from skin_plugin.release import RELEASE_DIR

    if (IR_DIR / "manifest.json").exists():
        return make_classifier(threads=1)
    if (RELEASE_DIR / "model.json").exists():
        return make_classifier(backend="torch", precision="fp32", threads=1)
    pytest.skip("no shipped model yet (neither the OpenVINO IR nor skin_plugin/release)")


def test_real_model_outputs_validate(tmp_path):
    from skin_plugin.classifier import model_identity

    classifier = _real_classifier()
    results = score_files(batch_inputs(tmp_path / "in"), classifier)
    model = model_identity(classifier)
    assert model.review.malignancy is not None  # the shipped model records its operating point
    paths = write_image_reports(results, model, tmp_path / "out")
    check = validator("image-report-1.1")
    for p in paths:
        check.validate(json.loads(p.read_text("utf-8")))
    summary = BatchSummary.from_results(results, 1.0, model)
    validator(SUMMARY_SCHEMA_NAME).validate(json.loads(summary.write(tmp_path / "out").read_text("utf-8")))
    assert (summary.images, summary.scored, len(summary.failed), len(paths)) == (10, 8, 2, 8)
