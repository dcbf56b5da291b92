"""Minimal parent sets of a binary target by conditional-mutual-information tests (pure maths).

Under the hierarchical selection model a coarse concept is a *deterministic* function of a
small set of finer concepts. Its minimal parent set is therefore the smallest set ``S`` with
``H(target | S) = 0``: once ``S`` holds every true component, each further candidate has zero
conditional mutual information with the target, and each member of ``S`` keeps a positive
one. The search is IAMB-style (grow, then shrink):

* **grow**: add the candidate with the largest ``I(target; c | S)`` while that gain is at least
  ``min_gain * H(target)`` (a share of the target's entropy, so the rule does not depend on
  how often the target fires) and ``|S| < max_parents``;
* **shrink**: drop the member with the smallest ``I(target; s | S - {s})`` while that is below
  the same bound.

Conditional mutual information on binary firing is used rather than a sparse regression
because it tests dependence for any selection rule (OR, AND, thresholded sums have different
functional forms; a linear or noisy-OR regression fits only some of them), because it is exact
for deterministic selections (the minimality argument above), and because every number it
needs is a count, so it runs on plain tensors.

Candidates come in *tiers* (adjacent level first, then levels further away): a tier is only
searched when the earlier tiers leave more than ``max_residual * H(target)`` unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

LOG2 = torch.log(torch.tensor(2.0, dtype=torch.float64))


def binary_entropy(p: Tensor) -> Tensor:
    """``h(p)`` in bits, elementwise (0 at ``p`` in {0, 1})."""
    p = p.to(torch.float64)
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / LOG2


def strata(cond: Bool[Tensor, "n s"]) -> Int[Tensor, " n"]:
    """Index of each row's joint configuration of the conditioning columns (``0..2^s-1``)."""
    if cond.shape[1] == 0:
        return torch.zeros(cond.shape[0], dtype=torch.long, device=cond.device)
    powers = 2 ** torch.arange(cond.shape[1], device=cond.device)
    return (cond.long() * powers).sum(dim=1)


def conditional_entropy(target: Bool[Tensor, " n"], cond: Bool[Tensor, "n s"]) -> float:
    """``H(target | cond)`` in bits from empirical frequencies."""
    s = strata(cond)
    k = 2 ** cond.shape[1]
    n_s = torch.bincount(s, minlength=k).to(torch.float64)
    n_sy = torch.bincount(s, weights=target.to(torch.float64), minlength=k)
    rate = n_sy / n_s.clamp_min(1)
    return float((n_s * binary_entropy(rate)).sum() / max(target.shape[0], 1))


def conditional_mutual_information(
    target: Bool[Tensor, " n"],
    candidates: Bool[Tensor, "n m"] | Float[Tensor, "n m"],
    cond: Bool[Tensor, "n s"],
) -> Float[Tensor, " m"]:
    """``I(target; candidate_j | cond)`` in bits for every candidate column at once."""
    n = target.shape[0]
    s = strata(cond)
    k = 2 ** cond.shape[1]
    x = candidates.to(torch.float32)
    y = target.to(torch.float32)
    n_s = torch.bincount(s, minlength=k).to(torch.float64)[:, None]
    n_sy = torch.bincount(s, weights=y.double(), minlength=k)[:, None]
    n_sx = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device).index_add_(0, s, x).double()
    n_sxy = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device).index_add_(
        0, s, x * y[:, None]).double()
    cells = {
        (1, 1): n_sxy,
        (1, 0): n_sx - n_sxy,
        (0, 1): n_sy - n_sxy,
        (0, 0): n_s - n_sx - n_sy + n_sxy,
    }
    margin_x = {1: n_sx, 0: n_s - n_sx}
    margin_y = {1: n_sy, 0: n_s - n_sy}
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for (a, b), n_ab in cells.items():
        ratio = n_ab * n_s / (margin_x[a] * margin_y[b]).clamp_min(1e-12)
        total = total + torch.special.xlogy(n_ab, ratio.clamp_min(1e-300)).sum(dim=0)
    return (total / max(n, 1) / LOG2).clamp_min(0.0)


@dataclass
class ParentSet:
    """Result of :func:`minimal_parent_set` (indices are candidate columns)."""

    parents: list[int] = field(default_factory=list)
    #: ``I(target; parent | other parents)`` in bits, one per parent.
    cmi: list[float] = field(default_factory=list)
    #: ``H(target)`` and ``H(target | parents)`` in bits.
    entropy: float = 0.0
    residual: float = 0.0


def minimal_parent_set(
    target: Bool[Tensor, " n"],
    candidates: Bool[Tensor, "n m"],
    *,
    tiers: Int[Tensor, " m"] | None = None,
    min_gain: float = 0.05,
    max_parents: int = 6,
    max_residual: float = 0.2,
) -> ParentSet:
    """Smallest set of candidate columns that determines ``target`` (module docstring).

    Args:
        target: firing of the coarse concept.
        candidates: firing of the candidate (finer) concepts.
        tiers: tier of each candidate (0 = adjacent level); tier ``t`` is opened only when tiers
            ``< t`` leave more than ``max_residual * H(target)`` unexplained. ``None``: one tier.
        min_gain: a parent must explain at least this share of ``H(target)`` given the others.
        max_parents: largest parent set considered (``2^max_parents`` strata).
        max_residual: share of ``H(target)`` left unexplained that opens the next tier.
    """
    m = candidates.shape[1]
    tiers = torch.zeros(m, dtype=torch.long) if tiers is None else tiers.cpu()
    h = conditional_entropy(target, candidates[:, :0])
    result = ParentSet(entropy=h, residual=h)
    if h <= 0 or m == 0:
        return result
    bound = min_gain * h
    chosen: list[int] = []
    residual = h
    for tier in sorted(set(tiers.tolist())):
        if chosen and residual <= max_residual * h:
            break
        while len(chosen) < max_parents:
            open_ = [j for j in range(m) if tiers[j] <= tier and j not in chosen]
            if not open_:
                break
            gains = conditional_mutual_information(target, candidates[:, open_], candidates[:, chosen])
            best = int(torch.argmax(gains))
            if float(gains[best]) < bound:
                break
            chosen.append(open_[best])
            residual = conditional_entropy(target, candidates[:, chosen])
            if residual <= 1e-12:
                break
    # shrink: drop the weakest member while it adds less than the bound
    while chosen:
        gains = [float(conditional_mutual_information(
            target, candidates[:, [j]], candidates[:, [i for i in chosen if i != j]])[0]) for j in chosen]
        weakest = min(range(len(chosen)), key=gains.__getitem__)
        if gains[weakest] >= bound:
            result.cmi = gains
            break
        chosen.pop(weakest)
    result.parents = chosen
    result.residual = conditional_entropy(target, candidates[:, chosen]) if chosen else h
    return result
