"""Integer settings of the serving core read from the environment (the worker settings are in workers/config)."""

from __future__ import annotations

import os
from collections.abc import Mapping


def env_int(name: str, default: int, low: int, high: int, requirement: str,
            env: Mapping[str, str] | None = None) -> int:
    """``name`` from ``env`` (default: the process environment) as an integer in ``low..high``; ``default``
    when unset or blank. Anything else raises ``ValueError`` saying ``name`` ``requirement``."""
    value = (os.environ if env is None else env).get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"{name} {requirement}, not {value[:40]!r}")
    return number
