"""``skin-plugin evaluate``: score a HAM10000-format folder and write the metrics JSON and plots (confusion
matrix; malignant-vs-benign ROC with the model's review operating point)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from skin_plugin.classifier import Classifier, model_identity
from skin_plugin.constants import CLASS_CODES
from skin_plugin.review import is_malignant, malignancy_scores
from training.data import Record, image_path, lesion_groups, read_metadata, read_split
from training.metrics import bootstrap_intervals, classification_report

console = Console(stderr=True)


@dataclass
class EvaluationSet:
    records: list[Record]
    images: np.ndarray
    skipped: list[dict]


def load_evaluation_set(metadata: Path, images_dir: Path, split_file: Path | None = None,
                        split: str | None = None) -> EvaluationSet:
    """Decode every listed image with the MONAI decode transforms; unreadable ones are skipped."""
    from skin_plugin.transforms import decode_transforms

    records = read_metadata(metadata)
    if split is not None:
        if split_file is None:
            raise ValueError("--split needs --split-file")
        assignment = read_split(split_file)
        records = [r for r in records if assignment.get(r.image_id) == split]
    decode = decode_transforms()
    kept, arrays, skipped = [], [], []
    for r in track(records, description="Decoding", console=console):
        path = image_path(images_dir, r.image_id)
        try:
            arrays.append(np.asarray(decode(str(path))).transpose(1, 2, 0))  # NHWC like the IR
            kept.append(r)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal
            reason = "file not found" if not path.exists() else f"{type(exc).__name__}: {exc}"
            skipped.append({"image_id": r.image_id, "reason": reason[:200]})
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable image(s); listed in the JSON[/yellow]")
    if not kept:
        raise ValueError(f"no readable images for {metadata} in {images_dir}")
    return EvaluationSet(kept, np.stack(arrays), skipped)


def plot_confusion(cm: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASS_CODES)), CLASS_CODES)
    ax.set_yticks(range(len(CLASS_CODES)), CLASS_CODES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalised (recall)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_malignant_roc(y_true: np.ndarray, probs: np.ndarray, malignant: dict, path: Path, title: str) -> None:
    """ROC of the malignancy score against malignant vs benign truth, with the operating point and the
    whole review flag marked (``malignant``: the report's ``malignant`` section)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    truth = is_malignant(y_true)
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    if malignant["auc"] is not None:
        fpr, tpr, _ = roc_curve(truth, malignancy_scores(probs))
        ax.plot(fpr, tpr, color="#1f3a4d", label=f"malignancy score, AUC {malignant['auc']:.3f}")
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--")
    marks = [("operating_point", dict(marker="o", color="#c62828", ms=7),
              f"operating point: score ≥ {malignant['threshold']}"),
             ("review_flag", dict(marker="s", color="#e65100", ms=13, mfc="none", mew=2), "review flag (any reason)")]
    for key, style, label in marks:
        point = malignant.get(key)
        if point and point["sensitivity"] is not None and point["specificity"] is not None:
            ax.plot(1 - point["specificity"], point["sensitivity"], ls="none", **style,
                    label=f"{label}: sens {point['sensitivity']:.1%}, spec {point['specificity']:.1%}, "
                          f"{point['flag_rate']:.0%} flagged")
    ax.set_xlabel("1 − specificity (benign images flagged)")
    ax.set_ylabel("sensitivity (malignant images flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(metadata: Path, images_dir: Path, classifier: Classifier, json_out: Path,
             split_file: Path | None = None, split: str | None = None, bootstrap: int = 1000) -> dict:
    """Score the set, write ``json_out`` and, beside it, a confusion-matrix PNG and the malignant-vs-benign
    ROC (``.malignant_roc.png``) at the classifier's review operating point; return the report."""
    data = load_evaluation_set(metadata, images_dir, split_file, split)
    pred = classifier.predict(data.images)
    y = np.array([r.label for r in data.records])
    model = model_identity(classifier)
    report = classification_report(y, pred.probabilities, pred.labels, model.review)
    groups = lesion_groups(data.records, None)
    group_ids = np.array([groups[r.lesion_id] for r in data.records])
    if bootstrap:
        report["ci95"] = bootstrap_intervals(y, pred.probabilities, pred.labels, group_ids, bootstrap,
                                             thresholds=model.review)
    identity = model.to_dict()
    report.update({"model": identity, "metadata": str(metadata), "split": split, "skipped": data.skipped})
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    name = f"{identity['name']} {identity['version']} {identity['backend']} {identity['precision']}"
    where = f"{report['n_images']} images" + (f" ({split})" if split else "")
    plot_confusion(np.array(report["confusion_matrix"]), json_out.with_suffix(".confusion.png"), f"{name}: {where}")
    plot_malignant_roc(y, pred.probabilities, report["malignant"], json_out.with_suffix(".malignant_roc.png"),
                       f"{name}: malignant vs benign, {where}")
    return report
