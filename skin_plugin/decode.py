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
def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Row i averages input[floor(i*n_in/n_out) : ceil((i+1)*n_in/n_out)] (torch adaptive pooling)."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def area_resize(rgb: np.ndarray, height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 by adaptive average pooling."""
    h, w, c = rgb.shape
    if (h, w) == (height, width):
        return rgb
    rows = _pool_matrix(h, height) @ rgb.reshape(h, w * c).astype(np.float32)
    cols = np.einsum("pw,hwc->hpc", _pool_matrix(w, width), rows.reshape(height, w, c))
    return np.clip(np.rint(cols), 0, 255).astype(np.uint8)


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
