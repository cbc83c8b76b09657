"""PyTorch inference backend: the release's LesionCNN weights, calibrated probabilities, decisions."""

from __future__ import annotations

import numpy as np
import torch

from skin_plugin.calibration import Calibration
from skin_plugin.constants import NUM_CLASSES
from skin_plugin.networks import load_network
from skin_plugin.prediction import Prediction
from skin_plugin.release import ModelRelease
from skin_plugin.transforms import flip_views, normalize_batch


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256,
                   flip_tta: bool = False) -> torch.Tensor:
    """Logits for a uint8 (N, 3, H, W) tensor; ``flip_tta`` averages the four flips (4x the compute)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize_batch(images[i:i + batch_size]).contiguous(memory_format=torch.channels_last)
        out.append(torch.stack([model(v) for v in flip_views(x)]).mean(0) if flip_tta else model(x))
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


class TorchClassifier:
    """Scores uint8 (N, H, W, 3) RGB batches with the release's PyTorch weights."""

    def __init__(self, release: ModelRelease, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        release.verify()
        self.release = release
        self.calibration: Calibration = release.calibration
        self.model = load_network(release.weights_path, release.activation, release.network).to(
            memory_format=torch.channels_last)

    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 256,
               flip_tta: bool = False) -> np.ndarray:
        """Raw logits of uint8 (N, H, W, 3) images; ``flip_tta`` averages the four flips (research only)."""
        return predict_logits(self.model, torch.as_tensor(images).permute(0, 3, 1, 2), batch_size,
                              flip_tta).numpy()

    def predict(self, images: np.ndarray | torch.Tensor, flip_tta: bool = False) -> Prediction:
        probs = self.calibration.probabilities(self.logits(images, flip_tta=flip_tta))
        return Prediction(probs, self.calibration.decide(probs))
