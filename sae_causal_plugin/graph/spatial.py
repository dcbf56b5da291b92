"""Spatial concept graphs across timesteps: per-token firing, containment and minimal parent sets.

A *level* is a per-token SAE at one denoising timestep, noisiest (coarsest) first.  The input is,
per level, which latents fire on which token of which image: ``bool [n_images, n_tokens, d_sae]``,
the same images at every level.  Edges point fine -> coarse between **adjacent levels only**; nodes
are ``"t{timestep}:{latent}"`` (:func:`~sae_causal_plugin.graph.layered.node_id`).

Rules of :func:`recover_spatial_timestep_graph`, for a child latent ``c`` (finer level) and a
candidate parent ``p`` (the adjacent coarser level):

1. **Support.**  A latent enters the graph when it fires in at least ``min_support`` images.
2. **Dependence and persistence.**  ``p``'s tokens must be positively dependent on ``c``'s:
   ``token_lift = containment(c, p) / (share of all tokens where p is active) >= min_lift``
   (over images a shared part's lift with each of its parents can be near 1, over tokens it is
   large).  And ``p`` must not be the same concept seen again (persistence): over images,
   ``P(c | p) <= max_reverse``, so ``p`` must fire in images without ``c``.
3. **Spatial containment.**  ``containment(c, p)``: the share of ``c``'s active tokens that lie in
   ``p``'s active tokens of the same image.  A part lies inside its whole.
4. **Minimal parent set.**  Parents are chosen greedily to cover ``c``'s active tokens: each step
   takes the candidate that covers the most of what is still uncovered (ties within
   ``tie_margin``: the one with the smaller active region, the tighter container), while it covers
   at least ``min_gain`` of ``c``'s tokens; a parent whose removal loses less than ``min_gain`` of
   the covered tokens is dropped again.  The edges are kept when the set covers at least
   ``min_coverage`` of ``c``'s tokens.  A part shared by two wholes (a window in a wall or in a
   car's cabin) gets both parents, each covering the images where it holds the part.

Edges carry ``containment``, ``gain`` (share of ``c``'s tokens the parent adds to the set),
``coverage`` (of the whole set), the image-level ``count_child`` / ``count_parent`` /
``count_both`` / ``p_parent_given_child`` / ``p_child_given_parent`` / ``lift``,
``token_lift`` and ``child_tokens``.  :func:`heatmap_iou` scores a latent's active tokens against a true mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .concept_graph import ConceptGraph
from .layered import node_id

#: Documented defaults of :func:`recover_spatial_timestep_graph`.
SPATIAL_DEFAULTS: dict[str, Any] = dict(
    min_support=20, min_lift=1.2, max_reverse=0.9, min_containment=0.3, min_gain=0.15, min_coverage=0.8,
    tie_margin=0.05,
)


def _check_levels(firing: Mapping[int, Tensor] | Sequence[tuple[int, Tensor]]) -> list[tuple[int, Tensor]]:
    items = sorted(dict(firing).items(), key=lambda kv: -kv[0])
    if len(items) < 2:
        raise ValueError("firing: give the per-token firing of at least two timesteps")
    first = items[0][1]
    for t, f in items:
        if not isinstance(f, Tensor) or f.ndim != 3:
            raise ValueError(f"firing at t={t} must be a bool tensor [n_images, n_tokens, d_sae], "
                             f"got {getattr(f, 'shape', type(f).__name__)}")
        if f.shape[:2] != first.shape[:2]:
            raise ValueError(f"firing at t={t} has shape {tuple(f.shape)}; every timestep needs the same "
                             f"[n_images, n_tokens] = {tuple(first.shape[:2])}")
    return [(int(t), f.bool()) for t, f in items]


def containment_counts(child: Bool[Tensor, "n tokens dc"], parent: Bool[Tensor, "n tokens dp"],
                       batch_images: int = 256) -> Float[Tensor, "dc dp"]:
    """``[dc, dp]``: tokens where child latent ``i`` and parent latent ``j`` are both active."""
    out = torch.zeros(child.shape[2], parent.shape[2], dtype=torch.float64)
    for s in range(0, child.shape[0], batch_images):
        c = child[s : s + batch_images].flatten(0, 1).float()
        p = parent[s : s + batch_images].flatten(0, 1).float()
        out += (c.T @ p).double()
    return out


def _cover(child_rows: Bool[Tensor, "m k"], areas: list[float], *, min_gain: float, tie_margin: float
           ) -> tuple[list[int], list[float]]:
    """Greedy cover of the child's tokens (rows) by candidate parents (columns), then pruning."""
    m = child_rows.shape[0]
    chosen: list[int] = []
    covered = torch.zeros(m, dtype=torch.bool)
    while True:
        gains = (child_rows & ~covered[:, None]).sum(0).double() / max(m, 1)
        if chosen:
            gains[chosen] = -1.0
        best = float(gains.max()) if gains.numel() else -1.0
        if best < min_gain:
            break
        near = [j for j in range(gains.numel()) if float(gains[j]) >= best - tie_margin]
        pick = min(near, key=lambda j: (areas[j], -float(gains[j]), j))
        chosen.append(pick)
        covered |= child_rows[:, pick]
    while chosen:
        union = child_rows[:, chosen].any(1)
        losses = [float((union & ~child_rows[:, [i for i in chosen if i != j]].any(1)).sum()) / max(m, 1)
                  for j in chosen]
        weakest = min(range(len(chosen)), key=losses.__getitem__)
        if losses[weakest] >= min_gain:
            return chosen, losses
        chosen.pop(weakest)
    return [], []


