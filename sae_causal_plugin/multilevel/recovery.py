"""Layered concept graphs: edges between the latents of per-level SAEs.

:func:`recover_layered_graph` encodes paired activations with one SAE per level and, for every
latent ``p`` of a coarse level ``l``, finds its *minimal parent set* among the latents of level
``l + 1`` (and, optionally, of levels further down) by conditional-mutual-information tests
(:func:`~sae_causal_plugin.multilevel.parent_sets.minimal_parent_set`, whose docstring says why
CI tests rather than sparse regression). Edges point fine -> coarse (``"L2:7" -> "L1:3"``), the
selection direction of :class:`~sae_causal_plugin.graph.ConceptGraph`.

:func:`layered_graph_from_firing` is the same procedure on binary firing matrices, so it can be
used (and tested) without SAEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.multilevel.data import check_levels, encode_fired, to_rows
from sae_causal_plugin.multilevel.parent_sets import minimal_parent_set

#: Documented defaults of :func:`recover_layered_graph`.
DEFAULTS: dict[str, Any] = dict(
    max_skip=1, min_support=20, min_cofire=10, min_lift=1.2, min_gain=0.05, max_parents=6,
    max_residual=0.2, map_threshold=0.5,
)


def node_id(level: int, index: int) -> str:
    return f"L{level}:{index}"


def layered_graph_from_firing(
    fired: Sequence[Bool[Tensor, "n d"]],
    *,
    max_skip: int = DEFAULTS["max_skip"],
    min_support: int = DEFAULTS["min_support"],
    min_cofire: int = DEFAULTS["min_cofire"],
    min_lift: float = DEFAULTS["min_lift"],
    min_gain: float = DEFAULTS["min_gain"],
    max_parents: int = DEFAULTS["max_parents"],
    max_residual: float = DEFAULTS["max_residual"],
    candidate_maps: Sequence[Float[Tensor, "d_fine d_coarse"] | None] | None = None,
    map_threshold: float = DEFAULTS["map_threshold"],
) -> ConceptGraph:
    """Layered minimal-parent graph from paired firing matrices (level 0 first).

    Args:
        fired: ``fired[l][i, j]``: latent ``j`` of level ``l`` fires on sample ``i``.
        max_skip: furthest level gap of an edge (1 = adjacent levels only). Skip-level candidates
            are only searched when the adjacent level leaves more than ``max_residual`` of the
            coarse latent's entropy unexplained.
        min_support: a latent firing fewer times is left out of the graph.
        min_cofire: a candidate must co-fire with the coarse latent at least this often.
        min_lift: and have lift ``P(c, p) / (P(c) P(p))`` at least this (positive dependence;
            every OR / AND / threshold component is positively dependent on its concept).
        min_gain: share of ``H(p)`` a parent must explain given the other parents (default 0.05).
        max_parents: largest parent set searched (default 6).
        max_residual: see ``max_skip`` (default 0.2).
        candidate_maps: optional ``[d_{l+1}, d_l]`` non-negative maps per adjacent level pair (e.g.
            learned selection maps); adjacent candidates need ``map[c, p] >= map_threshold``.

    Returns:
        a :class:`ConceptGraph`; nodes ``"L{l}:{i}"`` (``level``, ``firing_count``,
        ``firing_rate``), edges fine -> coarse with ``count_child``, ``count_parent``,
        ``count_both``, ``p_parent_given_child``, ``p_child_given_parent``, ``lift``, ``cmi``
        (bits), ``explained`` (``cmi / H(parent)``) and ``level_gap``.
    """
    n = fired[0].shape[0]
    if any(f.shape[0] != n for f in fired):
        raise ValueError("fired: every level needs the same number of paired samples.")
    if max_skip < 1:
        raise ValueError(f"max_skip must be >= 1, got {max_skip}.")
    counts = [f.sum(dim=0).to(torch.float64) for f in fired]
    alive = [torch.nonzero(c >= min_support).flatten() for c in counts]
    graph = ConceptGraph()
    for level, idx in enumerate(alive):
        for i in idx.tolist():
            graph.add_concept(node_id(level, i), level=level, firing_count=int(counts[level][i]),
                              firing_rate=float(counts[level][i]) / n)
    floats = [f.to(torch.float32) for f in fired]
    for level in range(len(fired) - 1):
        pool_levels = list(range(level + 1, min(level + max_skip, len(fired) - 1) + 1))
        targets = alive[level]
        if targets.numel() == 0:
            continue
        co = {m: (floats[m][:, alive[m]].T @ floats[level][:, targets]).double() for m in pool_levels}
        for t, p in enumerate(targets.tolist()):
            cols, tiers, owners = [], [], []
            for m in pool_levels:
                both = co[m][:, t]
                lift = both * n / (counts[m][alive[m]] * counts[level][p]).clamp_min(1)
                ok = (both >= min_cofire) & (lift >= min_lift)
                if m == level + 1 and candidate_maps is not None and candidate_maps[level] is not None:
                    ok &= candidate_maps[level].detach().cpu()[alive[m], p] >= map_threshold
                for c in alive[m][ok].tolist():
                    cols.append(fired[m][:, c])
                    tiers.append(m - level - 1)
                    owners.append((m, c))
            if not cols:
                continue
            result = minimal_parent_set(
                fired[level][:, p], torch.stack(cols, dim=1), tiers=torch.tensor(tiers),
                min_gain=min_gain, max_parents=max_parents, max_residual=max_residual)
            for j, cmi in zip(result.parents, result.cmi):
                m, c = owners[j]
                both = float((fired[m][:, c] & fired[level][:, p]).sum())
                n_c, n_p = float(counts[m][c]), float(counts[level][p])
                graph.add_edge(
                    node_id(m, c), node_id(level, p), count_child=int(n_c), count_parent=int(n_p),
                    count_both=int(both), p_parent_given_child=both / n_c, p_child_given_parent=both / n_p,
                    lift=both * n / (n_c * n_p), cmi=cmi, explained=cmi / result.entropy,
                    level_gap=m - level)
    graph.meta.update(n_samples=n, max_skip=max_skip, min_support=min_support, min_cofire=min_cofire,
                      min_lift=min_lift, min_gain=min_gain, max_parents=max_parents,
                      max_residual=max_residual, used_candidate_maps=candidate_maps is not None)
    return graph


def recover_layered_graph(
    level_saes: Sequence[Any],
    paired_activations: Sequence[Tensor],
    *,
    batch_size: int = 4096,
    max_samples: int | None = None,
    **thresholds: Any,
) -> ConceptGraph:
    """Concept graph across levels from one SAE per level and paired activations.

    Minimal parent sets are found by **conditional-independence tests** (conditional mutual
    information of binary firing, grow-then-shrink as in IAMB), not by sparse regression: a
    coarse concept is a deterministic selection of a few finer ones, so once the true components
    are conditioned on, every other candidate is conditionally independent of it (the test is
    exact for deterministic selections and yields the *minimal* set), and the test does not
    assume a functional form (OR, AND and thresholded sums all pass, where a linear or noisy-OR
    regression fits only some). Candidates are first screened by co-firing count and lift, so
    each test only sees latents that co-fire with the coarse latent.

    Args:
        level_saes: one SAELens SAE per level, level 0 (most abstract) first; a latent fires when
            its code is non-zero.
        paired_activations: one tensor per level, ``[n, d_l]``, ``[batch, positions, d_l]`` or
            ``[batch, d_l, h, w]`` (see :mod:`~sae_causal_plugin.multilevel.data`); position
            ``(b, t)`` of one level is paired with position ``(b, t)`` of every other level.
        batch_size: rows encoded at once.
        max_samples: use only the first ``max_samples`` paired rows (the firing of every level is
            held in memory as ``[rows, d_sae]`` booleans).
        **thresholds: keyword arguments of :func:`layered_graph_from_firing` (``max_skip``,
            ``min_support``, ``min_cofire``, ``min_lift``, ``min_gain``, ``max_parents``,
            ``max_residual``, ``candidate_maps``, ``map_threshold``); defaults in :data:`DEFAULTS`.

    Raises:
        ValueError: fewer than two levels, a different number of SAEs and levels, an SAE whose
            ``d_in`` is not its level's width, or levels whose samples / positions do not pair up.
    """
    unknown = set(thresholds) - set(DEFAULTS) - {"candidate_maps"}
    if unknown:
        raise ValueError(f"unknown thresholds {sorted(unknown)}; choose from {sorted(DEFAULTS)} or candidate_maps.")
    check_levels(level_saes, paired_activations)
    rows = [to_rows(x) for x in paired_activations]
    if max_samples is not None:
        rows = [r[:max_samples] for r in rows]
    fired = [encode_fired(sae, r.float(), batch_size) for sae, r in zip(level_saes, rows)]
    return layered_graph_from_firing(fired, **thresholds)
