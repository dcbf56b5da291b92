"""Layered concept graphs: edges between the latents of per-level SAEs (pure maths on firing).

A *level* is one SAE of a stack (a layer of a language model, a denoising timestep of a diffusion
model), most abstract first.  Nodes are ``"{prefix}{level}:{latent}"`` (:func:`node_id`), edges point
fine -> coarse, the selection direction of :class:`~sae_causal_plugin.graph.ConceptGraph`.

Two rules build the edges from paired binary firing:

* :func:`layered_graph_from_firing`: minimal parent sets by conditional-mutual-information tests
  (:func:`~sae_causal_plugin.graph.parent_sets.minimal_parent_set`), adjacent levels and, optionally,
  further down;
* :func:`recover_timestep_graph`: the co-firing rules of :mod:`sae_causal_plugin.graph.recovery`
  (candidate filter and explained-parent rule, same constants) between **adjacent levels only**,
  plus ``max_reverse``: the parent must fire substantially without the child.  Two latents that
  imply each other are one concept seen at two levels (persistence), not a composition.

:func:`name_matched_latents` copies a latent graph and names the latents matched to concepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .cofiring import CoFiringStats
from .concept_graph import ConceptGraph
from .parent_sets import minimal_parent_set
from .recovery import (
    DEFAULT_EXPLAIN_MARGIN,
    DEFAULT_MIN_CONDITIONAL,
    DEFAULT_MIN_LIFT,
    DEFAULT_MIN_SUPPORT,
    drop_explained_parents,
    explained_parent_queries,
    select_candidate_edges,
)

#: Documented defaults of :func:`layered_graph_from_firing`.
DEFAULTS: dict[str, Any] = dict(
    max_skip=1, min_support=20, min_cofire=10, min_lift=1.2, min_gain=0.05, max_parents=6,
    max_residual=0.2, map_threshold=0.5,
)
#: Default of :func:`recover_timestep_graph`'s ``max_reverse``.
DEFAULT_MAX_REVERSE = 0.9


def node_id(level: int, latent: int, prefix: str = "L") -> str:
    """Graph node id of ``latent`` at ``level``: ``"L2:7"``, or ``"t501:7"`` with ``prefix="t"``."""
    return f"{prefix}{int(level)}:{int(latent)}"


def parse_node(node: str) -> tuple[int, int]:
    """``(level, latent)`` of a layered node id: ``"L2:7" -> (2, 7)``, ``"t501:12" -> (501, 12)``."""
    head, sep, tail = str(node).partition(":")
    digits = head.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
    if not sep or not digits.lstrip("-").isdigit() or not tail.isdigit():
        raise ValueError(f"{node!r} is not a layered node id like 'L2:7' or 't501:12'")
    return int(digits), int(tail)


def name_matched_latents(
    graph: ConceptGraph,
    match: Mapping[Any, tuple[str, float]],
    true_level: Callable[[str], int] | None = None,
) -> ConceptGraph:
    """A copy of ``graph`` whose matched nodes carry ``label``, ``concept``, ``match_f1`` (and ``true_level``).

    ``match`` maps node ids to ``(concept, score)``; unmatched nodes are copied as they are.
    """
    named = ConceptGraph.from_dict(graph.to_dict())
    named.meta = dict(graph.meta)
    for node in named.concepts:
        if node in match:
            concept, score = match[node]
            attrs = {**named.concept_attrs(node), "label": f"{concept} (#{node})", "concept": concept,
                     "match_f1": float(score)}
            if true_level is not None:
                attrs["true_level"] = true_level(concept)
            named.add_concept(node, **attrs)
    return named


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


def recover_timestep_graph(
    firing: Mapping[int, Tensor] | Sequence[tuple[int, Tensor]],
    *,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_lift: float = DEFAULT_MIN_LIFT,
    max_reverse: float = DEFAULT_MAX_REVERSE,
    explain_margin: float = DEFAULT_EXPLAIN_MARGIN,
    batch_size: int = 4096,
) -> ConceptGraph:
    """Child -> parent graph between latents of adjacent timesteps (module docstring).

    Args:
        firing: ``{timestep: bool [n_images, d_sae]}`` (rows = the same images at every
            timestep).  Levels are ordered noisiest (largest timestep) first.
        min_conditional, min_support, min_lift, explain_margin: the rules of
            :func:`~sae_causal_plugin.graph.recovery.select_candidate_edges` and
            :func:`~sae_causal_plugin.graph.recovery.drop_explained_parents`.
        max_reverse: a candidate also needs ``P(child | parent) <= max_reverse``.
        batch_size: images per statistics update.

    Returns:
        nodes ``"t{timestep}:{latent}"`` (``level``, ``timestep``, ``latent``, ``firing_count``,
        ``firing_rate``), edges with the co-firing statistics.
    """
    items = sorted(dict(firing).items(), key=lambda kv: -kv[0])
    if len(items) < 2:
        raise ValueError("give firing patterns of at least two timesteps")
    n = items[0][1].shape[0]
    for t, f in items:
        if f.ndim != 2 or f.shape[0] != n:
            raise ValueError(
                f"firing at t={t} has shape {tuple(f.shape)}; every timestep needs [n_images={n}, d_sae]"
            )
    for name, v in (("min_conditional", min_conditional), ("max_reverse", max_reverse),
                    ("explain_margin", explain_margin)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    widths = [int(f.shape[1]) for _, f in items]
    offsets = [sum(widths[:i]) for i in range(len(widths))]
    level_of = torch.cat([torch.full((w,), i) for i, w in enumerate(widths)])
    stats = CoFiringStats(sum(widths))
    for s in range(0, n, batch_size):
        stats.update(torch.cat([f[s : s + batch_size].bool() for _, f in items], dim=1))
    counts = stats.firing_counts.cpu()

    def name(g: int) -> str:
        lvl = int(level_of[g])
        return node_id(items[lvl][0], g - offsets[lvl], prefix="t")

    table = {k: v.cpu() for k, v in stats.edge_table().items()}
    table = {k: v[level_of[table["child"]] == level_of[table["parent"]] + 1] for k, v in table.items()}
    cand = select_candidate_edges(table, n_samples=n, min_conditional=min_conditional,
                                  min_support=min_support, min_lift=min_lift, max_reverse=max_reverse)
    row_of = {(c, p): r for r, (c, p) in enumerate(zip(cand["child"].tolist(), cand["parent"].tolist()))}
    # adjacent-level edges hold no path that skips a level, so the transitive reduction is the identity
    coarseness = {g: (int(counts[g]), -g) for g in range(counts.shape[0])}
    queries = explained_parent_queries(row_of, coarseness)
    conditional: dict[tuple[int, int], float] = {}
    if queries:
        q_idx, p_idx = (torch.tensor(v) for v in zip(*queries))
        co, _ = stats.lookup(q_idx, p_idx)
        cond = co.cpu().double() / counts[q_idx].clamp(min=1).double()
        conditional = dict(zip(queries, cond.tolist()))
    kept = drop_explained_parents(row_of, conditional, coarseness, min_conditional=min_conditional,
                                  explain_margin=explain_margin)

    graph = ConceptGraph()
    for g in torch.nonzero(counts >= max(1, min_support)).flatten().tolist():
        lvl = int(level_of[g])
        graph.add_concept(
            name(g), level=lvl, timestep=items[lvl][0], latent=g - offsets[lvl],
            firing_count=int(counts[g]), firing_rate=float(counts[g]) / max(n, 1),
        )
    stat_keys = ("count_child", "count_parent", "count_both", "p_parent_given_child",
                 "p_child_given_parent", "lift")
    for (c, p), r in sorted(row_of.items()):
        if (c, p) in kept:
            graph.add_edge(name(c), name(p), **{k: cand[k][r].item() for k in stat_keys})
    graph.meta.update(
        timesteps=[t for t, _ in items], n_images=n, min_conditional=min_conditional,
        min_support=min_support, min_lift=min_lift, max_reverse=max_reverse,
        explain_margin=explain_margin, n_candidate_edges=len(row_of),
    )
    return graph


__all__ = [
    "DEFAULTS",
    "DEFAULT_MAX_REVERSE",
    "layered_graph_from_firing",
    "name_matched_latents",
    "node_id",
    "parse_node",
    "recover_timestep_graph",
]
