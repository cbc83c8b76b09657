"""MONAI preprocessing: one definition for training and inference; batched augmentation."""

import numpy as np
import torch

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.transforms import (
    BatchAugment,
    decode_transforms,
    inference_transforms,
    normalize_batch,
    normalize_transforms,
)


def test_inference_transforms_give_model_input(samples_dir):
    path = str(next(samples_dir.glob("*.jpg")))
    x = inference_transforms()(path)
    assert tuple(x.shape) == (3, INPUT_HEIGHT, INPUT_WIDTH) and x.dtype == torch.float32
    assert -4 < float(x.mean()) < 4


def test_inference_is_decode_then_normalize(samples_dir):
    path = str(next(samples_dir.glob("*.jpg")))
    u8 = decode_transforms()(path)
    assert u8.dtype == torch.uint8
    assert torch.equal(torch.as_tensor(inference_transforms()(path)),
                       torch.as_tensor(normalize_transforms()(u8)))


def test_batch_normalization_equals_monai_per_image(samples_dir):
    """Training normalises whole batches; it must equal the MONAI per-image transforms exactly."""
    decode = decode_transforms()
    batch = torch.stack([torch.as_tensor(decode(str(p))) for p in sorted(samples_dir.glob("*.jpg"))])
    fast = normalize_batch(batch)
    ref = torch.stack([torch.as_tensor(normalize_transforms()(img)) for img in batch])
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=0)


def test_batch_augment_randomises_per_image_and_is_seeded():
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, INPUT_HEIGHT, INPUT_WIDTH),
                                                           dtype=np.uint8))
    same = x[:1].repeat(4, 1, 1, 1)
    a = BatchAugment(seed=3)(same)
    assert a.shape == same.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 255
    assert not torch.allclose(a[0], a[1]), "each image of a batch gets its own parameters"
    torch.testing.assert_close(a, BatchAugment(seed=3)(same))


def test_batch_augment_without_randomness_is_identity():
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, INPUT_HEIGHT, INPUT_WIDTH),
                                                           dtype=np.uint8))
    aug = BatchAugment(max_rotation_deg=0, scale_range=(1, 1), max_shift=0, brightness=0, contrast=0,
                       saturation=0, channel_gain=0)
    out = aug(x)
    # Only flips remain: the result equals the input under some flip.
    for i in range(2):
        views = [x[i], x[i].flip(2), x[i].flip(1), x[i].flip(1, 2)]
        assert min(float((out[i] - v.float()).abs().max()) for v in views) < 0.01  # of 255
