"""Expand command-line inputs (files and folders) into the list of files to score."""

from __future__ import annotations

from pathlib import Path

INPUT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dcm", ".dicom", ""})
"""Files picked up from folders (DICOM files often have no suffix); files named directly are all read."""


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Files named directly, plus the matching files under each folder (sorted, hidden ones skipped)."""
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in INPUT_SUFFIXES)
        else:
            files.append(p)
    return files
