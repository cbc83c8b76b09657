"""``skin-plugin evaluate``: score a HAM10000-format folder and write the metrics JSON and plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from skin_plugin.classifier import Classifier, model_identity
from skin_plugin.constants import CLASS_CODES
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


def evaluate(metadata: Path, images_dir: Path, classifier: Classifier, json_out: Path,
             split_file: Path | None = None, split: str | None = None, bootstrap: int = 1000) -> dict:
    """Score the set, write ``json_out`` and a confusion-matrix PNG beside it; return the report."""
    data = load_evaluation_set(metadata, images_dir, split_file, split)
    pred = classifier.predict(data.images)
    y = np.array([r.label for r in data.records])
    report = classification_report(y, pred.probabilities, pred.labels)
    groups = lesion_groups(data.records, None)
    group_ids = np.array([groups[r.lesion_id] for r in data.records])
    if bootstrap:
        report["ci95"] = bootstrap_intervals(y, pred.probabilities, pred.labels, group_ids, bootstrap)
    identity = asdict(model_identity(classifier))
    report.update({"model": identity, "metadata": str(metadata), "split": split, "skipped": data.skipped})
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    png = json_out.with_suffix(".confusion.png")
    plot_confusion(np.array(report["confusion_matrix"]), png,
                   f"{identity['name']} {identity['version']} {identity['backend']} {identity['precision']}: "
                   f"{report['n_images']} images"
                   + (f" ({split})" if split else ""))
    return report
