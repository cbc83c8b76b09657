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

import sys
import warnings
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
import simplejpeg
from PIL import Image

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.env_settings import env_int

MAX_IMAGE_PIXELS = 100_000_000
"""Decompression-bomb guard: refuse images larger than this many pixels."""
BUDGET_VARIABLE = "SKIN_MAX_DECODED_BYTES"
DEFAULT_MAX_DECODED_BYTES = 128 * 1024 * 1024
"""Default byte budget of one decoded input (rows x columns x samples x bytes per sample x frames):
8-bit RGB up to ~44.7 megapixels, 16-bit RGB up to ~22. Decoding an input at the budget takes 3 to 4
times the budget on top of a worker's ~300 MB: within the shipped 1 GiB worker limit."""


class ImageDecodeError(ValueError):
    """The input is not a readable image of acceptable size."""


class DecodedSizeError(ImageDecodeError):
    """The decoded image would exceed the byte budget (checked from the header, before decoding)."""


def max_decoded_bytes(env: dict[str, str] | None = None) -> int:
    """The byte budget: ``SKIN_MAX_DECODED_BYTES`` (a positive integer) or the default."""
    return env_int(BUDGET_VARIABLE, DEFAULT_MAX_DECODED_BYTES, 1, sys.maxsize,
                   "must be a positive number of bytes", env)


MAX_DECODED_BYTES = max_decoded_bytes()
"""The byte budget of this process (read once, at import: a bad setting stops a worker at start)."""


def check_decoded_size(width: int, height: int, samples: int = 3, bytes_per_sample: int = 1, frames: int = 1,
                       budget: int | None = None) -> None:
    """Raise DecodedSizeError, with the sizes, if the decoded image would not fit the byte budget."""
    budget = MAX_DECODED_BYTES if budget is None else budget
    size = width * height * samples * bytes_per_sample * frames
    if size > budget:
        shown_frames = f" x {frames} frames" if frames != 1 else ""
        raise DecodedSizeError(
            f"decoded image would take {size} bytes ({width}x{height} pixels x {samples} samples x "
            f"{bytes_per_sample} byte(s){shown_frames}), over the {budget}-byte budget ({BUDGET_VARIABLE})")


_BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def check_photo_size(image: Image.Image, budget: int | None = None) -> None:
    """:func:`check_pixel_count` and :func:`check_decoded_size` of an opened (not yet decoded) PIL image."""
    w, h = image.size
    check_pixel_count(w, h)
    bands = len(image.getbands())
    per_band = _BYTES_PER_BAND.get(image.mode, 1)
    samples, per_sample = (3, 1) if bands * per_band <= 3 else (bands, per_band)  # decoded as RGB at least
    check_decoded_size(w, h, samples, per_sample, budget=budget)


def check_pixel_count(width: int, height: int, frames: int = 1) -> None:
    if width * height * frames > MAX_IMAGE_PIXELS:
        shown = f"{frames} frame(s) of " if frames != 1 else "image of "
        raise ImageDecodeError(f"{shown}{width}x{height} pixels exceed the {MAX_IMAGE_PIXELS} pixel limit")


def open_image(source: BinaryIO, formats: tuple[str, ...] | None = None) -> Image.Image:
    """``Image.open`` (header only, nothing decoded); Pillow's decompression-bomb error becomes ours.

    Its warning is silenced: the caller checks the size (:func:`check_photo_size`) before decoding.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(source, formats=formats)
        except Image.DecompressionBombError as exc:
            raise DecodedSizeError(f"image too large: {exc}") from exc


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
    """Sums over each pooling window along ``axis`` (a few gathers: windows span only a few pixels).

    Taps past a window's end (index n_in) add zero; no padded copy of the full-size input is made.
    """
    n_in = a.shape[axis]
    mask_shape = [1] * a.ndim
    mask_shape[axis] = n_out
    total: np.ndarray | None = None
    for index in _taps(n_in, n_out):
        inside = index < n_in
        part = np.take(a, np.where(inside, index, 0), axis=axis)
        if not inside.all():
            part *= inside.reshape(mask_shape).astype(part.dtype)
        if total is None:
            total = part.astype(dtype)
        else:
            total += part
    assert total is not None
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
    check_pixel_count(width, height)
    check_decoded_size(width, height)
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
        image = source if isinstance(source, Image.Image) else open_image(source)
        check_photo_size(image)
        if image.format == "JPEG":
            # DCT-domain reduction (1/2, 1/4, 1/8) to the smallest scale still >= the model size.
            image.draft("RGB", (INPUT_WIDTH, INPUT_HEIGHT))
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
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
