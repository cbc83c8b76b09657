"""The serving decoder (PIL + numpy) equals the MONAI decode transforms; bad inputs fail clearly."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.decode import ImageDecodeError, area_resize, dct_scale, decode_image, decode_jpeg_fast
from skin_plugin.transforms import decode_transforms

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"


def _monai(path: Path) -> np.ndarray:
    return np.asarray(decode_transforms()(str(path))).transpose(1, 2, 0)


def test_fast_decode_equals_monai_on_dataset_images(ham_dir):
    paths = sorted((ham_dir / "images").glob("*.jpg"))[:200]
    diffs = np.stack([np.abs(decode_image(p).astype(int) - _monai(p).astype(int)) for p in paths])
    assert diffs.max() <= 1, "only float rounding at .5 may differ"
    assert (diffs == 0).mean() > 0.999


def test_fast_decode_close_to_monai_on_full_resolution_photos():
    """600x450 JPEGs are reduced in the DCT domain first: close to, not bit-equal with, a full decode."""
    paths = sorted(FULLRES.glob("*.jpg"))[:20]
    assert paths, f"no full-resolution images in {FULLRES}"
    for p in paths:
        fast, ref = decode_image(p).astype(float), _monai(p).astype(float)
        assert fast.shape == (INPUT_HEIGHT, INPUT_WIDTH, 3)
        assert np.abs(fast - ref).mean() < 1.5, p.name


SHAPES = [(450, 600, 3), (225, 300, 3), (150, 200, 3), (90, 100, 3), (1500, 2000, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_area_resize_is_adaptive_average_pooling(shape):
    import torch

    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(rgb).permute(2, 0, 1).float()[None],
                                                  (INPUT_HEIGHT, INPUT_WIDTH))[0].permute(1, 2, 0).numpy()
    assert np.abs(area_resize(rgb).astype(float) - np.rint(ref)).max() <= 1


def test_png_and_grayscale_inputs_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((300, 400), 128, np.uint8), mode="L")
    gray.save(tmp_path / "g.png")
    out = decode_image(tmp_path / "g.png")
    assert out.shape == (INPUT_HEIGHT, INPUT_WIDTH, 3) and (out == 128).all()


@pytest.mark.parametrize("payload", [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_unreadable_inputs_raise_decode_error(payload):
    with pytest.raises(ImageDecodeError):
        decode_image(io.BytesIO(payload))


def test_truncated_jpeg_raises_decode_error(samples_dir):
    data = next(samples_dir.glob("*.jpg")).read_bytes()
    with pytest.raises(ImageDecodeError):
        decode_image(io.BytesIO(data[: len(data) // 3]))


def test_decompression_bomb_is_refused():
    buf = io.BytesIO()
    Image.new("RGB", (12000, 9000)).save(buf, format="PNG")
    buf.seek(0)
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image(buf)


def _pil_draft_decode(data: bytes) -> np.ndarray:
    """The PIL route of ``decode_image`` (an open image skips the libjpeg-turbo path)."""
    return decode_image(Image.open(io.BytesIO(data)))


def test_libjpeg_turbo_path_equals_pil_draft_path(ham_dir):
    """Same DCT scale, same IDCT and upsampling: the two JPEG routes give identical pixels."""
    paths = sorted((ham_dir / "images").glob("*.jpg"))[:30] + sorted(FULLRES.glob("*.jpg"))[:30]
    for p in paths:
        data = p.read_bytes()
        fast = decode_jpeg_fast(data)
        assert fast is not None, p.name
        assert np.array_equal(fast, _pil_draft_decode(data)), p.name


@pytest.mark.parametrize("size", [(600, 450), (200, 150), (1280, 960), (161, 121), (4000, 3000), (100, 80)])
def test_dct_scale_is_the_one_pil_draft_picks(size):
    image = Image.new("RGB", size, (120, 80, 60))
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    opened = Image.open(io.BytesIO(buf.getvalue()))
    opened.draft("RGB", (INPUT_WIDTH, INPUT_HEIGHT))
    r = dct_scale(*size)
    assert opened.size == (-(-size[0] // r), -(-size[1] // r))


def test_greyscale_and_cmyk_jpegs_leave_the_fast_path():
    for mode in ("L", "CMYK"):
        buf = io.BytesIO()
        Image.new(mode, (320, 240)).save(buf, format="JPEG")
        assert decode_jpeg_fast(buf.getvalue()) is None
    rgb = decode_image(io.BytesIO(buf.getvalue()))  # CMYK still decodes, through PIL
    assert rgb.shape == (INPUT_HEIGHT, INPUT_WIDTH, 3)
