"""Is the concept hierarchy linearly separable at a reading point?  Least-squares concept directions.

Where every activation row comes with the true concepts present at it (a toy world's per-token
masks), :func:`concept_directions` regresses the rows on the concept indicators (with an
intercept).  The coefficients are the concept directions of the best *linear, additive* concept
model of the activations, and three figures say what any dictionary can hope for there:

* ``r2``: the share of the activation variance the concept model explains.  Low means most of the
  variance is something else (noise, geometry), which an SAE trained for reconstruction spends
  its latents on before rare concepts;
* ``max_abs_cos``: the largest |cosine| between two concept directions;
* ``condition``: the ratio of the largest to the smallest singular value of the directions.  Near
  collinear directions (``max_abs_cos`` near 1, a large condition number) cannot be told apart by a
  sparse code.

This separates the two causes of a wrong graph from a third: the *representation* (these figures)
before the dictionary (:mod:`.diagnostics`) and the graph step.  Pure tensor maths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin._validation import check_finite_tensor


@dataclass(frozen=True)
class ConceptDirections:
    """What :func:`concept_directions` returns; ``directions`` is ``[n_concepts, d]``."""

    directions: Tensor
    r2: float
    max_abs_cos: float
    condition: float
    n_rows: int

    def figures(self) -> dict[str, Any]:
        """The three figures and the row count, rounded, as plain JSON."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "directions"}


def concept_directions(acts: Float[Tensor, "rows d"], present: Bool[Tensor, "rows concepts"]) -> ConceptDirections:
    """Least-squares fit ``acts ~ present @ directions + bias`` and its figures (module docstring).

    Concepts never present (or present on every row) have no direction of their own: a
    ``ValueError`` names them, since the fit cannot separate them from the intercept.
    """
    if acts.ndim != 2 or present.ndim != 2 or acts.shape[0] != present.shape[0]:
        raise ValueError(f"acts must be [rows, d] and present [rows, concepts] with the same rows, got "
                         f"{tuple(acts.shape)} and {tuple(present.shape)}")
    if present.dtype != torch.bool:
        raise ValueError(f"present must be a bool tensor (which concept is there on which row), got {present.dtype}")
    if present.shape[1] < 2 or acts.shape[0] <= present.shape[1] + 1:
        raise ValueError(f"need at least 2 concepts and more rows than concepts + 1, got {present.shape[1]} "
                         f"concepts and {acts.shape[0]} rows; pass more activation rows")
    check_finite_tensor(acts, "acts", "drop or recompute the non-finite rows")
    share = present.float().mean(0)
    degenerate = [i for i, s in enumerate(share.tolist()) if s in (0.0, 1.0)]
    if degenerate:
        raise ValueError(f"concepts {degenerate} are present on no row or on every row; drop them or pass rows "
                         "where they vary")
    x = acts.double()
    design = torch.cat([present.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, x).solution
    residual = x - design @ coef
    total = (x - x.mean(0)).pow(2).sum()
    r2 = 1.0 - float(residual.pow(2).sum() / total.clamp(min=1e-300))
    directions = coef[:-1]
    unit = directions / directions.norm(dim=1, keepdim=True).clamp(min=1e-300)
    cos = (unit @ unit.T).abs().fill_diagonal_(0.0)
    sv = torch.linalg.svdvals(directions)
    condition = float(sv[0] / sv[-1]) if float(sv[-1]) > 0 else float("inf")
    return ConceptDirections(directions=directions.to(acts.dtype), r2=r2, max_abs_cos=float(cos.max()),
                             condition=condition, n_rows=int(x.shape[0]))


__all__ = ["ConceptDirections", "concept_directions"]
