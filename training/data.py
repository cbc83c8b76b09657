"""HAM10000 metadata, the lesion-grouped split, and the decoded-image cache."""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from skin_plugin.constants import CLASS_CODES, INPUT_HEIGHT, INPUT_WIDTH, RESIZE_MODE

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"
DEFAULT_EXTRA_DIR = DEFAULT_DATA_DIR.parent / "extra_derm"
"""Non-HAM dermoscopy images (ISIC 2017, PH2; its README): training only, never validation or test."""
EXTRA_SOURCES = ("ISIC2017", "PH2")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_LEVELS = ("lesion", "image")
"""What a split keeps together: whole lesion groups (every shipped model), or single images (a leaky split,
only for ``training.leakage``, which measures how much such a split inflates the figures)."""


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    dx: str

    @property
    def label(self) -> int:
        return CLASS_CODES.index(self.dx)


def read_metadata(path: Path) -> list[Record]:
    """Read a HAM10000-format metadata CSV (lesion_id,image_id,dx,...)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"lesion_id", "image_id", "dx"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: metadata lacks column(s) {sorted(missing)}")
    unknown = {r["dx"] for r in rows} - set(CLASS_CODES)
    if unknown:
        raise ValueError(f"{path}: unknown dx value(s) {sorted(unknown)}; expected {CLASS_CODES}")
    return [Record(r["image_id"], r["lesion_id"], r["dx"]) for r in rows]


def read_extra_metadata(path: Path, sources: list[str]) -> list[Record]:
    """The images of ``sources`` listed in ``extra_derm/metadata.csv`` (image_id,dx,source,...,lesion_id)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] in sources]
    unknown = {r["dx"] for r in rows} - set(CLASS_CODES)
    if unknown:
        raise ValueError(f"{path}: unknown dx value(s) {sorted(unknown)}; expected {CLASS_CODES}")
    missing = set(sources) - {r["source"] for r in rows}
    if missing:
        raise ValueError(f"{path}: no image of source(s) {sorted(missing)}")
    return [Record(r["image_id"], r["lesion_id"], r["dx"]) for r in rows]


def write_source_metadata(metadata: Path, source: str, out: Path) -> Path:
    """Write the rows of one ``source`` of a metadata CSV that has that column (``extra_derm``) to ``out``."""
    with open(metadata, newline="") as f:
        reader = csv.DictReader(f)
        if "source" not in (reader.fieldnames or []):
            raise ValueError(f"{metadata} has no source column: --source applies to extra_derm/metadata.csv")
        rows = [r for r in reader if r["source"] == source]
        fields = reader.fieldnames
    if not rows:
        raise ValueError(f"{metadata}: no image of source {source!r}")
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out


def lesion_groups(records: list[Record], duplicates_csv: Path | None) -> dict[str, str]:
    """Map each lesion_id to a group id; lesions listed together as missed duplicates share one."""
    parent = {r.lesion_id: r.lesion_id for r in records}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    if duplicates_csv is not None and duplicates_csv.exists():
        lesion_of = {r.image_id: r.lesion_id for r in records}
        with open(duplicates_csv, newline="") as f:
            for row in csv.reader(f):
                image_ids = (Path(c.strip()).stem for c in row)
                ids = [lesion_of[i] for i in image_ids if i in lesion_of]
                for other in ids[1:]:
                    parent[find(other)] = find(ids[0])
    return {lesion: find(lesion) for lesion in parent}


def split_level(training: dict) -> str:
    """The split level of a training config (a run's or a release's); runs before the option were lesion-level."""
    return training.get("split_level", "lesion")


def make_split(records: list[Record], duplicates_csv: Path | None, seed: int = 0,
               level: str = "lesion") -> dict[str, str]:
    """Assign every image to train/val/test, stratified by class: whole lesion groups at ``level="lesion"``;
    at ``level="image"`` each image on its own, so images of one lesion may land in different splits."""
    if level not in SPLIT_LEVELS:
        raise ValueError(f"split level {level!r}: choose one of {', '.join(SPLIT_LEVELS)}")
    group_of = (lesion_groups(records, duplicates_csv) if level == "lesion"
                else {r.image_id: r.image_id for r in records})
    key = (lambda r: r.lesion_id) if level == "lesion" else (lambda r: r.image_id)
    groups_by_class: dict[str, list[str]] = defaultdict(list)
    group_dx: dict[str, str] = {}
    for r in records:
        g = group_of[key(r)]
        if g not in group_dx:
            group_dx[g] = r.dx
            groups_by_class[r.dx].append(g)
    rng = random.Random(seed)
    split_of_group: dict[str, str] = {}
    for dx in CLASS_CODES:
        groups = sorted(groups_by_class[dx])
        rng.shuffle(groups)
        n = len(groups)
        n_val = round(n * SPLIT_FRACTIONS["val"])
        n_test = round(n * SPLIT_FRACTIONS["test"])
        for i, g in enumerate(groups):
            split_of_group[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return {r.image_id: split_of_group[group_of[key(r)]] for r in records}


def write_split(path: Path, records: list[Record], split: dict[str, str],
                duplicates_csv: Path | None) -> None:
    group_of = lesion_groups(records, duplicates_csv)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "lesion_id", "lesion_group", "dx", "split"])
        for r in sorted(records, key=lambda r: r.image_id):
            w.writerow([r.image_id, r.lesion_id, group_of[r.lesion_id], r.dx, split[r.image_id]])


def read_split(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["image_id"]: row["split"] for row in csv.DictReader(f)}


def image_path(images_dir: Path, image_id: str) -> Path:
    return images_dir / f"{image_id}.jpg"


def decode_all(records: list[Record], images_dir: Path, cache_dir: Path | None = None) -> torch.Tensor:
    """Decode every image with the MONAI ``decode_transforms`` into a uint8 (N, 3, H, W) tensor.

    The result is cached as ``.npy`` keyed by the image list and the preprocessing constants.
    """
    from skin_plugin.transforms import decode_transforms

    key = hashlib.sha256(
        ("|".join(r.image_id for r in records)
         + f"|{images_dir.resolve()}|{INPUT_HEIGHT}x{INPUT_WIDTH}|{RESIZE_MODE}").encode()
    ).hexdigest()[:16]
    cache = cache_dir / f"decoded-{key}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        return torch.from_numpy(np.load(cache))
    decode = decode_transforms()
    out = np.empty((len(records), 3, INPUT_HEIGHT, INPUT_WIDTH), dtype=np.uint8)
    for i, r in enumerate(track(records, description="Decoding images")):
        path = image_path(images_dir, r.image_id)
        if not path.exists():
            raise FileNotFoundError(f"image {r.image_id} listed in the metadata has no file {path}")
        out[i] = np.asarray(decode(str(path)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.rename(cache)
    return torch.from_numpy(out)
