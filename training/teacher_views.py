"""Teacher logits cached over fixed augmented views, so that distilling a slow teacher costs one pass.

A pretrained teacher (EfficientNet-Lite0: ~6x the student's multiply-accumulates) run on every training
batch would triple the student's epoch time. Instead ``TeacherViews.build`` draws ``views`` augmented
copies of every fitted image once, stores them as uint8 with the teacher's logits, and training samples
(image, view) pairs from that cache; random flips on top keep the teacher's targets valid (dermoscopy has
no up or down). The cache is kept on disk, keyed by teacher weights, images and augmentation settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import track

from skin_plugin.release import sha256_file
from skin_plugin.transforms import BatchAugment, normalize_batch

CHUNK = 128


@dataclass(frozen=True)
class TeacherViews:
    images: torch.Tensor
    """uint8 (views, N, 3, H, W): augmented copies of the fitted images."""
    logits: torch.Tensor
    """float32 (views, N, classes): the teacher's logits on each copy."""

    @classmethod
    def build(cls, teacher: torch.nn.Module, teacher_path: str, images: torch.Tensor, views: int, seed: int,
              aspect_jitter: float, cache_dir: Path) -> TeacherViews:
        """Augment ``images`` (uint8 N,3,H,W) ``views`` times and score every copy with ``teacher``."""
        key = hashlib.sha256(
            f"{sha256_file(Path(teacher_path))}|{images.shape}|{int(images[::97].sum())}|{views}|{seed}|"
            f"{aspect_jitter}".encode()).hexdigest()[:16]
        cache = cache_dir / f"teacher-views-{key}.pt"
        if cache.exists():
            state = torch.load(cache, weights_only=True)
            return cls(state["images"], state["logits"])
        augment = BatchAugment(seed=seed + 7919, aspect_jitter=aspect_jitter)
        out = torch.empty((views, *images.shape), dtype=torch.uint8)
        logits = torch.empty((views, len(images), 0))
        rows = []
        teacher.eval()
        with torch.no_grad():
            for v in track(range(views), description="Teacher views"):
                view_logits = []
                for start in range(0, len(images), CHUNK):
                    x = augment(images[start:start + CHUNK]).round_().clamp_(0, 255).to(torch.uint8)
                    out[v, start:start + CHUNK] = x
                    view_logits.append(teacher(normalize_batch(x).contiguous(memory_format=torch.channels_last)))
                rows.append(torch.cat(view_logits))
        logits = torch.stack(rows).float()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"images": out, "logits": logits}, tmp)
        tmp.rename(cache)
        return cls(out, logits)

    def batch(self, sel: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random view of each selected image, randomly flipped (0..255 float), and its teacher logits."""
        view = torch.randint(self.images.shape[0], (len(sel),), generator=gen)
        x = self.images[view, sel].float()
        flip_x = torch.rand(len(sel), generator=gen) < 0.5
        flip_y = torch.rand(len(sel), generator=gen) < 0.5
        x[flip_x] = x[flip_x].flip(3)
        x[flip_y] = x[flip_y].flip(2)
        return x, self.logits[view, sel]