def recover_spatial_timestep_graph(
    firing: Mapping[int, Tensor] | Sequence[tuple[int, Tensor]],
    *,
    min_support: int = SPATIAL_DEFAULTS["min_support"],
    min_lift: float = SPATIAL_DEFAULTS["min_lift"],
    max_reverse: float = SPATIAL_DEFAULTS["max_reverse"],
    min_containment: float = SPATIAL_DEFAULTS["min_containment"],
    min_gain: float = SPATIAL_DEFAULTS["min_gain"],
    min_coverage: float = SPATIAL_DEFAULTS["min_coverage"],
    tie_margin: float = SPATIAL_DEFAULTS["tie_margin"],
) -> ConceptGraph:
    """Child -> parent graph of per-token latents between adjacent timesteps (module docstring).

    Args:
        firing: ``{timestep: bool [n_images, n_tokens, d_sae]}``.
        min_support: images a latent must fire in.
        min_lift, max_reverse: the dependence and persistence rules (2).
        min_containment: a candidate parent must hold at least this share of the child's tokens.
        min_gain, min_coverage, tie_margin: the parent-set rules (4).
    """
    items = _check_levels(firing)
    for name, v in (("max_reverse", max_reverse), ("min_containment", min_containment), ("min_gain", min_gain),
                    ("min_coverage", min_coverage), ("tie_margin", tie_margin)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    if min_support < 1:
        raise ValueError(f"min_support must be at least 1, got {min_support}")
    n = items[0][1].shape[0]
    images = [f.any(1) for _, f in items]
    counts = [im.sum(0) for im in images]
    graph = ConceptGraph()
    for lvl, (t, _) in enumerate(items):
        for j in torch.nonzero(counts[lvl] >= min_support).flatten().tolist():
            graph.add_concept(node_id(t, j, prefix="t"), level=lvl, timestep=t, latent=j,
                              firing_count=int(counts[lvl][j]), firing_rate=float(counts[lvl][j]) / max(n, 1),
                              active_tokens=float(items[lvl][1][:, :, j].sum()) / max(int(counts[lvl][j]), 1))
    for lvl in range(len(items) - 1):
        (tp, coarse), (tc, fine) = items[lvl], items[lvl + 1]
        both_images = images[lvl + 1].T.float() @ images[lvl].float()  # [dc, dp]
        tokens_both = containment_counts(fine, coarse)
        fine_tokens = fine.sum((0, 1)).double()
        coarse_tokens = coarse.sum((0, 1)).double()
        area = coarse_tokens / counts[lvl].clamp(min=1).double()
        token_rate = coarse_tokens / max(coarse.shape[0] * coarse.shape[1], 1)
        for c in torch.nonzero(counts[lvl + 1] >= min_support).flatten().tolist():
            n_c = float(counts[lvl + 1][c])
            n_p = counts[lvl].double().clamp(min=1)
            lift = both_images[c].double() * n / (n_c * n_p)
            reverse = both_images[c].double() / n_p
            contain = tokens_both[c] / max(float(fine_tokens[c]), 1.0)
            token_lift = contain / token_rate.clamp(min=1e-12)
            ok = (counts[lvl] >= min_support) & (token_lift >= min_lift) & (reverse <= max_reverse + 1e-12)
            ok &= contain >= min_containment
            cands = torch.nonzero(ok).flatten().tolist()
            if not cands:
                continue
            rows = fine[:, :, c]
            child_rows = torch.stack([coarse[:, :, p][rows] for p in cands], 1)
            chosen, gains = _cover(child_rows, [float(area[p]) for p in cands], min_gain=min_gain,
                                   tie_margin=tie_margin)
            if not chosen:
                continue
            coverage = float(child_rows[:, chosen].any(1).double().mean())
            if coverage < min_coverage:
                continue
            for j, gain in zip(chosen, gains):
                p = cands[j]
                both = float(both_images[c, p])
                graph.add_edge(node_id(tc, c, prefix="t"), node_id(tp, p, prefix="t"),
                               containment=float(contain[p]), gain=gain, coverage=coverage,
                               count_child=int(n_c), count_parent=int(counts[lvl][p]), count_both=int(both),
                               p_parent_given_child=both / n_c, p_child_given_parent=both / float(counts[lvl][p]),
                               lift=float(lift[p]), token_lift=float(token_lift[p]), child_tokens=int(fine_tokens[c]))
    graph.meta.update(timesteps=[t for t, _ in items], n_images=n, min_support=min_support, min_lift=min_lift,
                      max_reverse=max_reverse, min_containment=min_containment, min_gain=min_gain,
                      min_coverage=min_coverage, tie_margin=tie_margin)
    return graph


def heatmap_iou(active: Bool[Tensor, "n tokens"], mask: Bool[Tensor, "n tokens"]) -> float:
    """Intersection over union of a latent's active tokens and a true mask, pooled over images
    (``sum |A & M| / sum |A | M|``; 0 when both are empty)."""
    if active.shape != mask.shape:
        raise ValueError(f"active {tuple(active.shape)} and mask {tuple(mask.shape)} must have the same shape")
    union = float((active | mask).sum())
    return float((active & mask).sum()) / union if union else 0.0


__all__ = ["SPATIAL_DEFAULTS", "containment_counts", "heatmap_iou", "recover_spatial_timestep_graph"]
