"""Fast image decoding to model size without torch or MONAI (the serving path).

Equal to ``skin_plugin.transforms.decode_transforms`` (MONAI ``Resize(mode="area")`` is torch's
adaptive average pooling) up to rounding, proven by ``tests/test_decode.py``. Large JPEGs are first
reduced in the DCT domain by a power of two, so a 600x450 photo costs a fraction of a full decode.
Colour JPEG streams are decoded by libjpeg-turbo through simplejpeg (no PIL image objects: about
0.1 ms less per image); anything it does not take (greyscale, CMYK, unusual subsampling, corrupt
data) goes through PIL's ``Image.draft`` path, which reduces by the same scale and gives the same
pixels, and which names the problem when the data is bad.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
import simplejpeg
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


@lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
    """Index k of each window (its k-th pixel), or n_in (a zero pixel) where the window is shorter."""
    start, end = _windows(n_in, n_out)
    return tuple(np.where(start + k < end, start + k, n_in) for k in range(int((end - start).max())))


@lru_cache(maxsize=64)
def _inverse_areas(h: int, w: int, height: int, width: int) -> np.ndarray:
    """1 / (window height x window width) per output pixel, repeated over the 3 channels."""
    (r0, r1), (c0, c1) = _windows(h, height), _windows(w, width)
    rows, cols = r1 - r0, c1 - c0
    return np.ascontiguousarray(np.broadcast_to(
        (1.0 / (rows[:, None] * cols[None, :])).astype(np.float32)[..., None], (height, width, 3)))


def _window_sums(a: np.ndarray, axis: int, n_out: int, dtype: type) -> np.ndarray:
    """Sums over each pooling window along ``axis`` (a few gathers: windows span only a few pixels)."""
    zero_shape = list(a.shape)
    zero_shape[axis] = 1
    padded = np.concatenate([a, np.zeros(zero_shape, a.dtype)], axis=axis)  # the zero pixel at n_in
    taps = _taps(a.shape[axis], n_out)
    total = np.take(padded, taps[0], axis=axis).astype(dtype)
    for index in taps[1:]:
        total += np.take(padded, index, axis=axis)
    return total


def area_resize(rgb: np.ndarray, height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 by adaptive average pooling (exact integer sums)."""
    h, w, _ = rgb.shape
    if (h, w) == (height, width):
        return rgb
    longest = len(_taps(h, height)) * len(_taps(w, width))
    dtype = np.uint16 if longest * 255 <= np.iinfo(np.uint16).max else np.uint32
    sums = _window_sums(_window_sums(rgb, 0, height, dtype), 1, width, dtype)
    out = np.multiply(sums, _inverse_areas(h, w, height, width), dtype=np.float32)
    return np.rint(out, out=out).astype(np.uint8)


JPEG_SOI = b"\xff\xd8\xff"


def dct_scale(width: int, height: int) -> int:
    """The JPEG DCT reduction (8, 4, 2 or 1) that PIL's ``Image.draft`` picks for the model size:
    the largest that keeps the image at least as large as the model input."""
    fit = min(width // INPUT_WIDTH, height // INPUT_HEIGHT)
    return next(r for r in (8, 4, 2, 1) if fit >= r or r == 1)


def decode_jpeg_fast(stream: bytes) -> np.ndarray | None:
    """A colour JPEG stream -> model-size uint8 RGB by libjpeg-turbo at the ``dct_scale`` reduction.

    None when this path does not take the stream (not YCbCr/RGB, or libjpeg-turbo refuses it);
    the caller then uses PIL, which reports what is wrong with a bad stream.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(stream)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "RGB"):
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"image of {width}x{height} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit")
    r = dct_scale(width, height)
    try:
        rgb = simplejpeg.decode_jpeg(stream, "RGB", min_height=-(-height // r), min_width=-(-width // r))
    except ValueError:
        return None
    return area_resize(rgb)


def decode_image(source: str | Path | BinaryIO | bytes | Image.Image) -> np.ndarray:
    """Any PIL-readable photo (path, file object, bytes or open image) -> uint8 (INPUT_HEIGHT, INPUT_WIDTH, 3)."""
    if not isinstance(source, Image.Image):
        data = source if isinstance(source, bytes) else _read(source)
        if data.startswith(JPEG_SOI) and (fast := decode_jpeg_fast(data)) is not None:
            return fast
        source = BytesIO(data)
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


def _read(source: str | Path | BinaryIO) -> bytes:
    try:
        if isinstance(source, str | Path):
            return Path(source).read_bytes()
        return source.read()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable image: {exc}") from exc
