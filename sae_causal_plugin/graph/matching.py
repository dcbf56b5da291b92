"""Latent -> concept matching (pure maths on plain tensors).

Two scores and two rules, each written once:

* scores: :func:`firing_f1` (F1 / Dice of "latent fires" against "concept present") and
  :func:`abs_cosine` (decoder rows against true directions);
* rules: :func:`one_to_one` (Hungarian matching, ``scipy.optimize.linear_sum_assignment``) and
  :func:`best_per_row` (every latent to its best concept; several latents may share one).

A matched pair is kept only when its score reaches ``min_score``.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.optimize import linear_sum_assignment
from torch import Tensor

Match = dict[int, tuple[int, float]]


def firing_f1(fired: Bool[Tensor, "n d_sae"], active: Bool[Tensor, "n c"]) -> Float[Tensor, "d_sae c"]:
    """F1 of every latent's firing against every concept's presence, in float64 (0 where both never occur)."""
    if fired.ndim != 2 or active.ndim != 2 or fired.shape[0] != active.shape[0]:
        raise ValueError(f"fired {tuple(fired.shape)} and active {tuple(active.shape)} must be [n, d_sae] "
                         "and [n, n_concepts] over the same n samples")
    f, a = fired.double(), active.double()
    both = f.T @ a
    denom = f.sum(0)[:, None] + a.sum(0)[None, :]
    return torch.where(denom > 0, 2 * both / denom.clamp(min=1), torch.zeros_like(both))


def abs_cosine(rows: Float[Tensor, "d_sae d"], targets: Float[Tensor, "n d"]) -> Float[Tensor, "d_sae n"]:
    """``|cos|`` between every row (e.g. decoder row) and every target direction, in float32 on CPU."""
    if rows.ndim != 2 or targets.ndim != 2 or rows.shape[1] != targets.shape[1]:
        raise ValueError(f"rows {tuple(rows.shape)} and targets {tuple(targets.shape)} must share their width")
    a = torch.nn.functional.normalize(rows.detach().float().cpu(), dim=1)
    b = torch.nn.functional.normalize(targets.detach().float().cpu(), dim=1)
    return (a @ b.T).abs()


def one_to_one(score: Float[Tensor, "rows cols"], min_score: float) -> Match:
    """Hungarian matching maximising the total score: ``{row: (col, score)}`` for pairs ``>= min_score``."""
    s = score.detach().cpu().numpy().astype(np.float64)
    rows, cols = linear_sum_assignment(s, maximize=True)
    return {int(r): (int(c), float(s[r, c])) for r, c in zip(rows, cols) if s[r, c] >= min_score}


def best_per_row(score: Float[Tensor, "rows cols"], min_score: float) -> Match:
    """Every row to its best column: ``{row: (col, score)}`` for rows whose best score is ``>= min_score``."""
    best, idx = score.max(dim=1)
    return {i: (j, b) for i, (b, j) in enumerate(zip(best.tolist(), idx.tolist())) if b >= min_score}


__all__ = ["Match", "abs_cosine", "best_per_row", "firing_f1", "one_to_one"]
