"""MONAI preprocessing shared by training and inference, and batched training augmentation.

``inference_transforms()`` is the one definition of how a photo becomes a model input. Training
caches the output of its decoding part (``decode_transforms()``: uint8, model size) and then applies
``BatchAugment`` and ``normalize_batch`` to whole batches, because per-image MONAI augmentation costs
60-100 ms per image on this class of CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import PILReader
from monai.transforms import (
    CastToType,
    Compose,
    EnsureChannelFirst,
    LoadImage,
    NormalizeIntensity,
    RandomizableTransform,
    Resize,
    ScaleIntensityRange,
    Transform,
)
from PIL import Image

from skin_plugin.constants import (
    CHANNEL_MEAN,
    CHANNEL_STD,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    RESIZE_MODE,
)


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


class RoundToUint8(Transform):
    """Round and clip to 0..255 and cast to uint8: the resized image as an 8-bit picture."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        out = torch.as_tensor(img).round().clamp_(0, 255)
        return CastToType(dtype=torch.uint8)(out)


def decode_transforms() -> Compose:
    """Image file -> uint8 tensor (3, INPUT_HEIGHT, INPUT_WIDTH)."""
    return Compose([
        LoadImage(reader=PILReader(reverse_indexing=False, converter=_to_rgb), image_only=True),
        EnsureChannelFirst(channel_dim=-1),
        Resize(spatial_size=(INPUT_HEIGHT, INPUT_WIDTH), mode=RESIZE_MODE),
        RoundToUint8(),
    ])


def normalize_transforms() -> Compose:
    """uint8 (3, H, W) -> float32, scaled to 0..1 and standardised per channel."""
    return Compose([
        ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0),
        NormalizeIntensity(subtrahend=np.array(CHANNEL_MEAN), divisor=np.array(CHANNEL_STD),
                           channel_wise=True),
        CastToType(dtype=torch.float32),
    ])


def inference_transforms() -> Compose:
    """Image file -> normalised float32 tensor (3, INPUT_HEIGHT, INPUT_WIDTH): the model input."""
    return Compose([*decode_transforms().transforms, *normalize_transforms().transforms])


def normalize_batch(batch: torch.Tensor) -> torch.Tensor:
    """``normalize_transforms`` for a (B, 3, H, W) batch of uint8 or 0..255 values."""
    mean = torch.tensor(CHANNEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CHANNEL_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def flip_views(batch: torch.Tensor) -> list[torch.Tensor]:
    """The four flips of an (N, C, H, W) batch, for flip test-time augmentation (mean of their logits)."""
    return [batch, batch.flip(3), batch.flip(2), batch.flip(2, 3)]


class BatchAugment(RandomizableTransform):
    """Random flips, rotation, scale, shift and colour/brightness jitter on a whole batch.

    Input and output are (B, 3, H, W) float tensors on a 0..255 scale; every image gets its own
    random parameters. Geometry is one ``grid_sample`` per batch with reflection padding
    (dermoscopy has no up or down, so any rotation and both flips are valid).
    """

    def __init__(self, max_rotation_deg: float = 180.0, scale_range: tuple[float, float] = (0.85, 1.25),
                 max_shift: float = 0.1, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, channel_gain: float = 0.05, aspect_jitter: float = 0.0,
                 seed: int = 0) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.max_rotation = math.radians(max_rotation_deg)
        self.scale_range = scale_range
        self.max_shift = max_shift
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.channel_gain = channel_gain
        self.aspect_jitter = aspect_jitter
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=self.generator) * (high - low) + low

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        angle = self._uniform(b, -self.max_rotation, self.max_rotation)
        # Zoom: sample the log-scale uniformly; >1 magnifies (grid spans less of the image).
        lo, hi = (math.log(s) for s in self.scale_range)
        inv_scale = torch.exp(-self._uniform(b, lo, hi))
        flip_x = torch.where(torch.rand(b, generator=self.generator) < 0.5, -1.0, 1.0)
        flip_y = torch.where(torch.rand(b, generator=self.generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
        aspect = w / h  # rotate in pixel space, not in the normalised (non-square) grid space
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = cos * flip_x
        theta[:, 0, 1] = -sin / aspect * flip_y
        theta[:, 1, 0] = sin * aspect * flip_x
        theta[:, 1, 1] = cos * flip_y
        if self.aspect_jitter:
            # Stretch the sampled x range by r and y by 1/r: a frame of another aspect squeezed into 4:3.
            log_r = math.log(1 + self.aspect_jitter)
            r = torch.exp(self._uniform(b, -log_r, log_r)).sqrt()
            theta[:, 0, :2] *= r.unsqueeze(1)
            theta[:, 1, :2] /= r.unsqueeze(1)
        theta[:, :, 2] = self._uniform(b, -self.max_shift, self.max_shift, 2) * 2
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        """Saturation, contrast, brightness and channel gain folded into one 3x3 map per image."""
        b = x.shape[0]
        luma = torch.tensor([0.299, 0.587, 0.114])
        sat = self._uniform(b, 1 - self.saturation, 1 + self.saturation, 1, 1)
        m_sat = sat * torch.eye(3) + (1 - sat) * luma.view(1, 1, 3).expand(b, 3, 3)
        con = self._uniform(b, 1 - self.contrast, 1 + self.contrast, 1)
        gain = self._uniform(b, 1 - self.brightness, 1 + self.brightness, 1) * self._uniform(
            b, 1 - self.channel_gain, 1 + self.channel_gain, 3)
        mean_rgb = x.mean(dim=(2, 3))
        mean_gray = torch.einsum("c,bcd,bd->b", luma, m_sat, mean_rgb).unsqueeze(1)
        matrix = gain.unsqueeze(2) * con.unsqueeze(2) * m_sat
        offset = gain * (1 - con) * mean_gray
        out = torch.baddbmm(offset.unsqueeze(2), matrix, x.flatten(2)).view_as(x)
        return out.clamp_(0.0, 255.0)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._colour(self._geometry(batch.float()))
