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
