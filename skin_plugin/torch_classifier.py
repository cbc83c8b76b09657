"""PyTorch inference backend: the release's LesionCNN weights, calibrated probabilities, decisions."""

from __future__ import annotations

import numpy as np
import torch

from skin_plugin.calibration import Calibration
from skin_plugin.networks import load_lesioncnn
from skin_plugin.prediction import Prediction
from skin_plugin.release import ModelRelease
from skin_plugin.transforms import flip_views, normalize_batch


class TorchClassifier:
    """Scores uint8 (N, H, W, 3) RGB batches with the release's PyTorch weights."""

    def __init__(self, release: ModelRelease, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        release.verify()
        self.release = release
        self.calibration: Calibration = release.calibration
        self.model = load_lesioncnn(release.weights_path, release.activation).to(
            memory_format=torch.channels_last)

    @torch.no_grad()
    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 256,
               flip_tta: bool = False) -> np.ndarray:
        """Raw logits; ``flip_tta`` averages the four flips (research only, 4x the compute)."""
        images = torch.as_tensor(images).permute(0, 3, 1, 2)
        out = []
        for i in range(0, len(images), batch_size):
            x = normalize_batch(images[i:i + batch_size]).contiguous(memory_format=torch.channels_last)
            if flip_tta:
                out.append(torch.stack([self.model(v) for v in flip_views(x)]).mean(0))
            else:
                out.append(self.model(x))
        return torch.cat(out).numpy() if out else np.empty((0, len(self.release.manifest["classes"])))

    def predict(self, images: np.ndarray | torch.Tensor, flip_tta: bool = False) -> Prediction:
        probs = self.calibration.probabilities(self.logits(images, flip_tta=flip_tta))
        return Prediction(probs, self.calibration.decide(probs))
