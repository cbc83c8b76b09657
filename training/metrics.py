"""Classification metrics for the evaluation report (numpy + scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from skin_plugin.constants import CLASS_CODES, MELANOMA_INDEX, NUM_CLASSES
from skin_plugin.review import (
    MALIGNANT_CODES,
    REVIEW_REASONS,
    ReviewThresholds,
    is_malignant,
    malignancy_scores,
    reason_masks,
)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of a one-vs-rest score, or None when only one class is present."""
    return float(roc_auc_score(y_true, score)) if 0 < y_true.sum() < len(y_true) else None


def _rate(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def flag_figures(flag: np.ndarray, y_true: np.ndarray) -> dict[str, float | None]:
    """Malignant sensitivity, specificity, flag rate and melanoma sensitivity of a per-image flag."""
    truth = is_malignant(y_true)
    return {"sensitivity": _rate(flag[truth]), "specificity": _rate(~flag[~truth]), "flag_rate": _rate(flag),
            "mel_sensitivity": _rate(flag[y_true == MELANOMA_INDEX])}


def malignant_report(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray,
                     thresholds: ReviewThresholds) -> dict:
    """Malignant vs benign: AUC of the malignancy score; at the operating point (``thresholds.malignancy``,
    absent if None) and for the whole review flag (every reason), sensitivity, specificity, flag rate and
    melanoma sensitivity."""
    masks = reason_masks(probs, y_pred, thresholds)
    report = {
        "classes": list(MALIGNANT_CODES), "n_malignant": int(is_malignant(y_true).sum()),
        "auc": binary_auc(is_malignant(y_true).astype(int), malignancy_scores(probs)),
        "threshold": thresholds.malignancy, "target_sensitivity": thresholds.target_sensitivity,
    }
    if thresholds.malignancy is not None:
        report["operating_point"] = flag_figures(masks["malignancy_score"], y_true)
    report["review_flag"] = {**flag_figures(np.logical_or.reduce(list(masks.values())), y_true),
                             "reasons": {r: int(masks[r].sum()) for r in REVIEW_REASONS},
                             "thresholds": thresholds.to_dict()}
    return report


def classification_report(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray,
                          thresholds: ReviewThresholds | None = None) -> dict:
    """All metrics of ``skin-plugin evaluate`` for labels, calibrated probabilities and decisions; the
    malignant-vs-benign figures use the review ``thresholds`` (default: no operating point)."""
    cm = confusion_matrix(y_true, y_pred, labels=list(range(NUM_CLASSES)))
    per_class = {}
    for c, code in enumerate(CLASS_CODES):
        tp = cm[c, c]
        fn = cm[c].sum() - tp
        fp = cm[:, c].sum() - tp
        tn = cm.sum() - tp - fn - fp
        sens = tp / (tp + fn) if tp + fn else None
        prec = tp / (tp + fp) if tp + fp else None
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        per_class[code] = {
            "sensitivity": None if sens is None else float(sens),
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
            "precision": None if prec is None else float(prec),
            "f1": None if f1 is None else float(f1),
            "auc": binary_auc((y_true == c).astype(int), probs[:, c]),
            "support": int(cm[c].sum()),
        }
    return {
        "n_images": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "macro_f1": float(f1_score(y_true, y_pred, labels=sorted(set(y_true.tolist())), average="macro")),
        "auc": {code: per_class[code]["auc"] for code in CLASS_CODES},
        "mel_auc": per_class[CLASS_CODES[MELANOMA_INDEX]]["auc"],
        "ece": expected_calibration_error(y_true, probs),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(CLASS_CODES),
        "malignant": malignant_report(y_true, probs, y_pred, thresholds or ReviewThresholds()),
    }


def bootstrap_intervals(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray, groups: np.ndarray,
                        n: int = 1000, seed: int = 0, thresholds: ReviewThresholds | None = None
                        ) -> dict[str, list[float]]:
    """95% percentile intervals, resampling whole lesions (images of one lesion are not independent).

    Besides the headline figures: ``malignant_auc``; with an operating point in ``thresholds``,
    ``malignant_<figure>`` at it and ``review_<figure>`` for the whole review flag (``flag_figures``).
    """
    thresholds = thresholds or ReviewThresholds()
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    mel = (y_true == MELANOMA_INDEX).astype(int)
    malignant, score = is_malignant(y_true).astype(int), malignancy_scores(probs)
    masks = reason_masks(probs, y_pred, thresholds)
    flags = {} if thresholds.malignancy is None else {
        "malignant": masks["malignancy_score"], "review": np.logical_or.reduce(list(masks.values()))}
    samples: dict[str, list[float]] = {"accuracy": [], "balanced_accuracy": [], "macro_f1": [], "mel_auc": [],
                                       "malignant_auc": []}
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        yt, yp = y_true[idx], y_pred[idx]
        samples["accuracy"].append(float(np.mean(yt == yp)))
        samples["balanced_accuracy"].append(balanced_accuracy(yt, yp))
        samples["macro_f1"].append(float(f1_score(yt, yp, labels=sorted(set(yt.tolist())), average="macro")))
        for key, auc in (("mel_auc", binary_auc(mel[idx], probs[idx, MELANOMA_INDEX])),
                         ("malignant_auc", binary_auc(malignant[idx], score[idx]))):
            if auc is not None:
                samples[key].append(auc)
        for name, flag in flags.items():
            for figure, value in flag_figures(flag[idx], yt).items():
                if value is not None:
                    samples.setdefault(f"{name}_{figure}", []).append(value)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in samples.items() if v}
