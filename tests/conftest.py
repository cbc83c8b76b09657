"""Shared fixtures: the real HAM10000 folder in ../shared and the bundled samples."""

from __future__ import annotations

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
