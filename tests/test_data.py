"""The lesion-grouped split: no lesion (or missed duplicate pair) crosses splits; seeded; stratified."""

import csv
from collections import Counter, defaultdict

import pytest

from skin_plugin.constants import CLASS_CODES
from skin_plugin.release import RELEASE_DIR
from training.data import lesion_groups, make_split, read_metadata, read_split


def _assert_grouped(records, split, dup_csv):
    groups = lesion_groups(records, dup_csv)
    seen = defaultdict(set)
    for r in records:
        seen[groups[r.lesion_id]].add(split[r.image_id])
    crossing = {g: s for g, s in seen.items() if len(s) > 1}
    assert not crossing, f"lesion groups in several splits: {list(crossing)[:5]}"


def test_split_keeps_lesions_and_duplicates_together(ham_dir):
    records = read_metadata(ham_dir / "metadata.csv")
    split = make_split(records, ham_dir / "missed_duplicates.csv", seed=0)
    _assert_grouped(records, split, ham_dir / "missed_duplicates.csv")
    lesion_split = defaultdict(set)
    for r in records:
        lesion_split[r.lesion_id].add(split[r.image_id])
    assert all(len(s) == 1 for s in lesion_split.values())
    # Every missed-duplicate pair present here lands on one side.
    by_image = {r.image_id: split[r.image_id] for r in records}
    with open(ham_dir / "missed_duplicates.csv") as f:
        for row in csv.DictReader(f):
            a, b = row["from_img"].removesuffix(".jpg"), row["to_img"].removesuffix(".jpg")
            if a in by_image and b in by_image:
                assert by_image[a] == by_image[b], (a, b)


def test_split_without_duplicate_merging_would_leak(ham_dir):
    """The duplicate file matters: ignoring it puts some pairs on both sides (so the test above can fail)."""
    records = read_metadata(ham_dir / "metadata.csv")
    split = make_split(records, None, seed=0)
    by_image = {r.image_id: split[r.image_id] for r in records}
    with open(ham_dir / "missed_duplicates.csv") as f:
        pairs = [(r["from_img"][:-4], r["to_img"][:-4]) for r in csv.DictReader(f)]
    assert any(by_image.get(a) != by_image.get(b) for a, b in pairs if a in by_image and b in by_image)


def test_split_is_seeded_and_stratified(ham_dir):
    records = read_metadata(ham_dir / "metadata.csv")
    dup = ham_dir / "missed_duplicates.csv"
    assert make_split(records, dup, seed=0) == make_split(records, dup, seed=0)
    assert make_split(records, dup, seed=0) != make_split(records, dup, seed=1)
    split = make_split(records, dup, seed=0)
    counts = Counter((split[r.image_id], r.dx) for r in records)
    for dx in CLASS_CODES:
        total = sum(counts[(s, dx)] for s in ("train", "val", "test"))
        for s, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
            assert abs(counts[(s, dx)] / total - frac) < 0.08, (dx, s)


def test_shipped_split_file_is_the_seeded_split(ham_dir):
    records = read_metadata(ham_dir / "metadata.csv")
    shipped = read_split(RELEASE_DIR / "split.csv")
    assert shipped == make_split(records, ham_dir / "missed_duplicates.csv", seed=0)
    _assert_grouped(records, shipped, ham_dir / "missed_duplicates.csv")


def test_an_image_level_split_lets_lesions_cross_and_keeps_the_class_fractions(ham_dir):
    records = read_metadata(ham_dir / "metadata.csv")
    split = make_split(records, ham_dir / "missed_duplicates.csv", seed=0, level="image")
    sides = defaultdict(set)
    for r in records:
        sides[r.lesion_id].add(split[r.image_id])
    assert sum(len(s) > 1 for s in sides.values()) > 100
    by_class = Counter((r.dx, split[r.image_id]) for r in records)
    for dx in CLASS_CODES:
        n = sum(by_class[(dx, s)] for s in ("train", "val", "test"))
        assert abs(by_class[(dx, "val")] - 0.15 * n) <= 1


def test_an_unknown_split_level_is_refused(ham_dir):
    with pytest.raises(ValueError, match="split level 'patient'"):
        make_split(read_metadata(ham_dir / "metadata.csv"), None, level="patient")
