"""Fast image decoding to model size without torch or MONAI (the serving path).

Equal to ``skin_plugin.transforms.decode_transforms`` (MONAI ``Resize(mode="area")`` is torch's
adaptive average pooling) up to rounding, proven by ``tests/test_decode.py``. Large JPEGs are first
reduced in the DCT domain (``Image.draft``), so a 600x450 photo costs a fraction of a full decode.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH

MAX_IMAGE_PIXELS = 100_000_000
"""Decompression-bomb guard: refuse images larger than this many pixels."""


class ImageDecodeError(ValueError):
    """The input is not a readable image of acceptable size."""


@lru_cache(maxsize=64)
def _windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Window i covers input[floor(i*n_in/n_out) : ceil((i+1)*n_in/n_out)] (torch adaptive pooling)."""
    i = np.arange(n_out)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def _window_sums(a: np.ndarray, axis: int, n_out: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Sums over each pooling window along ``axis`` (a few gathers: windows span only a few pixels)."""
    n_in = a.shape[axis]
    start, end = _windows(n_in, n_out)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, 1)
    padded = np.pad(a, pad)  # index n_in is a zero row/column for windows shorter than the longest
    total = np.take(padded, start, axis=axis).astype(dtype)
    for k in range(1, int((end - start).max())):
        total += np.take(padded, np.where(start + k < end, start + k, n_in), axis=axis)
    return total, end - start


def area_resize(rgb: np.ndarray, height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 by adaptive average pooling (exact integer sums)."""
    h, w, _ = rgb.shape
    if (h, w) == (height, width):
        return rgb
    longest = int(np.diff(_windows(h, height), axis=0).max() * np.diff(_windows(w, width), axis=0).max())
    dtype = np.uint16 if longest * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows, row_len = _window_sums(rgb, 0, height, dtype)
    sums, col_len = _window_sums(rows, 1, width, dtype)
    inv_area = (1.0 / (row_len[:, None] * col_len[None, :])).astype(np.float32)[..., None]
    return np.rint(sums * inv_area).astype(np.uint8)


def decode_image(source: str | Path | BinaryIO | Image.Image) -> np.ndarray:
    """Any PIL-readable photo -> uint8 (INPUT_HEIGHT, INPUT_WIDTH, 3), RGB."""
    try:
        image = source if isinstance(source, Image.Image) else Image.open(source)
        w, h = image.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ImageDecodeError(f"image of {w}x{h} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit")
        if image.format == "JPEG":
            # DCT-domain reduction (1/2, 1/4, 1/8) to the smallest scale still >= the model size.
            image.draft("RGB", (INPUT_WIDTH, INPUT_HEIGHT))
        rgb = np.asarray(image.convert("RGB"))
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"unreadable image: {exc}") from exc
    return area_resize(rgb)
