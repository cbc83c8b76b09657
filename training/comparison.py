"""``skin-plugin comparison``: models side by side, each calibrated and given its operating point on validation.

For the model card's "levers" table (what pretrained weights and extra images bought on validation) and the
paper's transfer-learning comparison (the same test split). Each candidate is a training run (packaged into a
scratch folder, exactly as ``skin-plugin package`` would) or an existing release (its operating point chosen
again on its own validation split when it lacks one); nothing here is used to choose the shipped model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skin_plugin.release import MANIFEST_NAME, ModelRelease
from training.data import DEFAULT_DATA_DIR
from training.package import choose_operating_point, package_release
from training.refit import is_refit

SHOWN = ("n_images", "accuracy", "balanced_accuracy", "mel_auc", "malignant")


@dataclass(frozen=True)
class Candidate:
    label: str
    path: Path
    splits: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Candidate:
        """``LABEL=PATH[:SPLIT,SPLIT]``, e.g. ``"LesionCNN 1.1.0=runs/rel110:val,test"`` (default: val)."""
        label, sep, rest = spec.partition("=")
        if not sep or not label or not rest:
            raise ValueError(f"{spec!r}: expected LABEL=PATH[:val,test]")
        path, _, splits = rest.partition(":")
        chosen = tuple(s for s in (splits or "val").split(",") if s)
        if set(chosen) - {"val", "test"}:
            raise ValueError(f"{spec!r}: splits are val and/or test")
        return cls(label, Path(path), chosen)


def _scored_release(candidate: Candidate, out: Path, data_dir: Path, bootstrap: int) -> ModelRelease:
    if (candidate.path / MANIFEST_NAME).exists():
        shutil.copytree(candidate.path, out)
        release = ModelRelease.load(out)
        if not is_refit(release.manifest["training"]) and release.calibration.malignant_threshold is None:
            return choose_operating_point(out, data_dir, bootstrap=bootstrap)
        return release
    return package_release(candidate.path, out, data_dir, bootstrap=bootstrap)


def speed_summary(bench: dict) -> dict:
    """OpenVINO images/s per model, precision and batch from one ``skin-plugin bench`` JSON."""
    rows: dict[str, dict[str, float]] = {}
    for r in bench["rows"]:
        if r["backend"] == "openvino":
            rows.setdefault(r["name"], {})[f"{r['precision']}_b{r['batch']}"] = r["images_per_s"]
    return {"isa": bench.get("onednn_max_cpu_isa", "native"), "images_per_s": rows}


def compare(candidates: list[Candidate], out: Path, data_dir: Path = DEFAULT_DATA_DIR, bootstrap: int = 200,
            command: str = "skin-plugin comparison", benches: list[Path] | None = None) -> dict:
    """Score every candidate on its splits; add the OpenVINO speeds of ``benches``; write ``out`` (JSON)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, candidate in enumerate(candidates):
            release = _scored_release(candidate, Path(tmp) / f"candidate{i}", data_dir, bootstrap)
            metrics = json.loads((release.directory / "metrics.json").read_text())
            missing = set(candidate.splits) - set(metrics)
            if missing:
                raise ValueError(f"{candidate.label}: no held-out {sorted(missing)} figures (a refit trained on "
                                 "validation: show it on test only)")
            tr = release.manifest["training"]
            rows.append({"label": candidate.label, "network": release.network, "pretrained": bool(tr.get("pretrained")),
                         "extra": tr.get("extra_sources", ""), "params": release.manifest["params"],
                         "macs": release.manifest["macs"],
                         "metrics": {s: {k: metrics[s][k] for k in SHOWN} for s in candidate.splits}})
    result = {"command": command, "rows": rows,
              "speed": [{"file": str(b), **speed_summary(json.loads(Path(b).read_text()))} for b in benches or []]}
    out.write_text(json.dumps(result, indent=1))
    return result
