"""The one class table: codes, names and SNOMED CT concept ids that are at least well formed."""

from __future__ import annotations

import pytest

from skin_plugin.constants import CLASS_CODES, LESION_CLASSES

# Verhoeff check digit tables (SNOMED CT identifiers end in a Verhoeff check digit).
_D = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
      [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
      [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_P = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
      [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
      [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff_ok(number: str) -> bool:
    c = 0
    for i, digit in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][int(digit)]]
    return c == 0


def snomed_id_well_formed(sctid: str) -> bool:
    """6-18 digits, no leading zero, partition '00'/'10' (a concept), valid check digit."""
    return sctid.isdigit() and 6 <= len(sctid) <= 18 and sctid[0] != "0" and sctid[-3:-1] in ("00", "10") \
        and verhoeff_ok(sctid)


def test_the_checker_knows_good_and_bad_ids():
    from pydicom.sr._snomed_dict import mapping

    known = list(mapping["SCT"])  # the SNOMED CT ids of the DICOM standard
    assert known and all(verhoeff_ok(code) for code in known)
    assert not verhoeff_ok("200619007")  # the dermatofibroma id once used here: not a SNOMED id


@pytest.mark.parametrize("cls", LESION_CLASSES, ids=CLASS_CODES)
def test_every_class_has_a_well_formed_snomed_concept_id(cls):
    assert snomed_id_well_formed(cls.snomed_code), cls
    assert cls.snomed_meaning and cls.name


def test_class_table_is_the_ham10000_order():
    assert CLASS_CODES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert len({c.snomed_code for c in LESION_CLASSES}) == 7
    assert [c.code for c in LESION_CLASSES if c.malignant] == ["akiec", "bcc", "mel"]
