"""Evaluation metrics on hand-checked examples."""

import numpy as np
import pytest

from skin_plugin.constants import CLASS_CODES, MELANOMA_INDEX
from training.metrics import bootstrap_intervals, classification_report, expected_calibration_error


def test_report_on_a_small_known_case():
    y = np.array([0, 0, 1, 1, MELANOMA_INDEX, MELANOMA_INDEX])
    pred = np.array([0, 1, 1, 1, MELANOMA_INDEX, 0])
    probs = np.full((6, 7), 0.01)
    probs[np.arange(6), pred] = 0.94
    r = classification_report(y, probs, pred)
    assert r["n_images"] == 6
    assert r["accuracy"] == 4 / 6
    assert r["balanced_accuracy"] == (0.5 + 1.0 + 0.5) / 3
    assert r["per_class"]["akiec"] == {"sensitivity": 0.5, "specificity": 0.75, "precision": 0.5,
                                       "f1": 0.5, "auc": r["auc"]["akiec"], "support": 2}
    assert r["per_class"]["bcc"]["precision"] == 2 / 3
    assert r["confusion_matrix"][MELANOMA_INDEX][0] == 1
    assert r["mel_auc"] == r["auc"]["mel"]
    assert r["auc"]["nv"] is None  # no positives: undefined, not a made-up number
    assert r["classes"] == list(CLASS_CODES)


def test_ece_zero_when_confidence_matches_accuracy():
    y = np.array([0, 1, 0, 1])
    probs = np.zeros((4, 7))
    probs[:, 0] = 0.5
    probs[:, 1] = 0.5
    assert expected_calibration_error(y, probs) == 0.5 - 0.5  # argmax picks class 0: 50% right at 0.5
    confident = np.eye(7)[[0, 0, 0, 0]]
    assert expected_calibration_error(y, confident) == 0.5


def test_bootstrap_interval_contains_point_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 7, 300))
    probs = np.eye(7)[pred] * 0.9 + 0.1 / 7
    ci = bootstrap_intervals(y, probs, pred, np.arange(300) // 2, n=200)
    acc = np.mean(pred == y)
    assert ci["accuracy"][0] <= acc <= ci["accuracy"][1]
    assert set(ci) == {"accuracy", "balanced_accuracy", "macro_f1", "mel_auc", "malignant_auc"}


def test_malignant_figures_at_the_operating_point_and_for_the_review_flag():
    """Six images: truth akiec, mel, mel, nv, nv, bkl. Malignancy scores 0.6, 0.9, 0.2, 0.5, 0.1, 0.05 at
    threshold 0.4 flag akiec, one mel and one nv: sensitivity 2/3, specificity 2/3, half the images."""
    from skin_plugin.constants import CLASS_CODES
    from skin_plugin.review import ReviewThresholds

    akiec, bkl, mel, nv = (CLASS_CODES.index(c) for c in ("akiec", "bkl", "mel", "nv"))
    y = np.array([akiec, mel, mel, nv, nv, bkl])
    score = np.array([0.6, 0.9, 0.2, 0.5, 0.1, 0.05])
    probs = np.zeros((6, 7))
    probs[:, mel], probs[:, nv] = score, 1 - score
    pred = np.array([mel, mel, nv, nv, nv, nv])
    r = classification_report(y, probs, pred, ReviewThresholds(malignancy=0.4, target_sensitivity=0.95))
    m = r["malignant"]
    assert (m["classes"], m["n_malignant"], m["threshold"], m["target_sensitivity"]) == (
        ["akiec", "bcc", "mel"], 3, 0.4, 0.95)
    assert m["auc"] == pytest.approx(8 / 9)  # 8 of the 9 malignant/benign pairs ordered right (0.2 < 0.5)
    assert m["operating_point"] == {"sensitivity": 2 / 3, "specificity": 2 / 3, "flag_rate": 0.5,
                                    "mel_sensitivity": 0.5}
    # review flag: melanoma probability > 0.3 and the two mel calls flag the same three images; the top
    # probability is never below 0.5 (0.5 exactly is not)
    assert m["review_flag"]["reasons"] == {"malignancy_score": 3, "malignant_class": 2,
                                           "melanoma_probability": 3, "low_confidence": 0}
    assert m["review_flag"]["sensitivity"] == 2 / 3 and m["review_flag"]["flag_rate"] == 0.5
    pred[2] = mel  # calling the missed melanoma malignant puts it under review: the flag catches all three
    assert classification_report(y, probs, pred, ReviewThresholds(malignancy=0.4))["malignant"][
        "review_flag"]["sensitivity"] == 1.0
    without = classification_report(y, probs, pred)["malignant"]  # no operating point: AUC, no point
    assert "operating_point" not in without and without["auc"] == m["auc"] and without["threshold"] is None


def test_bootstrap_covers_the_operating_point_figures():
    from skin_plugin.review import ReviewThresholds

    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 400)
    probs = rng.dirichlet(np.ones(7), 400)
    probs[np.arange(400), y] += 1.0
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    thresholds = ReviewThresholds(malignancy=0.5)
    ci = bootstrap_intervals(y, probs, pred, np.arange(400) // 2, n=100, thresholds=thresholds)
    point = classification_report(y, probs, pred, thresholds)["malignant"]
    for key, value in (("malignant_auc", point["auc"]),
                       ("malignant_sensitivity", point["operating_point"]["sensitivity"]),
                       ("malignant_flag_rate", point["operating_point"]["flag_rate"]),
                       ("review_sensitivity", point["review_flag"]["sensitivity"])):
        assert ci[key][0] <= value <= ci[key][1], key
    assert {"malignant_specificity", "malignant_mel_sensitivity", "review_flag_rate"} <= set(ci)
