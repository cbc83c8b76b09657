"""The review flag: malignancy score over the class table's malignant classes, its reasons, its counters."""

from __future__ import annotations

import hashlib

import numpy as np
from prometheus_client import REGISTRY

from skin_plugin.calibration import Calibration
from skin_plugin.constants import CLASS_CODES, LESION_CLASSES
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.review import (
    MALIGNANT_CODES,
    REVIEW_REASONS,
    ReviewThresholds,
    malignancy_score,
    malignancy_scores,
    reason_masks,
    review_flags,
    review_reasons,
)

THRESHOLDS = ReviewThresholds(malignancy=0.25, target_sensitivity=0.95)


def test_malignant_classes_come_from_the_class_table():
    assert MALIGNANT_CODES == tuple(c.code for c in LESION_CLASSES if c.malignant) == ("akiec", "bcc", "mel")
    p = np.eye(len(CLASS_CODES))
    assert malignancy_scores(p).tolist() == [float(c.malignant) for c in LESION_CLASSES]


def test_vectorised_masks_agree_with_the_per_image_reasons():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(len(CLASS_CODES), 0.6), size=400)
    labels = probs.argmax(1)
    masks = reason_masks(probs, labels, THRESHOLDS)
    for i in range(len(probs)):
        row = dict(zip(CLASS_CODES, probs[i]))
        assert review_reasons(row, CLASS_CODES[labels[i]], THRESHOLDS) == [
            r for r in REVIEW_REASONS if masks[r][i]]
        assert malignancy_score(row) == min(1.0, malignancy_scores(probs[i:i + 1])[0])
    assert review_flags(probs, labels, THRESHOLDS).tolist() == [
        bool(review_reasons(dict(zip(CLASS_CODES, p)), CLASS_CODES[y], THRESHOLDS)) for p, y in zip(probs, labels)]
    assert all(m.any() and not m.all() for m in masks.values())  # every reason occurs, none always


def test_every_malignant_call_is_flagged_whatever_the_thresholds():
    strict = ReviewThresholds(malignancy=1.0, melanoma=1.0, low_confidence=0.0)
    for c in LESION_CLASSES:
        probs = dict.fromkeys(CLASS_CODES, 0.0) | {c.code: 1.0}
        assert bool(review_reasons(probs, c.code, strict)) == c.malignant


def test_calibration_carries_the_operating_point_and_old_manifests_load_without_it():
    old = {"temperature": 0.9, "prior_weight": 0.5, "log_prior": [-1.0] * 7, "decision_weight": 0.25}
    cal = Calibration.from_dict(old)
    assert (cal.malignant_threshold, cal.target_sensitivity) == (None, None)
    assert cal.review == ReviewThresholds() and cal.to_dict() == old  # written back unchanged
    with_point = cal.with_operating_point(0.09, 0.95)
    assert with_point.review == ReviewThresholds(malignancy=0.09, target_sensitivity=0.95)
    assert Calibration.from_dict(with_point.to_dict()) == with_point
    assert with_point.decide(np.eye(7)).tolist() == cal.decide(np.eye(7)).tolist()  # same decision rule


def test_worker_counters_count_flags_and_reasons():
    from workers import metrics

    model = ModelIdentity("LesionCNN", "9.9.9", "openvino", "int8", hashlib.sha256(b"m").hexdigest(),
                          review=THRESHOLDS)
    worker = "test-review-counters"

    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {r: value("skin_review_reasons_total", {"reason": r}) for r in REVIEW_REASONS}
    results = [
        ScoreResult("a.jpg", label="bcc", probabilities=dict(zip(CLASS_CODES, [0, .9, 0, 0, 0, .1, 0]))),
        ScoreResult("b.jpg", label="nv", probabilities=dict(zip(CLASS_CODES, [.1, .1, 0, 0, .1, .7, 0]))),
        ScoreResult("c.jpg", label="nv", probabilities=dict(zip(CLASS_CODES, [0, 0, 0, 0, .05, .95, 0]))),
        ScoreResult("d.jpg", error="unreadable"),
    ]
    for r in results:
        metrics.count_scored(r, model, worker)
    assert value("skin_images_scored_total", {"outcome": "scored", "label": "nv", "worker": worker}) == 2
    assert value("skin_images_scored_total", {"outcome": "failed", "label": "", "worker": worker}) == 1
    assert value("skin_images_flagged_total", {"worker": worker}) == 2
    raised = {r: value("skin_review_reasons_total", {"reason": r}) - before[r] for r in REVIEW_REASONS}
    assert raised == {"malignancy_score": 2, "malignant_class": 1, "melanoma_probability": 0, "low_confidence": 0}
