"""Evaluation metrics on hand-checked examples."""

import numpy as np

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
    assert set(ci) == {"accuracy", "balanced_accuracy", "macro_f1", "mel_auc"}
