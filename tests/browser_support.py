"""Headless Chromium (Debian's, installed by ``make system-deps``) for page screenshots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def chromium_screenshot(url: str, png: Path, profile: Path, width: int = 1200, height: int = 1600) -> str:
    """Render ``url`` to ``png``; return Chromium's stderr (for assertion messages)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe is not None, "chromium is not installed (make system-deps)"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180).stderr
