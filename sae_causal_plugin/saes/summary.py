"""What a trained SAE does on a set of activations: explained variance, mean L0, dead latents.

Works on any SAELens SAE (only ``encode``, ``decode`` and ``cfg.d_sae`` are used), streaming, so the
activations may be an iterable of batches. ``sae-causal train`` prints it when training ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class SAESummary:
    explained_variance: float
    """1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2 over every row"""
    mean_l0: float
    """mean number of non-zero latents per row"""
    dead_latents: int
    """latents that never fired on these rows"""
    d_sae: int
    n_rows: int

    def __str__(self) -> str:
        return (f"explained variance {self.explained_variance:.3f}, L0 {self.mean_l0:.1f}, "
                f"dead latents {self.dead_latents} / {self.d_sae} (on {self.n_rows} activation rows)")


@torch.no_grad()
def summarise_sae(sae: Any, activations: Float[Tensor, "n d_in"] | Iterable[Float[Tensor, "n d_in"]]) -> SAESummary:
    """One pass over ``activations`` (a tensor ``[n, d_in]`` or batches of it); ``ValueError`` if empty."""
    batches = [activations] if isinstance(activations, Tensor) else activations
    d_sae = int(sae.cfg.d_sae)
    fired = torch.zeros(d_sae, dtype=torch.bool)
    n, l0, err, sum_x, sum_sq = 0, 0.0, 0.0, None, 0.0
    for x in batches:
        x = x.reshape(-1, x.shape[-1]).float()
        z = sae.encode(x)
        active = z != 0
        fired |= active.any(0).cpu()
        l0 += float(active.sum())
        err += float(((x - sae.decode(z)) ** 2).sum())
        sum_x = x.sum(0) if sum_x is None else sum_x + x.sum(0)
        sum_sq += float((x ** 2).sum())
        n += x.shape[0]
    if n == 0 or sum_x is None:
        raise ValueError("activations are empty: give at least one row to summarise the SAE")
    total = sum_sq - float((sum_x ** 2).sum()) / n
    return SAESummary(explained_variance=1.0 - err / total if total > 0 else float("nan"),
                      mean_l0=l0 / n, dead_latents=int((~fired).sum()), d_sae=d_sae, n_rows=n)
