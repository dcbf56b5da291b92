"""Training of the diffusion world's denoiser (used by ``scripts/train_diffusion_world.py``).

DDPM training with x0-prediction: a class (one of the 12 valid label vectors, uniform), a
horizontal offset and a conditioning strength per present concept (``U[0.6, 1]``) are drawn per
sample, the scene is rendered, noised to a uniform random timestep with the
:data:`~.model.SCHEDULER_CONFIG` schedule, and the UNet + concept embedding learn to predict the
clean scene (MSE).  AdamW with linear warm-up and cosine decay; an exponential
moving average (EMA) of the weights is what gets saved.  Everything is seeded, and with one torch
thread a run is bit-for-bit reproducible on the same machine and library versions.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from sae_causal_plugin.worlds.diffusion_world.concepts import CONCEPTS, all_classes, sample_strengths
from sae_causal_plugin.worlds.diffusion_world.detectors import detect_concepts
from sae_causal_plugin.worlds.diffusion_world.model import (
    DEFAULT_STEPS,
    ConceptEmbedding,
    DiffusionWorldPipeline,
    build_denoiser,
    build_scheduler,
)
from sae_causal_plugin.worlds.diffusion_world.scenes import SHIFTS, render, to_model
from sae_causal_plugin._rng import keeps_global_rng
from sae_causal_plugin.worlds.denoiser_training import ema_update, lr_at, prediction_target, sample_grid


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_denoiser`."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    ema_decay: float = 0.998
    shifts: tuple[int, ...] = SHIFTS
    seed: int = 0
    log_every: int = 250


def _lr_at(cfg: TrainConfig, step: int) -> float:
    return lr_at(step, lr=cfg.lr, steps=cfg.steps, warmup_steps=cfg.warmup_steps,
                 final_lr_fraction=cfg.final_lr_fraction)


@keeps_global_rng
def train_denoiser(
    cfg: TrainConfig | None = None, log: Callable[[str], None] | None = print
) -> tuple[nn.Module, ConceptEmbedding, dict[str, Any]]:
    """Train the UNet and concept embedding; returns their EMA copies and a summary dict."""
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    unet = build_denoiser(seed=None).train()  # from the stream seeded just above
    embedding = ConceptEmbedding(seed=cfg.seed)
    ema_unet, ema_emb = copy.deepcopy(unet).eval(), copy.deepcopy(embedding).eval()
    params = list(unet.parameters()) + list(embedding.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = build_scheduler()
    alphas = sched.alphas_cumprod
    kind = sched.config.prediction_type
    classes = all_classes()
    n_t = int(sched.config.num_train_timesteps)
    start = time.perf_counter()
    running = 0.0
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        idx = torch.randint(0, classes.shape[0], (cfg.batch_size,), generator=gen)
        lab = classes[idx]
        x0 = to_model(render(lab, shifts=cfg.shifts, generator=gen))
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_t, (cfg.batch_size,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        cond = embedding(sample_strengths(lab, gen))
        pred = unet(xt, timestep=t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred, prediction_target(kind, x0, noise, a))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_emb, embedding, decay)
        running += loss.item()
        if log is not None and (step + 1) % cfg.log_every == 0:
            log(
                f"step {step + 1}/{cfg.steps}  loss {running / cfg.log_every:.4f}  "
                f"lr {_lr_at(cfg, step):.2e}  {time.perf_counter() - start:.0f}s"
            )
            running = 0.0
    seconds = time.perf_counter() - start
    summary = {"train": asdict(cfg), "train_seconds": round(seconds, 1)}
    return ema_unet, ema_emb, summary


@torch.no_grad()
def readback_accuracy(
    pipe: DiffusionWorldPipeline,
    per_class: int = 20,
    seed: int = 0,
    num_inference_steps: int = DEFAULT_STEPS,
    batch_size: int = 120,
) -> dict[str, Any]:
    """Generate ``per_class`` images of each class and read them back with the detectors.

    Returns ``accuracy`` (fraction of images whose detected concepts equal the conditioning
    exactly), ``per_concept`` accuracy, ``per_class`` accuracy and ``n``.
    """
    classes = all_classes()
    lab = classes.repeat_interleave(per_class, dim=0)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(lab.shape[0], 3, 16, 16, generator=gen)
    outs = []
    for s in range(0, lab.shape[0], batch_size):
        outs.append(
            pipe(lab[s : s + batch_size], num_inference_steps=num_inference_steps,
                 latents=noise[s : s + batch_size])
        )
    det = detect_concepts(torch.cat(outs))
    exact = (det == lab).all(1)
    return {
        "accuracy": float(exact.float().mean()),
        "per_concept": {c: float((det[:, i] == lab[:, i]).float().mean()) for i, c in enumerate(CONCEPTS)},
        "per_class": [float(v) for v in exact.view(-1, per_class).float().mean(1)],
        "n": int(lab.shape[0]),
        "num_inference_steps": num_inference_steps,
    }


__all__ = ["TrainConfig", "readback_accuracy", "sample_grid", "train_denoiser"]
