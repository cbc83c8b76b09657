"""Train LesionCNN on HAM10000 with MONAI preprocessing, batched augmentation, EMA and early stopping."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from skin_plugin.constants import CLASS_CODES, NUM_CLASSES
from skin_plugin.networks import (
    ACTIVATIONS,
    DEFAULT_ACTIVATION,
    LESIONCNN_NETWORK,
    build_network,
    load_network,
    network_names,
)
from skin_plugin.release import MANIFEST_NAME, ModelRelease, fitted_splits
from skin_plugin.torch_classifier import predict_logits
from skin_plugin.transforms import BatchAugment, normalize_batch
from training.calibrate import calibrated_scores, log_class_prior
from training.data import (
    DEFAULT_DATA_DIR,
    DEFAULT_EXTRA_DIR,
    EXTRA_SOURCES,
    SPLIT_LEVELS,
    decode_all,
    make_split,
    read_extra_metadata,
    read_metadata,
    write_split,
)
from training.metrics import balanced_accuracy
from training.teacher_views import TeacherViews

console = Console()

CHECKPOINT_RULES = ("balanced_accuracy", "calibrated", "last")
"""What ``TrainConfig.select_on`` may name (see its docstring)."""
FIT_SETS = ("train", "train+val")
"""What ``TrainConfig.fit_on`` may name: the splits whose images the network is trained on."""


@dataclass
class TrainConfig:
    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = "runs/lesioncnn"
    cache_dir: str = ".cache"
    seed: int = 0
    max_epochs: int = 80
    patience: int = 40
    max_minutes: float = 60.0
    max_batches_per_epoch: int = 0
    """0 = a full epoch; a small number gives a smoke run."""
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.02
    warmup_epochs: int = 3
    label_smoothing: float = 0.1
    sampling_power: float = 0.5
    """Class-balanced sampling: a sample of class c is drawn with weight n_c ** -power
    (0 = natural frequencies, 1 = fully balanced; 0.5 = square-root balancing)."""
    logit_adjust: float = 0.0
    """tau of the logit-adjusted loss (Menon et al. 2021): cross-entropy of logits + tau * log class prior
    of the fitted images, so the network learns prior-free (balanced) logits; 0 = plain cross-entropy."""
    ema_decay: float = 0.998
    dropout: float = 0.2
    cutmix_prob: float = 0.0
    """Share of batches mixed with CutMix (a box of one image pasted into another, labels mixed by area)."""
    cutmix_alpha: float = 1.0
    teacher: str = ""
    """Weights (a release's ``lesioncnn.pt`` or a run checkpoint) of a trained LesionCNN to distil from;
    several comma-separated files distil from their mean logits; empty = none."""
    distill_weight: float = 0.0
    """Share of the loss given to matching the teacher's softened outputs (the rest: cross-entropy)."""
    distill_temperature: float = 2.0
    distill_views: int = 0
    """> 0: score that many augmented copies of every fitted image with the teacher once, and train on
    them (``training.teacher_views``); 0: run the teacher on every batch."""
    activation: str = DEFAULT_ACTIVATION
    """LesionCNN's nonlinearity: "relu" or "silu"."""
    select_on: str = "calibrated"
    """Checkpoint kept: best validation "balanced_accuracy" of the raw argmax, best "calibrated"
    score (mean of accuracy and balanced accuracy under the decision rule fitted on validation,
    the rule that ships), or the "last" epoch's weights."""
    fit_on: str = "train"
    """"train", or "train+val": refit a recipe chosen on validation on both splits (no validation is
    left, so the last epoch is kept and the calibration comes from the train-only run of the recipe)."""
    split_level: str = "lesion"
    """"lesion" (every release), or "image": the leaky image-level split, for ``training.leakage`` only
    (``training.package`` refuses such a run)."""
    network: str = LESIONCNN_NETWORK
    """The network trained: "lesioncnn" (from scratch) or a ProxylessNAS/MCUNet student
    (``skin_plugin.proxyless.PROXYLESS_NETWORKS``)."""
    pretrained: bool = False
    """Start a student from its ImageNet weights (``../shared/weights/imagenet``)."""
    extra_sources: str = ""
    """Comma-separated sources of ``../shared/data/extra_derm`` added to the fitted images (never to
    validation or test), e.g. "ISIC2017"; empty = HAM10000 only."""
    extra_dir: str = str(DEFAULT_EXTRA_DIR)
    aspect_jitter: float = 0.0
    """Random change of aspect ratio in training (log-uniform factor up to 1 + this): robustness to 3:2 or
    square frames squeezed into the 4:3 model input."""
    threads: int = 2
    resume: bool = False
    """Continue from the run folder's ``resume.pt`` (written after every epoch) if it holds this config."""
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Reject settings that would otherwise train something other than what was asked for."""
        if self.select_on not in CHECKPOINT_RULES:
            raise ValueError(f"select_on {self.select_on!r}: choose one of {', '.join(CHECKPOINT_RULES)}")
        if self.fit_on not in FIT_SETS:
            raise ValueError(f"fit_on {self.fit_on!r}: choose one of {', '.join(FIT_SETS)}")
        if "val" in fitted_splits(asdict(self)) and self.select_on != "last":
            raise ValueError(f"fit_on {self.fit_on!r} trains on validation: select_on must be 'last' "
                             f"(choosing a checkpoint on training images would be circular)")
        if self.split_level not in SPLIT_LEVELS:
            raise ValueError(f"split_level {self.split_level!r}: choose one of {', '.join(SPLIT_LEVELS)}")
        if self.network not in network_names():
            raise ValueError(f"network {self.network!r}: choose one of {', '.join(network_names())}")
        if self.pretrained and self.network == LESIONCNN_NETWORK:
            raise ValueError("pretrained needs a student network: LesionCNN is trained from scratch")
        unknown = {s for s in self.extra_sources.split(",") if s} - set(EXTRA_SOURCES)
        if unknown:
            raise ValueError(f"extra source(s) {sorted(unknown)}: choose from {', '.join(EXTRA_SOURCES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.logit_adjust and (self.cutmix_prob or self.teacher):
            raise ValueError("logit_adjust applies to the plain cross-entropy loss: not with cutmix or a teacher")
        for name in ("sampling_power", "distill_weight", "cutmix_prob", "logit_adjust"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} {getattr(self, name)} is outside 0..1")
        if self.distill_views and not self.teacher:
            raise ValueError("distill_views needs a teacher")
        if self.distill_weight > 0 and not self.teacher:
            raise ValueError("distill_weight > 0 needs a teacher")


RESUME_NAME = "resume.pt"
RESUMABLE_CHANGES = ("max_minutes", "threads")
"""Settings a resumed run may change: they bound or pace the work, they do not change the recipe."""


def _recipe(cfg: TrainConfig) -> dict:
    """The config as stored in checkpoints: everything but the history and the resume switch."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("history", "resume")}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _ema_with_warmup(decay: float):
    """EMA whose decay ramps up as (1 + n) / (10 + n): early averages do not lag behind on the init."""

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return d * averaged + (1 - d) * current

    return avg_fn


def cutmix(x: torch.Tensor, gen: torch.Generator, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste a random box of a shuffled copy of the batch; return images, partner order and label weight."""
    b, _, h, w = x.shape
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(b, generator=gen)
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[order, :, y0:y1, x0:x1]
    return x, order, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


class TeacherEnsemble(torch.nn.Module):
    """Frozen teachers whose logits are averaged."""

    def __init__(self, teachers: list[torch.nn.Module]) -> None:
        super().__init__()
        self.teachers = torch.nn.ModuleList(teachers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([t(x) for t in self.teachers]).mean(0)


def load_frozen_lesioncnn(path: str | Path) -> torch.nn.Module:
    """A frozen LesionCNN from a release's weights (``skin_plugin/release/lesioncnn.pt``, built with
    the release's activation) or a run checkpoint."""
    release_dir = Path(path).parent
    activation = ModelRelease.load(release_dir).activation if (release_dir / MANIFEST_NAME).exists() else None
    return load_network(path, activation).requires_grad_(False).to(memory_format=torch.channels_last)


def load_teacher(paths: str | Path) -> torch.nn.Module:
    """The distillation teacher: one frozen LesionCNN, or the mean of several comma-separated ones."""
    models = [load_frozen_lesioncnn(path) for path in str(paths).split(",")]
    return models[0] if len(models) == 1 else TeacherEnsemble(models).eval()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened outputs, scaled by T^2 (Hinton et al. 2015)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                    reduction="batchmean") * t * t


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss (augmented, smoothed labels)")
    validated = [h for h in history if "val_loss" in h]
    val_epochs = [h["epoch"] for h in validated]
    if validated:
        a.plot(val_epochs, [h["val_loss"] for h in validated], label="validation loss (EMA weights)")
    a.set_xlabel("epoch")
    a.legend()
    if validated:
        b.plot(val_epochs, [h["val_accuracy"] for h in validated], label="validation accuracy")
        b.plot(val_epochs, [h["val_balanced_accuracy"] for h in validated],
               label="validation balanced accuracy")
        b.legend()
    else:
        b.text(0.5, 0.5, "trained on validation too:\nno validation curve", ha="center", va="center",
               transform=b.transAxes)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _validation_row(model: torch.nn.Module, x_val: torch.Tensor, y_val: torch.Tensor,
                    log_prior: np.ndarray) -> dict:
    """An epoch's validation figures: raw argmax, and under the decision rule calibrated on validation."""
    logits = predict_logits(model, x_val)
    pred = logits.argmax(1)
    return {"val_loss": float(F.cross_entropy(logits, y_val)),
            "val_accuracy": float((pred == y_val).float().mean()),
            "val_balanced_accuracy": balanced_accuracy(y_val.numpy(), pred.numpy()),
            **calibrated_scores(logits.numpy(), y_val.numpy(), log_prior)}


def _progress_info(row: dict, best: float, best_epoch: int) -> str:
    info = f"loss {row['train_loss']:.3f}"
    if "val_accuracy" in row:
        info += (f" val acc {row['val_accuracy']:.3f} bal {row['val_balanced_accuracy']:.3f} calibrated "
                 f"{row['val_cal_accuracy']:.3f}/{row['val_cal_balanced_accuracy']:.3f} "
                 f"(best {best:.3f} @ {best_epoch})")
    return info


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best EMA weights by validation balanced accuracy; return the checkpoint path."""
    _seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data_dir)
    records = read_metadata(data_dir / "metadata.csv")
    dup = data_dir / "missed_duplicates.csv"
    split = make_split(records, dup, seed=cfg.seed, level=cfg.split_level)
    write_split(out / "split.csv", records, split, dup)
    images = decode_all(records, data_dir / "images", Path(cfg.cache_dir))
    labels = torch.tensor([r.label for r in records])
    fit_splits = fitted_splits(asdict(cfg))
    validate = "val" not in fit_splits
    idx_fit = torch.tensor([i for i, r in enumerate(records) if split[r.image_id] in fit_splits])
    idx_val = torch.tensor([i for i, r in enumerate(records) if split[r.image_id] == "val"])
    x_train, y_train = images[idx_fit], labels[idx_fit]
    sources = [s for s in cfg.extra_sources.split(",") if s]
    if sources:
        extra_dir = Path(cfg.extra_dir)
        extra = read_extra_metadata(extra_dir / "metadata.csv", sources)
        x_train = torch.cat([x_train, decode_all(extra, extra_dir / "images", Path(cfg.cache_dir))])
        y_train = torch.cat([y_train, torch.tensor([r.label for r in extra])])
        console.print(f"added {len(extra)} training images from {', '.join(sources)}")
    x_val, y_val = images[idx_val], labels[idx_val]
    counts = torch.bincount(y_train, minlength=NUM_CLASSES).float()
    sample_weight = counts.pow(-cfg.sampling_power)[y_train]
    console.print(f"fit on {cfg.fit_on}: {len(y_train)} images"
                  + (f", validation {len(y_val)}" if validate else " (no validation: last epoch kept)")
                  + "; counts "
                  + ", ".join(f"{c}={int(n)}" for c, n in zip(CLASS_CODES, counts)))

    log_prior = log_class_prior(y_train.numpy())
    loss_offset = cfg.logit_adjust * torch.as_tensor(log_prior, dtype=torch.float32)
    model = build_network(cfg.network, cfg.activation, cfg.dropout, cfg.pretrained).to(
        memory_format=torch.channels_last)
    ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=_ema_with_warmup(cfg.ema_decay), use_buffers=True)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    teacher = load_teacher(cfg.teacher) if cfg.teacher and cfg.distill_weight > 0 else None
    views = None
    if teacher is not None and cfg.distill_views:
        views = TeacherViews.build(teacher, cfg.teacher.split(",")[0], x_train, cfg.distill_views, cfg.seed,
                                   cfg.aspect_jitter, Path(cfg.cache_dir))
        teacher = None
    augment = BatchAugment(seed=cfg.seed, aspect_jitter=cfg.aspect_jitter)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(y_train) // cfg.batch_size
    if cfg.max_batches_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_batches_per_epoch)
    total_steps = steps_per_epoch * cfg.max_epochs
    step, best, best_epoch, first_epoch = 0, -1.0, 0, 1
    ckpt_path = out / "lesioncnn.pt"
    resume_path = out / RESUME_NAME
    cfg.history = []
    recipe = _recipe(cfg)
    if cfg.resume and resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=False)
        changed = [k for k in recipe if k not in RESUMABLE_CHANGES and state["config"].get(k) != recipe[k]]
        if changed:
            raise ValueError(f"{resume_path} was written with other settings ({', '.join(changed)}): "
                             "start a new run folder")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        augment.generator.set_state(state["augment_generator"])
        step, best, best_epoch, cfg.history = state["step"], state["best"], state["best_epoch"], state["history"]
        first_epoch = state["epoch"] + 1
        console.print(f"resumed after epoch {state['epoch']} from {resume_path}")
    start = time.monotonic() - 60 * (cfg.history[-1]["minutes"] if cfg.history else 0.0)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"),
                  console=console, transient=False) as progress:
        task = progress.add_task("Training", total=cfg.max_epochs, completed=first_epoch - 1, info="")
        for epoch in range(first_epoch, cfg.max_epochs + 1):
            model.train()
            draw = torch.multinomial(sample_weight, steps_per_epoch * cfg.batch_size, replacement=True,
                                     generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                sel = draw[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                if views is not None:
                    x_view, target = views.batch(sel, gen)
                    x = normalize_batch(x_view).contiguous(memory_format=torch.channels_last)
                else:
                    x = normalize_batch(augment(x_train[sel])).contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total_steps, cfg.warmup_epochs * steps_per_epoch, cfg.lr)
                y = y_train[sel]
                if views is not None:
                    out_logits = model(x)
                    loss = ((1 - cfg.distill_weight) * F.cross_entropy(out_logits, y,
                                                                      label_smoothing=cfg.label_smoothing)
                            + cfg.distill_weight * distillation_loss(out_logits, target,
                                                                     cfg.distill_temperature))
                elif cfg.cutmix_prob and float(torch.rand(1, generator=gen)) < cfg.cutmix_prob:
                    x, order, lam = cutmix(x, gen, cfg.cutmix_alpha)
                    out_logits = model(x)
                    loss = (lam * F.cross_entropy(out_logits, y, label_smoothing=cfg.label_smoothing)
                            + (1 - lam) * F.cross_entropy(out_logits, y[order],
                                                          label_smoothing=cfg.label_smoothing))
                elif teacher is not None:
                    out_logits = model(x)
                    with torch.no_grad():
                        target = teacher(x)
                    loss = ((1 - cfg.distill_weight) * F.cross_entropy(out_logits, y,
                                                                      label_smoothing=cfg.label_smoothing)
                            + cfg.distill_weight * distillation_loss(out_logits, target,
                                                                     cfg.distill_temperature))
                else:
                    loss = F.cross_entropy(model(x) + loss_offset, y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update_parameters(model)
                losses.append(loss.item())
                step += 1
            row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
            if validate:
                row.update(_validation_row(ema.module, x_val, y_val, log_prior))
            row["minutes"] = (time.monotonic() - start) / 60
            cfg.history.append(row)
            score = {"calibrated": row.get("val_score"), "balanced_accuracy": row.get("val_balanced_accuracy"),
                     "last": float(epoch)}[cfg.select_on]
            if score > best:
                best, best_epoch = score, epoch
                torch.save({"state_dict": ema.module.state_dict(), "epoch": epoch, "config": recipe}, ckpt_path)
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "augment_generator": augment.generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "step": step, "epoch": epoch, "best": best, "best_epoch": best_epoch,
                        "history": cfg.history, "config": recipe}, resume_path)
            progress.update(task, advance=1, info=_progress_info(row, best, best_epoch))
            (out / "history.json").write_text(json.dumps(cfg.history, indent=1))
            plot_curves(cfg.history, out / "training_curves.png")
            if validate and epoch - best_epoch >= cfg.patience:
                console.print(f"early stop: no better validation balanced accuracy for {cfg.patience} epochs")
                break
            if row["minutes"] >= cfg.max_minutes:
                console.print(f"time budget of {cfg.max_minutes} min reached")
                break
    if cfg.select_on == "last":
        console.print(f"kept the last epoch ({best_epoch}); saved {ckpt_path}")
    else:
        console.print(f"best validation {cfg.select_on} {best:.4f} at epoch {best_epoch}; saved {ckpt_path}")
    return ckpt_path
