"""Training of the part-whole world's denoiser (used by ``scripts/train_part_world.py``).

x0-prediction DDPM training: per sample a layout from the world's sampling rule
(:func:`~.concepts.sample_layout`: which concepts, where), a conditioning strength ``U[0.6, 1]`` per
present concept, the scene noised to a uniform random timestep; the UNet and the concept tokens
learn to predict the clean scene (MSE, each layer weighted by ``area ** -layer_weighting``, where
``area`` is the layer's mean number of on pixels, normalised to mean weight 1: without it the
2x2 parts, 0.4 on pixels per scene against 16 for a whole, are still undrawn after 1500 steps).
The layout's *positions* are not conditioned on: as with a text prompt, the noise decides where
the whole and its parts go.  AdamW with warm-up and cosine
decay; the exponential moving average (EMA) of the weights is what gets saved.  Seeded throughout.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from sae_causal_plugin._rng import keeps_global_rng
from sae_causal_plugin.worlds.denoiser_training import ema_update, lr_at, prediction_target
from sae_causal_plugin.worlds.part_world.concepts import CONCEPTS, sample_layout
from sae_causal_plugin.worlds.part_world.detectors import detect_concepts
from sae_causal_plugin.worlds.part_world.model import (
    DEFAULT_STEPS,
    ConceptTokens,
    PartWorldPipeline,
    build_denoiser,
    build_scheduler,
)
from sae_causal_plugin.worlds.part_world.scenes import concept_masks, render, scene_noise, to_model

STRENGTHS = (0.6, 1.0)


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_denoiser`."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    ema_decay: float = 0.998
    seed: int = 0
    log_every: int = 100
    layer_weighting: float = 1.0
    """power of the inverse layer area in the loss weights (0: plain MSE)"""


def sample_strengths(labels: Bool[Tensor, "b c"], generator: torch.Generator | None = None) -> Float[Tensor, "b c"]:
    """A strength ``U[0.6, 1]`` for every present concept, 0 elsewhere."""
    lo, hi = STRENGTHS
    return labels.float() * (lo + (hi - lo) * torch.rand(labels.shape, generator=generator))


def layer_loss_weights(power: float = 1.0) -> Float[Tensor, "1 c 1 1"]:
    """Per-layer loss weights ``area ** -power`` (``area``: mean on pixels over 4096 layouts of a fixed
    seed), normalised to mean 1."""
    if not 0.0 <= power <= 2.0:
        raise ValueError(f"layer_weighting must lie in [0, 2], got {power}")
    area = concept_masks(sample_layout(4096, torch.Generator().manual_seed(123))).float().sum((2, 3)).mean(0)
    w = area ** -power
    return (w / w.mean()).view(1, -1, 1, 1)


@keeps_global_rng
def train_denoiser(cfg: TrainConfig | None = None, log: Callable[[str], None] | None = print
                   ) -> tuple[nn.Module, ConceptTokens, dict[str, Any]]:
    """Train the UNet and the concept tokens; returns their EMA copies and a summary dict."""
    cfg = cfg or TrainConfig()
    weights = layer_loss_weights(cfg.layer_weighting)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    unet = build_denoiser(seed=None).train()
    tokens = ConceptTokens(seed=cfg.seed)
    ema_unet, ema_tokens = copy.deepcopy(unet).eval(), copy.deepcopy(tokens).eval()
    params = list(unet.parameters()) + list(tokens.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = build_scheduler()
    alphas, kind = sched.alphas_cumprod, sched.config.prediction_type
    n_t = int(sched.config.num_train_timesteps)
    start, running = time.perf_counter(), 0.0
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr=cfg.lr, steps=cfg.steps, warmup_steps=cfg.warmup_steps,
                                final_lr_fraction=cfg.final_lr_fraction)
        layout = sample_layout(cfg.batch_size, gen)
        x0 = to_model(render(layout))
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_t, (cfg.batch_size,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        pred = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, timestep=t,
                    encoder_hidden_states=tokens(sample_strengths(layout.labels, gen))).sample
        loss = (weights * (pred - prediction_target(kind, x0, noise, a)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_tokens, tokens, decay)
        running += loss.item()
        if log is not None and (step + 1) % cfg.log_every == 0:
            log(f"step {step + 1}/{cfg.steps}  loss {running / cfg.log_every:.4f}  "
                f"{time.perf_counter() - start:.0f}s")
            running = 0.0
    return ema_unet, ema_tokens, {"train": asdict(cfg), "train_seconds": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def readback_accuracy(pipe: PartWorldPipeline, n: int = 400, seed: int = 0,
                      num_inference_steps: int = DEFAULT_STEPS, batch_size: int = 200) -> dict[str, Any]:
    """Generate ``n`` scenes of fresh layouts (present concepts at strength 0.8) and read them back.

    ``accuracy``: fraction whose detected concepts equal the conditioning exactly; ``per_concept``:
    per-concept agreement.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = sample_layout(n, gen).labels
    noise = scene_noise(n, gen)
    images = torch.cat([pipe(labels[s : s + batch_size], num_inference_steps=num_inference_steps,
                             latents=noise[s : s + batch_size]) for s in range(0, n, batch_size)])
    det = detect_concepts(images)
    return {"accuracy": float((det == labels).all(1).float().mean()),
            "per_concept": {c: float((det[:, i] == labels[:, i]).float().mean()) for i, c in enumerate(CONCEPTS)},
            "n": n, "num_inference_steps": num_inference_steps}


__all__ = ["STRENGTHS", "TrainConfig", "layer_loss_weights", "readback_accuracy", "sample_strengths", "train_denoiser"]
