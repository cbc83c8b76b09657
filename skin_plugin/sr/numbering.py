"""Series and Instance Numbers of the SRs, as a PACS viewer lists them.

All SRs of one study (and model version) form one series, numbered ``SKIN_SR_SERIES_NUMBER`` (default
:data:`DEFAULT_SR_SERIES_NUMBER`, 9000: after any acquisition series, so the results list last and are
never mistaken for the photo series). Within it, each SR's Instance Number is derived from the source
image it reports on: the same image always gives the same number (a re-run rewrites, never renumbers), SRs
sort like their images, and SRs of different images of a study get different numbers:

- a single-frame image, Series Number S (1-10000), Instance Number I (1-99999): ``(S - 1) * 100000 + I``
  (image 3 of series 1 -> SR 3; image 3 of series 2 -> SR 100003);
- frame F (1-9999) of a multi-frame image, S 1-100, I 1-999:
  ``1000000000 + (S - 1) * 10000000 + I * 10000 + F``;
- any other image (a number missing, zero, negative or out of these ranges):
  ``2000000000 +`` a hash of its SOP Instance UID and frame modulo 147483647 (distinct with
  probability ~1 - k^2 / 3e8 for k such images in one study; never equal to a number of the other rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.env_settings import env_int
from skin_plugin.results import ScoreResult

SERIES_NUMBER_VARIABLE = "SKIN_SR_SERIES_NUMBER"
DEFAULT_SR_SERIES_NUMBER = 9000
MAX_IS = 2**31 - 1
"""Largest value of an Integer String (IS) element."""
_MULTI_FRAME_BASE = 1_000_000_000
_HASHED_BASE = 2_000_000_000
_HASHED_SPAN = MAX_IS - _HASHED_BASE


def sr_series_number(env: Mapping[str, str] | None = None) -> int:
    """``SKIN_SR_SERIES_NUMBER`` (an integer from 1 to 2147483647) or the default, 9000."""
    return env_int(SERIES_NUMBER_VARIABLE, DEFAULT_SR_SERIES_NUMBER, 1, MAX_IS,
                   f"must be an integer from 1 to {MAX_IS}", env)


SR_SERIES_NUMBER = sr_series_number()
"""The SR Series Number of this process (read once, at import: a bad setting stops a worker at start)."""


def sr_instance_number(source: DicomSourceInfo, frame: int = 0) -> int:
    """Instance Number of the SR of frame ``frame`` (0-based) of ``source``: see the module's rules."""
    s, i = source.series_number, source.instance_number
    if s is not None and i is not None:
        if source.number_of_frames <= 1 and 1 <= s <= 10_000 and 1 <= i <= 99_999:
            return (s - 1) * 100_000 + i
        if source.number_of_frames > 1 and 1 <= s <= 100 and 1 <= i <= 999 and 0 <= frame < 9_999:
            return _MULTI_FRAME_BASE + (s - 1) * 10_000_000 + i * 10_000 + frame + 1
    digest = hashlib.sha256(f"{source.sop_instance_uid}/{frame}".encode()).digest()
    return _HASHED_BASE + int.from_bytes(digest[:8], "big") % _HASHED_SPAN


def numbers(result: ScoreResult, series_number: int | None = None,
            instance_number: int | None = None) -> tuple[int, int]:
    """(Series Number, Instance Number) of the SR of ``result``: the given ones or the defaults, checked."""
    assert result.source is not None
    series = SR_SERIES_NUMBER if series_number is None else series_number
    instance = sr_instance_number(result.source, result.frame) if instance_number is None else instance_number
    if not (1 <= series <= MAX_IS and 1 <= instance <= MAX_IS):
        raise ValueError(f"series and instance numbers must be from 1 to {MAX_IS}, not {series}, {instance}")
    return series, instance
