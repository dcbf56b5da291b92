"""What the toy worlds' denoisers share: the noise schedule, the learning-rate schedule, the EMA,
the prediction target, the image-batch check and the sample grid (each world draws its own scenes)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


#: the noise schedule of both toy worlds, as ``DDIMScheduler(**SCHEDULER_CONFIG)``; with 10 or 20
#: sampling steps the schedule contains the timesteps 901, 501 and 101.
SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    clip_sample=True,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
    prediction_type="sample",
)


def image_batch(images: Tensor, channels: int = 3) -> Tensor:
    """``[B, C, H, W]`` (or one ``[C, H, W]``) images as a detached float CPU batch; clear errors otherwise."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a tensor [B, {channels}, H, W] in [0, 1], got {type(images).__name__}")
    x = images[None] if images.ndim == 3 else images
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"images must be [B, {channels}, H, W] or [{channels}, H, W], got shape {tuple(images.shape)}")
    return x.detach().float().cpu()


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int, final_lr_fraction: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_lr_fraction * lr`` at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    frac = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * (final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for the parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def prediction_target(kind: str, x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """What the UNet predicts for the scheduler's ``prediction_type``."""
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return x0
    if kind == "v_prediction":
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    raise ValueError(f"unsupported prediction_type {kind!r}")


def sample_grid(images: Tensor, ncol: int = 12) -> Tensor:
    """Tile ``[B, 3, H, W]`` images into one ``[3, ., .]`` image with 1-pixel white gaps."""
    b, _, h, w = images.shape
    nrow = (b + ncol - 1) // ncol
    grid = torch.ones(3, nrow * (h + 1) - 1, ncol * (w + 1) - 1)
    for i in range(b):
        r, c = divmod(i, ncol)
        grid[:, r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i]
    return grid


def save_png(grid: Tensor, path: str, scale: int = 4) -> None:
    """Write a ``[3, H, W]`` image in ``[0, 1]`` as a PNG, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    arr = (grid.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype("uint8")
    Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST).save(path)


__all__ = ["SCHEDULER_CONFIG", "ema_update", "image_batch", "lr_at", "prediction_target", "sample_grid", "save_png"]
