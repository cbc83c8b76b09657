"""Shared fixtures: the real HAM10000 folder in ../shared and the bundled samples."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from training.data import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "fixtures" / "samples"


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    if not (DEFAULT_DATA_DIR / "metadata.csv").exists():
        pytest.fail(f"HAM10000 data not found at {DEFAULT_DATA_DIR} (../shared must sit beside the repo)")
    return DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


FULLRES = ROOT.parent / "shared" / "data" / "ham10000_fullres" / "images"
TEST_REDIS_DB = int(os.environ.get("SKIN_TEST_REDIS_DB", "13"))
"""Database of the machine's Redis (127.0.0.1:6379) used by the queue tests; flushed around each test."""


@pytest.fixture()
def redis_url():
    import redis

    client = redis.Redis(port=6379, db=TEST_REDIS_DB)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    client.flushdb()


@pytest.fixture(scope="session")
def fullres_dicoms(tmp_path_factory) -> list[Path]:
    """The 150 full-resolution (600x450) HAM10000 photos as Dermoscopic Photography DICOM files."""
    from skin_plugin.dicom.convert import convert_files

    if not FULLRES.is_dir():
        pytest.fail(f"{FULLRES} not found (../shared must sit beside the repo)")
    out = tmp_path_factory.mktemp("fullres-dicom")
    return sorted(c.path for c in convert_files([FULLRES], out))


SMALL_HAM_PER_CLASS = 24


@pytest.fixture(scope="session")
def small_ham(ham_dir, tmp_path_factory) -> Path:
    """A HAM10000-format folder with a few images per class (images linked, not copied)."""
    root = tmp_path_factory.mktemp("ham_small")
    (root / "images").mkdir()
    taken: dict[str, int] = {}
    with open(ham_dir / "metadata.csv") as f, open(root / "metadata.csv", "w", newline="") as out:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if taken.get(row["dx"], 0) < SMALL_HAM_PER_CLASS:
                taken[row["dx"]] = taken.get(row["dx"], 0) + 1
                writer.writerow(row)
                name = f"{row['image_id']}.jpg"
                (root / "images" / name).symlink_to(ham_dir / "images" / name)
    return root
