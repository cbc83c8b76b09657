"""Fit ``Calibration`` on validation logits: temperature, prior share, decision weight, review operating point."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

from skin_plugin.calibration import Calibration
from skin_plugin.constants import NUM_CLASSES
from skin_plugin.review import DEFAULT_TARGET_SENSITIVITY, is_malignant, malignancy_scores
from training.metrics import balanced_accuracy

DECISION_WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)


def log_class_prior(labels: np.ndarray) -> np.ndarray:
    """Log class frequencies of ``labels`` (the training split), in class order."""
    return np.log(np.bincount(labels, minlength=NUM_CLASSES) / len(labels))


def fit_malignant_threshold(probabilities: np.ndarray, labels: np.ndarray,
                            target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> float:
    """The review operating point: the largest malignancy score threshold (rounded down to 1e-6) at which at
    least ``target_sensitivity`` of the malignant images among ``labels`` score at or above it.

    ``probabilities`` are calibrated (N, C) validation probabilities of any network.
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity {target_sensitivity} is not in (0, 1]")
    positives = np.sort(malignancy_scores(probabilities)[is_malignant(labels)])[::-1]
    if not len(positives):
        raise ValueError("no malignant image in the validation labels: cannot choose a malignancy threshold")
    k = max(1, math.ceil(target_sensitivity * len(positives) - 1e-9))  # images that must be flagged
    return math.floor(float(positives[k - 1]) * 1e6) / 1e6


def with_operating_point(calibration: Calibration, logits: np.ndarray, labels: np.ndarray,
                         target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> Calibration:
    """``calibration`` with the malignancy threshold fitted on its own probabilities of ``logits``."""
    threshold = fit_malignant_threshold(calibration.probabilities(logits), labels, target_sensitivity)
    return calibration.with_operating_point(threshold, target_sensitivity)


def fit_calibration(logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray) -> Calibration:
    """Minimise validation NLL over (temperature, prior share), then pick the decision weight (the review
    operating point is added by ``with_operating_point``).

    The decision weight maximises the mean of accuracy and balanced accuracy on validation: one rule
    that keeps most of the accuracy on the common classes while recovering the rare ones.
    """
    log_prior = np.asarray(log_prior, dtype=np.float64)

    def nll(params: np.ndarray) -> float:
        cal = Calibration(float(np.exp(params[0])), float(params[1]), tuple(log_prior), 0.0)
        return -float(cal.log_probabilities(logits)[np.arange(len(labels)), labels].mean())

    res = minimize(nll, x0=np.array([0.0, 0.5]), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    temperature, prior_weight = float(np.exp(res.x[0])), float(res.x[1])
    base = Calibration(temperature, prior_weight, tuple(log_prior.tolist()), 0.0)
    probs = base.probabilities(logits)
    scores = []
    for w in DECISION_WEIGHTS:
        pred = Calibration(temperature, prior_weight, base.log_prior, float(w)).decide(probs)
        scores.append(0.5 * np.mean(pred == labels) + 0.5 * balanced_accuracy(labels, pred))
    best = float(DECISION_WEIGHTS[int(np.argmax(scores))])
    return Calibration(temperature, prior_weight, base.log_prior, best)


def calibrated_scores(logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray) -> dict:
    """Validation accuracy, balanced accuracy and their mean under the calibrated decision rule."""
    cal = fit_calibration(logits, labels, log_prior)
    pred = cal.decide(cal.probabilities(logits))
    acc, bal = float(np.mean(pred == labels)), balanced_accuracy(labels, pred)
    return {"val_cal_accuracy": acc, "val_cal_balanced_accuracy": bal, "val_score": 0.5 * (acc + bal),
            "val_decision_weight": cal.decision_weight}
