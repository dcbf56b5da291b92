"""Deterministic selection rules and random parent-set structure (pure tensor maths).

A coarse concept is present exactly when a rule of its composing (finer) concepts holds:

* ``"or"``: any component present (``face`` when eyes *or* mouth are visible);
* ``"and"``: every component present;
* ``"threshold"``: the weighted sum of present components reaches a threshold (a linear
  threshold unit; ``w = (1, 1, 1)`` with threshold 2 is "at least two of three").

Parent sets are stored as a padded index matrix ``[n_coarse, k]`` with ``-1`` for padding.
"""

from __future__ import annotations

import itertools

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

COMPOSITIONS = ("or", "and", "threshold")


def check_composition(name: str) -> None:
    """Raise ``ValueError`` for an unknown composition name."""
    if name not in COMPOSITIONS:
        raise ValueError(f"composition {name!r} does not exist; choose one of {', '.join(COMPOSITIONS)}.")


def compose(
    name: str,
    fine: Bool[Tensor, "batch n_fine"],
    parent_index: Int[Tensor, "n_coarse k"],
    weights: Float[Tensor, "n_coarse k"] | None = None,
    thresholds: Float[Tensor, " n_coarse"] | None = None,
) -> Bool[Tensor, "batch n_coarse"]:
    """Presence of every coarse concept from the presence of the finer level.

    Args:
        name: ``"or"``, ``"and"`` or ``"threshold"``.
        fine: which finer concepts are present in each sample.
        parent_index: composing set of each coarse concept, ``-1``-padded.
        weights, thresholds: only for ``"threshold"``: concept ``j`` is present when
            ``sum_i weights[j, i] * fine[parent_index[j, i]] >= thresholds[j]``.
    """
    check_composition(name)
    valid = parent_index >= 0
    values = fine[:, parent_index.clamp(min=0)] & valid  # [batch, n_coarse, k]
    if name == "or":
        return values.any(dim=-1)
    if name == "and":
        return (values | ~valid).all(dim=-1)
    if weights is None or thresholds is None:
        raise ValueError("the 'threshold' composition needs weights and thresholds.")
    total = (values.to(weights.dtype) * weights * valid).sum(dim=-1)
    return total >= thresholds - 1e-6


def relevant_components(weights: Float[Tensor, " k"], threshold: float) -> Bool[Tensor, " k"]:
    """Which inputs of a threshold unit can change its output (exhaustive over ``2^k`` inputs).

    Component ``i`` is relevant when some assignment ``S`` of the others has
    ``sum_S w < threshold <= sum_S w + w_i``; an irrelevant component is no parent of the
    concept (it never matters), so the true graph leaves it out.
    """
    k = weights.shape[0]
    relevant = torch.zeros(k, dtype=torch.bool)
    for bits in itertools.product((0.0, 1.0), repeat=k):
        s = torch.tensor(bits, dtype=weights.dtype)
        base = float((s * weights).sum())
        for i in range(k):
            fires_with = base + float(weights[i]) >= threshold - 1e-6
            if bits[i] == 0.0 and base < threshold - 1e-6 and fires_with:
                relevant[i] = True
    return relevant


def assign_parent_sets(
    n_coarse: int, n_fine: int, k: int, generator: torch.Generator, max_tries: int = 200,
    max_overlap: int | None = None,
) -> list[list[int]]:
    """Random composing sets of size ``k``, distinct per concept, with balanced reuse.

    The ``n_coarse * k`` slots are spread over the finer concepts as evenly as possible
    (each is used ``floor`` or ``ceil`` of ``n_coarse * k / n_fine`` times), so a finer concept
    composes several coarse concepts exactly when there are more slots than finer concepts
    (a DAG rather than a tree). Greedy: each coarse concept takes, one at a time, the finer
    concepts with the most unused slots (ties broken at random) that keep its overlap with every
    earlier set at most ``max_overlap`` (``None``: no limit, only distinct sets).

    Raises:
        ValueError: when no assignment satisfying these constraints is found.
    """
    slots = n_coarse * k
    limit = k - 1 if max_overlap is None else max_overlap
    for _ in range(max_tries):
        order = torch.randperm(n_fine, generator=generator)
        remaining = torch.zeros(n_fine, dtype=torch.long)
        remaining[order] = slots // n_fine
        remaining[order[: slots % n_fine]] += 1
        sets: list[list[int]] = []
        for _ in range(n_coarse):
            jitter = torch.rand(n_fine, generator=generator)
            score = remaining.to(torch.float64) + 0.5 * jitter
            chosen: list[int] = []
            for c in torch.argsort(score, descending=True).tolist():
                if remaining[c] <= 0:
                    break
                if all(len(set(s) & set(chosen + [c])) <= limit for s in sets):
                    chosen.append(c)
                    if len(chosen) == k:
                        break
            if len(chosen) < k:
                break
            remaining[chosen] -= 1
            sets.append(sorted(chosen))
        if len(sets) == n_coarse and int(remaining.min()) >= 0:
            perm = torch.randperm(n_coarse, generator=generator).tolist()
            return [sets[i] for i in perm]
    raise ValueError(
        f"cannot give {n_coarse} concepts distinct sets of {k} parents from {n_fine} finer concepts"
        + ("" if max_overlap is None else f" sharing at most {max_overlap}")
        + "; add concepts to the finer level, change parents or raise max_overlap."
    )


def pad_parent_sets(sets: list[list[int]], k: int) -> Int[Tensor, "n_coarse k"]:
    """``-1``-padded ``[len(sets), k]`` index matrix."""
    out = torch.full((len(sets), k), -1, dtype=torch.long)
    for j, members in enumerate(sets):
        out[j, : len(members)] = torch.tensor(members, dtype=torch.long)
    return out


def witness_sets(
    compositions: list[str], parent_index: list[Int[Tensor, "n_coarse k"]], level: int, concept: int,
    n_finest: int,
) -> Bool[Tensor, "n_witness n_finest"]:
    """Sets of finest concepts whose presence alone makes ``concept`` of ``level`` present.

    One row per way of switching it on: under ``"or"`` one row per component (recursively),
    under ``"and"`` and ``"threshold"`` one row holding a witness of every (relevant) component.
    ``parent_index[l]`` holds the composing sets of level ``l`` (``-1``-padded).
    """
    if level == len(parent_index):
        row = torch.zeros(1, n_finest, dtype=torch.bool)
        row[0, concept] = True
        return row
    members = [int(c) for c in parent_index[level][concept].tolist() if c >= 0]
    below = [witness_sets(compositions, parent_index, level + 1, c, n_finest) for c in members]
    if compositions[level] == "or":
        return torch.cat(below)
    return torch.stack([w[0] for w in below]).any(dim=0, keepdim=True)
