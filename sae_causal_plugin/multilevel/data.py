"""Validation and flattening of paired multi-level activations (shared by training and recovery).

Accepted layouts per level (the same for every level, only the width may differ):

* ``[n, d]``: one vector per sample;
* ``[batch, positions, d]``: token-aligned (layers of a language model);
* ``[batch, d, h, w]``: channels-first feature maps (diffusers UNet blocks, timesteps).

Row ``i`` of the flattened ``[N, d]`` view of every level refers to the same sample and
position, so position ``(b, t)`` at one level is paired with position ``(b, t)`` at the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def channel_axis(x: Tensor) -> int:
    """Axis holding the activation width: last for 2-D / 3-D, axis 1 for 4-D feature maps."""
    if x.ndim in (2, 3):
        return x.ndim - 1
    if x.ndim == 4:
        return 1
    raise ValueError(
        f"activations must be [n, d], [batch, positions, d] or [batch, d, h, w], got shape {tuple(x.shape)}."
    )


def to_rows(x: Tensor) -> Float[Tensor, "rows d"]:
    """Flatten one level's activations to ``[rows, d]`` (4-D maps: channels last first)."""
    if x.ndim == 4:
        x = x.permute(0, 2, 3, 1)
    elif x.ndim not in (2, 3):
        channel_axis(x)
    return x.reshape(-1, x.shape[-1])


def check_levels(level_saes: Sequence[Any] | None, paired_activations: Sequence[Tensor],
                 names: tuple[str, str] = ("level_saes", "paired_activations")) -> list[tuple[int, ...]]:
    """Raise ``ValueError`` for unpaired or mis-sized multi-level input; return each level's
    positional shape (the shape without the width).

    Args:
        level_saes: one SAE per level (only ``cfg.d_in`` is read), or ``None`` to skip that check.
        paired_activations: one activation tensor per level, level 0 (most abstract) first.
    """
    sae_name, act_name = names
    if isinstance(paired_activations, Tensor) or not isinstance(paired_activations, Sequence):
        raise ValueError(
            f"{act_name} must be a list with one activation tensor per level, got "
            f"{type(paired_activations).__name__}."
        )
    if len(paired_activations) < 2:
        raise ValueError(
            f"{act_name} has {len(paired_activations)} level(s); a multi-level model needs at least two, "
            "level 0 (most abstract) first."
        )
    if level_saes is not None:
        if len(level_saes) < 2:
            raise ValueError(f"{sae_name} has {len(level_saes)} SAE(s); pass one SAE per level, at least two.")
        if len(level_saes) != len(paired_activations):
            raise ValueError(
                f"{sae_name} has {len(level_saes)} SAEs but {act_name} has {len(paired_activations)} levels; "
                "pass one activation tensor per SAE, in the same level order."
            )
    positional: list[tuple[int, ...]] = []
    for level, x in enumerate(paired_activations):
        if not isinstance(x, Tensor):
            raise ValueError(f"{act_name}[{level}] must be a tensor, got {type(x).__name__}.")
        axis = channel_axis(x)
        width = x.shape[axis]
        shape = tuple(s for i, s in enumerate(x.shape) if i != axis)
        if level_saes is not None:
            d_in = int(level_saes[level].cfg.d_in)
            if width != d_in:
                raise ValueError(
                    f"{sae_name}[{level}] has d_in={d_in} but {act_name}[{level}] has width {width} "
                    f"(shape {tuple(x.shape)}); give level {level} an SAE trained on that level's activations."
                )
        if positional and shape != positional[0]:
            raise ValueError(
                f"{act_name} are not paired: level 0 has {positional[0]} samples/positions but level {level} "
                f"has {shape}; every level needs the same samples (and positions) in the same order."
            )
        if shape and shape[0] == 0:
            raise ValueError(f"{act_name}[{level}] is empty; pass at least one sample per level.")
        if not torch.isfinite(x).all():
            raise ValueError(f"{act_name}[{level}] contains NaN or Inf; clean the activations first.")
        positional.append(shape)
    return positional


@torch.no_grad()
def encode_fired(sae: Any, rows: Float[Tensor, "n d"], batch_size: int = 4096) -> Bool[Tensor, "n d_sae"]:
    """Which latents of ``sae`` fire (non-zero code) on each row, encoded in chunks."""
    device = sae.W_dec.device
    out = [(sae.encode(rows[s : s + batch_size].to(device)) != 0).cpu()
           for s in range(0, rows.shape[0], batch_size)]
    return torch.cat(out)
