"""Calibration (temperature + prior share) and the decision rule."""

import numpy as np

from skin_plugin.calibration import Calibration
from training.calibrate import fit_calibration
from training.metrics import balanced_accuracy


def test_identity_is_softmax_argmax():
    logits = np.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
    cal = Calibration.identity(3)
    p = cal.probabilities(logits)
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    assert cal.decide(p).tolist() == [1, 0]


def test_round_trip_dict():
    cal = Calibration(1.7, 0.4, (-0.1, -2.0, -3.0), 0.35)
    assert Calibration.from_dict(cal.to_dict()) == cal


def _synthetic(n=6000, seed=0):
    """Logits 2z of a 3-class problem with a 80/15/5 prior, z ~ N(1.5 e_y, I).

    The exact posterior is softmax(1.5 z + log prior) = softmax(logits / (4/3) + 1.0 * log prior).
    """
    rng = np.random.default_rng(seed)
    prior = np.array([0.80, 0.15, 0.05])
    y = rng.choice(3, size=n, p=prior)
    true_logits = rng.normal(0, 1.0, (n, 3))
    true_logits[np.arange(n), y] += 1.5
    return 2.0 * true_logits, y, np.log(prior)


def test_fit_recovers_temperature_and_prior_share():
    logits, y, log_prior = _synthetic()
    cal = fit_calibration(logits, y, log_prior)
    assert abs(cal.temperature - 4 / 3) < 0.1
    assert abs(cal.prior_weight - 1.0) < 0.15
    nll_raw = -np.log(Calibration.identity(3).probabilities(logits)[np.arange(len(y)), y]).mean()
    nll_cal = -np.log(cal.probabilities(logits)[np.arange(len(y)), y]).mean()
    assert nll_cal < nll_raw


def test_decision_weight_trades_accuracy_for_balanced_accuracy():
    logits, y, log_prior = _synthetic(seed=1)
    fitted = fit_calibration(logits, y, log_prior)
    p = fitted.probabilities(logits)
    results = {}
    for w in (0.0, 1.0):
        pred = Calibration(fitted.temperature, fitted.prior_weight, fitted.log_prior, w).decide(p)
        results[w] = (np.mean(pred == y), balanced_accuracy(y, pred))
    assert results[0.0][0] > results[1.0][0]  # w=0: more accurate
    assert results[1.0][1] > results[0.0][1]  # w=1: more balanced


def _seven_class(scores_malignant: list[float], scores_benign: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose malignancy score is the given value: mel (or nv) carries it, the rest on nv/mel."""
    from skin_plugin.constants import CLASS_CODES

    mel, nv = CLASS_CODES.index("mel"), CLASS_CODES.index("nv")
    scores = np.array(scores_malignant + scores_benign)
    probs = np.zeros((len(scores), len(CLASS_CODES)))
    probs[:, mel], probs[:, nv] = scores, 1 - scores
    labels = np.array([mel] * len(scores_malignant) + [nv] * len(scores_benign))
    return probs, labels


def test_malignant_threshold_flags_the_target_share_of_malignant_validation_images():
    from training.calibrate import fit_malignant_threshold

    malignant = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    probs, labels = _seven_class(malignant, [0.02, 0.3, 0.6])
    # 95% of 10 -> 10 images: the lowest malignant score; 90% -> 9; 0.81 -> 9 (ceil); 0.5 -> 5
    assert fit_malignant_threshold(probs, labels, 0.95) == 0.05
    assert fit_malignant_threshold(probs, labels, 0.90) == 0.1
    assert fit_malignant_threshold(probs, labels, 0.81) == 0.1
    assert fit_malignant_threshold(probs, labels, 0.5) == 0.5
    for target in (0.95, 0.9, 0.7, 0.5):
        t = fit_malignant_threshold(probs, labels, target)
        assert np.mean(np.array(malignant) >= t) >= target  # at least the target share is flagged
        assert np.mean(np.array(malignant) > t) < target  # and it is the largest such threshold
    odd = _seven_class([0.123456789], [0.0])
    assert fit_malignant_threshold(*odd, 0.95) == 0.123456  # rounded down: the image stays flagged


def test_malignant_threshold_refuses_what_it_cannot_choose():
    import pytest

    from training.calibrate import fit_malignant_threshold

    probs, labels = _seven_class([], [0.1, 0.2])
    with pytest.raises(ValueError, match="no malignant image"):
        fit_malignant_threshold(probs, labels)
    probs, labels = _seven_class([0.5], [0.1])
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="target sensitivity"):
            fit_malignant_threshold(probs, labels, bad)


def test_operating_point_is_chosen_on_the_calibrated_probabilities():
    from skin_plugin.constants import NUM_CLASSES
    from skin_plugin.review import is_malignant, malignancy_scores
    from training.calibrate import with_operating_point

    rng = np.random.default_rng(3)
    labels = rng.integers(0, NUM_CLASSES, 500)
    logits = rng.normal(0, 1, (500, NUM_CLASSES)) + 2 * np.eye(NUM_CLASSES)[labels]
    cal = Calibration(1.3, 0.4, tuple(np.log(np.full(NUM_CLASSES, 1 / NUM_CLASSES))), 0.2)
    chosen = with_operating_point(cal, logits, labels, 0.9)
    assert (chosen.temperature, chosen.decision_weight, chosen.target_sensitivity) == (1.3, 0.2, 0.9)
    score = malignancy_scores(cal.probabilities(logits))
    assert np.mean(score[is_malignant(labels)] >= chosen.malignant_threshold) >= 0.9
