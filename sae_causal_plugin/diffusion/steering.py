"""Steer SAE concepts inside a diffusion model during generation.

:class:`DiffusionSteering` is a context manager: every denoiser call made inside it (a plain
``pipe(...)`` call, a :class:`HookedDiffusionPipeline` run, or a hooked denoiser call) has the
chosen SAE latents edited at one hook point, with the error-preserving arithmetic of
:func:`sae_causal_plugin.steering.steer_activations`, restricted to a step window, to CFG rows and
optionally to a spatial mask.

Example:
    >>> with DiffusionSteering(pipe, sae, "mid_block.hook_out", latents=[12], mode="add",
    ...                        value=8.0, window=StepWindow(steps=(0, 5)), cfg="cond"):
    ...     image = pipe("a dog", num_inference_steps=20).images[0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from sae_causal_plugin.diffusion.hooked import HookedDenoiser, hook_denoiser
from sae_causal_plugin.diffusion.pipeline import (
    CFG_ROWS,
    CFGRows,
    GenerationTracker,
    HookedDiffusionPipeline,
    StepWindow,
    as_window,
)
from sae_causal_plugin.steering.core import (
    STEERING_MODES,
    LatentIds,
    SteeringMode,
    as_latent_list,
    expand_latents,
    steer_activations,
)


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


def resize_mask(mask: Float[Tensor, "h w"], x: Tensor) -> Float[Tensor, "..."]:
    """A ``(h, w)`` mask resized to the spatial layout of ``x`` without its channels.

    ``(B, C, H, W)`` maps give an ``(H, W)`` mask; ``(B, N, C)`` tokens an ``(N,)`` mask on the
    ``H x W`` patch grid with the mask's aspect ratio (``H * W = N``).
    """
    if x.ndim == 4:
        size = tuple(x.shape[-2:])
    elif x.ndim == 3:
        n = x.shape[1]
        h = max(1, round(math.sqrt(n * mask.shape[0] / mask.shape[1])))
        if n % h:
            raise ValueError(
                f"cannot lay {n} tokens on a grid with the mask's aspect ratio {tuple(mask.shape)}"
            )
        size = (h, n // h)
    else:
        raise ValueError(
            f"a spatial mask needs (B,C,H,W) or (B,N,C) activations, got {tuple(x.shape)}"
        )
    m = mask.to(device=x.device, dtype=torch.float32)[None, None]
    if tuple(m.shape[-2:]) != size:
        shrink = m.shape[-2] >= size[0] and m.shape[-1] >= size[1]
        m = F.interpolate(m, size=size, mode="area" if shrink else "nearest")
    m = m[0, 0]
    return m if x.ndim == 4 else m.reshape(-1)


class DiffusionSteering:
    """Edit SAE concepts at a hook point for the duration of a ``with`` block.

    Args:
        target: a diffusers pipeline, a :class:`HookedDiffusionPipeline`, a hooked denoiser or a
            raw denoiser.
        sae: a SAELens SAE trained on ``hook_name`` (its ``d_in`` must match the channels).
        hook_name: e.g. ``"mid_block.hook_out"`` or ``"transformer_blocks.3.hook_out"``.
        latents: latent index or indices to edit.
        mode: ``"add"``, ``"clamp"``, ``"ablate"`` or ``"scale"``.
        value: amount (add), target (clamp) or factor (scale); scalar or one per latent.
            Required except for ablate.
        strength: multiplies the edit; ``0`` leaves generation unchanged.
        window: the denoising steps to act on (default: all).
        mask: ``(h, w)`` spatial weights, resized to each activation's grid.
        cfg: CFG rows to act on: ``"cond"``, ``"uncond"`` or ``"both"``.
        include_descendants: also edit every descendant of the latents in ``graph``.
        graph: any object with ``descendants(node) -> set`` (e.g. ``graph.ConceptGraph``).
        latent_of: maps graph node ids to latent indices of this SAE (default: node ids are ints).
        num_inference_steps: if given, the window is checked against that schedule up front.
        cfg_layout: CFG half order, when it differs from the pipeline's default.
    """

    def __init__(
        self,
        target: Any,
        sae: Any,
        hook_name: str,
        latents: LatentIds,
        mode: SteeringMode = "add",
        value: float | Sequence[float] | Tensor | None = None,
        *,
        strength: float = 1.0,
        window: StepWindow | None = None,
        mask: Float[Tensor, "h w"] | None = None,
        cfg: CFGRows = "both",
        include_descendants: bool = False,
        graph: Any = None,
        latent_of: Callable[[Any], int | None] | None = None,
        num_inference_steps: int | None = None,
        cfg_layout: tuple[str, str] | None = None,
    ):
        if mode not in STEERING_MODES:
            raise ValueError(f"mode must be one of {STEERING_MODES}, got {mode!r}")
        if value is None and mode != "ablate":
            raise ValueError(f"mode {mode!r} needs value= (amount, target or factor)")
        if cfg not in CFG_ROWS:
            raise ValueError(f"cfg must be one of {CFG_ROWS}, got {cfg!r}")
        if mask is not None and mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
        self.tracker = _tracker_for(target, cfg_layout)
        self.denoiser = self.tracker.denoiser
        self.denoiser.check_hook_name(hook_name)
        channels = self.denoiser.hook_channels(hook_name)
        if channels is not None and int(sae.cfg.d_in) != channels:
            raise ValueError(
                f"SAE d_in={sae.cfg.d_in} but {hook_name} has {channels} channels; "
                "use the SAE trained on this hook, or the hook it was trained on"
            )
        ids = as_latent_list(latents, int(sae.cfg.d_sae))
        if include_descendants:
            if graph is None:
                raise ValueError("include_descendants=True needs graph= (a ConceptGraph)")
            ids = as_latent_list(expand_latents(ids, graph, latent_of), int(sae.cfg.d_sae))
        self.window = as_window(window)
        self.tracker.check_window(self.window, num_inference_steps)
        self.sae = sae
        self.hook_name = hook_name
        self.latents = ids
        self.mode = mode
        self.value = 0.0 if value is None else value
        self.strength = strength
        self.mask = mask
        self.cfg = cfg
        self._stack: ExitStack | None = None

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

    def __enter__(self) -> "DiffusionSteering":
        if self._stack is not None:
            raise RuntimeError("this steering context is already active")
        stack = ExitStack()
        try:
            hook = self.tracker.gate(self.edit, self.window, self.cfg)
            stack.enter_context(self.denoiser.hooks(fwd_hooks=[(self.hook_name, hook)]))
            stack.enter_context(self.tracker.attached([] if self.window.is_all else [self.window]))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


__all__ = ["DiffusionSteering", "resize_mask"]
