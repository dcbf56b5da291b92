"""Steer SAE concepts inside a diffusion model during generation.

:class:`DiffusionSteering` is a context manager: every denoiser call made inside it (a plain
``pipe(...)`` call, a :class:`HookedDiffusionPipeline` run, or a hooked denoiser call) has the
chosen SAE latents edited at one hook point, with the error-preserving arithmetic of
:func:`sae_causal_plugin.steering.steer_activations`, restricted to a step window, to CFG rows and
optionally to a spatial mask.

Example:
    >>> with DiffusionSteering(pipe, sae, [12], "add", 8.0, hook_name="mid_block.hook_out",
    ...                        window=StepWindow(steps=(0, 5)), cfg="cond"):
    ...     image = pipe("a dog", num_inference_steps=20).images[0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from sae_causal_plugin._validation import check_finite_tensor
from sae_causal_plugin.diffusion.hooked import HookedDenoiser, hook_denoiser
from sae_causal_plugin.diffusion.pipeline import (
    CFG_ROWS,
    CFGRows,
    GenerationTracker,
    HookedDiffusionPipeline,
    StepWindow,
    as_window,
)
from sae_causal_plugin.steering.base import Steering, SteeringValue
from sae_causal_plugin.steering.core import LatentIds, SteeringMode, steer_activations


def _tracker_for(target: Any, cfg_layout: tuple[str, str] | None) -> GenerationTracker:
    if isinstance(target, HookedDiffusionPipeline):
        return target.tracker
    if isinstance(target, HookedDenoiser):
        return GenerationTracker(target, cfg_layout=cfg_layout)
    if hasattr(target, "unet") or hasattr(target, "transformer"):
        return HookedDiffusionPipeline(target, cfg_layout=cfg_layout).tracker
    if isinstance(target, nn.Module):
        return GenerationTracker(hook_denoiser(target), cfg_layout=cfg_layout)
    raise TypeError(f"cannot steer a {type(target).__name__}: give a pipeline or a denoiser")


def resize_mask(mask: Float[Tensor, "*b h w"], x: Tensor) -> Float[Tensor, "..."]:
    """A ``(h, w)`` mask, or ``(B, h, w)`` masks one per image, resized to the spatial layout of ``x``.

    ``(B, C, H, W)`` maps give an ``(H, W)`` mask (``(B, H, W)`` per image); ``(B, N, C)`` tokens
    an ``(N,)`` mask (``(B, N)``) on the ``H x W`` patch grid with the mask's aspect ratio
    (``H * W = N``).  Per-image masks are repeated over the halves of a classifier-free-guidance
    batch (``x`` with a multiple of ``B`` rows).
    """
    per_image = mask.ndim == 3
    h_m, w_m = mask.shape[-2:]
    if x.ndim == 4:
        size = tuple(x.shape[-2:])
    elif x.ndim == 3:
        n = x.shape[1]
        h = max(1, round(math.sqrt(n * h_m / w_m)))
        if n % h:
            raise ValueError(
                f"cannot lay {n} tokens on a grid with the mask's aspect ratio {tuple(mask.shape[-2:])}"
            )
        size = (h, n // h)
    else:
        raise ValueError(
            f"a spatial mask needs (B,C,H,W) or (B,N,C) activations, got {tuple(x.shape)}"
        )
    m = mask.to(device=x.device, dtype=torch.float32)
    m = m[:, None] if per_image else m[None, None]
    if tuple(m.shape[-2:]) != size:
        shrink = m.shape[-2] >= size[0] and m.shape[-1] >= size[1]
        m = F.interpolate(m, size=size, mode="area" if shrink else "nearest")
    m = m[:, 0]
    if not per_image:
        m = m[0]
        return m if x.ndim == 4 else m.reshape(-1)
    if x.shape[0] % m.shape[0]:
        raise ValueError(
            f"mask holds {m.shape[0]} per-image masks but the hook sees a batch of {x.shape[0]}; "
            "give one (h, w) mask per generated image, or one (h, w) mask for all"
        )
    m = m.repeat(x.shape[0] // m.shape[0], 1, 1)
    return m if x.ndim == 4 else m.reshape(m.shape[0], -1)


class DiffusionSteering(Steering):
    """Edit SAE concepts at a hook point of a diffusion model for the duration of a ``with`` block.

    Arguments as in :class:`~sae_causal_plugin.steering.base.Steering` (same order and checks as
    :class:`~sae_causal_plugin.steering.language.LanguageSteering`), with ``target`` a diffusers
    pipeline, a :class:`HookedDiffusionPipeline`, a hooked denoiser or a raw denoiser and
    ``hook_name`` e.g. ``"mid_block.hook_out"`` or ``"transformer_blocks.3.hook_out"``, plus

    Args:
        window: the denoising steps to act on (default: all).
        mask: ``(h, w)`` finite spatial weights, resized to each activation's grid, or ``(B, h, w)``
            one per generated image (e.g. where each image's part lies).
        cfg: CFG rows to act on: ``"cond"``, ``"uncond"`` or ``"both"``.
        num_inference_steps: if given, the window is checked against that schedule up front.
        cfg_layout: CFG half order, when it differs from the pipeline's default.
    """

    def __init__(
        self,
        target: Any,
        sae: Any,
        latents: LatentIds,
        mode: SteeringMode = "add",
        value: SteeringValue | None = None,
        *,
        hook_name: str | None = None,
        strength: float = 1.0,
        include_descendants: bool = False,
        graph: Any = None,
        latent_of: Callable[[Any], int | None] | None = None,
        window: StepWindow | None = None,
        mask: Float[Tensor, "h w"] | None = None,
        cfg: CFGRows = "both",
        num_inference_steps: int | None = None,
        cfg_layout: tuple[str, str] | None = None,
    ):
        if cfg not in CFG_ROWS:
            raise ValueError(f"cfg must be one of {CFG_ROWS}, got {cfg!r}")
        if mask is not None:
            if mask.ndim not in (2, 3) or 0 in mask.shape:
                raise ValueError(f"mask must be (H, W), or (B, H, W) one per image, got shape {tuple(mask.shape)}")
            check_finite_tensor(mask, "mask", "give finite spatial weights")
        self.tracker = _tracker_for(target, cfg_layout)
        self.denoiser = self.tracker.denoiser
        super().__init__(self.denoiser, sae, latents, mode, value, hook_name=hook_name, strength=strength,
                         include_descendants=include_descendants, graph=graph, latent_of=latent_of)
        self.window = as_window(window)
        self.tracker.check_window(self.window, num_inference_steps)
        self.mask = mask
        self.cfg = cfg

    def hook_width(self, hook_name: str) -> int | None:
        return self.denoiser.hook_channels(hook_name)

    def edit(self, x: Tensor, hook: HookPoint | None = None) -> Tensor:
        """The steering hook: ``x`` with the concepts edited (no window / row gating)."""
        mask = resize_mask(self.mask, x) if self.mask is not None else None
        return steer_activations(
            x,
            self.sae,
            self.latents,
            self.mode,
            self.value,
            strength=self.strength,
            mask=mask,
            channel_dim=1 if x.ndim == 4 else -1,
        )

    def hook_fn(self) -> Callable[..., Tensor | None]:
        """:meth:`edit`, run only inside the step window and on the chosen CFG rows."""
        return self.tracker.gate(self.edit, self.window, self.cfg)

    def extra_contexts(self) -> list[AbstractContextManager[Any]]:
        """Track denoiser calls (step, timestep, CFG rows) while the hook is on."""
        return [self.tracker.attached([] if self.window.is_all else [self.window])]


__all__ = ["DiffusionSteering", "resize_mask"]
