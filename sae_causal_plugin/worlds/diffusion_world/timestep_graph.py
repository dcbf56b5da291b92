"""A concept graph across denoising timesteps from per-timestep SAEs, and its score.

Levels are timesteps, noisiest first (level 0 = most abstract).  Three steps, each a plain
function on tensors:

1. :func:`image_firing`: a latent *fires in an image* at a timestep when its SAE code is
   non-zero at one or more of the image's tokens (spatial positions of the hooked feature map).
   Concepts of this world are image-level facts, and a part need not sit on the same tokens as
   the object it composes (the smoke is above the chimney), so co-firing is counted per image.
2. :func:`recover_timestep_graph`: streaming co-firing statistics over all latents of all levels
   (:class:`~sae_causal_plugin.graph.CoFiringStats`, memory grows with co-firing pairs), then
   edges ``child -> parent`` between **adjacent levels only** (child at the less noisy timestep):

   * candidate: ``count(child) >= min_support``, ``P(parent | child) >= min_conditional``,
     ``lift >= min_lift`` and ``P(child | parent) <= max_reverse`` -- the parent must fire
     substantially without the child.  Two latents that imply each other are one concept seen
     at two timesteps (persistence), not a composition;
   * minimal parent sets: among the candidate parents of a child, ``p`` is dropped when another
     candidate ``q`` that fires less often nearly implies it,
     ``P(p | q) >= min_conditional - explain_margin`` (``p`` is then an ancestor reached through
     ``q``, not a parent).

   Node ids are ``"t{timestep}:{latent}"`` with attributes ``level``, ``timestep``, ``latent``,
   ``firing_count``.
3. :func:`match_latents` / :func:`score_graph`: every latent is assigned to the concept its image
   firing predicts best (F1 against the detector-read concepts of the same images), if that F1
   is at least ``min_f1``; a latent below it is *unassigned*.  The recovered latent graph is
   collapsed onto concepts: the edge ``c -> p`` maps to ``concept(c) -> concept(p)``; edges that
   map a concept onto itself are dropped.  Precision = correct distinct concept edges / (distinct
   concept edges + edges touching an unassigned latent, each counted as a false positive);
   recall = true edges found / true edges; F1 their harmonic mean.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin.graph import CoFiringStats, ConceptGraph

DEFAULT_MIN_CONDITIONAL = 0.9
DEFAULT_MIN_SUPPORT = 20
DEFAULT_MIN_LIFT = 1.5
DEFAULT_MAX_REVERSE = 0.9
DEFAULT_EXPLAIN_MARGIN = 0.1
DEFAULT_MIN_F1 = 0.8


def node_id(timestep: int, latent: int) -> str:
    """Graph node id of latent ``latent`` of the SAE at ``timestep``."""
    return f"t{int(timestep)}:{int(latent)}"


def parse_node(node: str) -> tuple[int, int]:
    """``"t501:12" -> (501, 12)``."""
    head, tail = str(node).split(":")
    return int(head[1:]), int(tail)


@torch.no_grad()
def image_firing(
    sae: Any, activations: Tensor, tokens_per_image: int, batch_images: int = 256
) -> Tensor:
    """Which latents fire in each image: ``bool [n_images, d_sae]``.

    Args:
        sae: a SAELens SAE (``encode``).
        activations: ``[n_images * tokens_per_image, d_in]``, the tokens of each image together
            (the order of :func:`sae_causal_plugin.diffusion.to_tokens`).
        tokens_per_image: tokens per image (``H * W`` of the hooked feature map).
    """
    if activations.ndim != 2 or activations.shape[0] % tokens_per_image:
        raise ValueError(
            f"activations must be [n_images * {tokens_per_image}, d_in], got {tuple(activations.shape)}"
        )
    n = activations.shape[0] // tokens_per_image
    out = []
    rows = batch_images * tokens_per_image
    for s in range(0, activations.shape[0], rows):
        code = sae.encode(activations[s : s + rows].to(sae.W_dec.device))
        out.append((code != 0).reshape(-1, tokens_per_image, code.shape[-1]).any(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, int(sae.cfg.d_sae), dtype=torch.bool)


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
    """Child -> parent graph between latents of adjacent timesteps (module docstring, step 2).

    Args:
        firing: ``{timestep: bool [n_images, d_sae]}`` (rows = the same images at every
            timestep), e.g. from :func:`image_firing`.  Levels are ordered noisiest first.
        min_conditional, min_support, min_lift, max_reverse, explain_margin: edge rules.
        batch_size: images per statistics update.
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
    total = sum(widths)
    level_of = torch.cat([torch.full((w,), i) for i, w in enumerate(widths)])
    stats = CoFiringStats(total)
    for s in range(0, n, batch_size):
        stats.update(torch.cat([f[s : s + batch_size].bool() for _, f in items], dim=1))
    counts = stats.firing_counts.cpu()

    def name(g: int) -> str:
        lvl = int(level_of[g])
        return node_id(items[lvl][0], g - offsets[lvl])

    table = {k: v.cpu() for k, v in stats.edge_table().items()}
    child, parent = table["child"], table["parent"]
    keep = level_of[child] == level_of[parent] + 1
    keep &= table["count_child"] >= min_support
    keep &= table["p_parent_given_child"] >= min_conditional - 1e-12
    keep &= table["lift"] >= min_lift
    keep &= table["p_child_given_parent"] <= max_reverse + 1e-12
    cand = {k: v[keep] for k, v in table.items()}
    parents: dict[int, list[int]] = defaultdict(list)
    row_of: dict[tuple[int, int], int] = {}
    for r, (c, p) in enumerate(zip(cand["child"].tolist(), cand["parent"].tolist())):
        parents[c].append(p)
        row_of[c, p] = r

    # minimal parent sets: drop p when a finer candidate parent q of the same child implies it
    dropped: set[tuple[int, int]] = set()
    threshold = min_conditional - explain_margin
    for c, ps in parents.items():
        if len(ps) < 2:
            continue
        q_idx = torch.tensor([q for q in ps for p in ps if q != p])
        p_idx = torch.tensor([p for q in ps for p in ps if q != p])
        co, _ = stats.lookup(q_idx, p_idx)
        cond = co.cpu().double() / counts[q_idx].clamp(min=1).double()
        for q, p, pr in zip(q_idx.tolist(), p_idx.tolist(), cond.tolist()):
            finer = (int(counts[q]), -q) < (int(counts[p]), -p)
            if finer and pr >= threshold - 1e-12:
                dropped.add((c, p))

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
        if (c, p) not in dropped:
            graph.add_edge(name(c), name(p), **{k: cand[k][r].item() for k in stat_keys})
    graph.meta.update(
        timesteps=[t for t, _ in items], n_images=n, min_conditional=min_conditional,
        min_support=min_support, min_lift=min_lift, max_reverse=max_reverse,
        explain_margin=explain_margin, n_candidate_edges=len(row_of),
    )
    return graph


def f1_matrix(fired: Tensor, concepts: Tensor) -> Tensor:
    """F1 of "latent fires" against "concept present" for every pair: ``[d_sae, n_concepts]``."""
    f = fired.double()
    c = concepts.double()
    tp = f.T @ c
    n_f = f.sum(0)[:, None]
    n_c = c.sum(0)[None, :]
    denom = n_f + n_c
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))


def match_latents(
    firing: Mapping[int, Tensor],
    concepts: Tensor,
    concept_names: Sequence[str],
    *,
    min_f1: float = DEFAULT_MIN_F1,
) -> dict[str, tuple[str, float]]:
    """Assign every latent to the concept its firing predicts best (F1 >= ``min_f1``).

    Args:
        firing: ``{timestep: bool [n_images, d_sae]}``.
        concepts: ``bool [n_images, n_concepts]``, the detector-read concepts of the same images.
        concept_names: names of the concept columns.

    Returns:
        ``{node id: (concept, f1)}`` for assigned latents only.
    """
    if not 0.0 <= min_f1 <= 1.0:
        raise ValueError(f"min_f1 must lie in [0, 1], got {min_f1}")
    out: dict[str, tuple[str, float]] = {}
    for t, f in firing.items():
        if f.shape[0] != concepts.shape[0]:
            raise ValueError(
                f"firing at t={t} has {f.shape[0]} images but concepts has {concepts.shape[0]}"
            )
        scores = f1_matrix(f.bool(), concepts.bool())
        best, idx = scores.max(dim=1)
        for i, (b, j) in enumerate(zip(best.tolist(), idx.tolist())):
            if b >= min_f1:
                out[node_id(t, i)] = (concept_names[j], b)
    return out


def best_latents(
    firing: Mapping[int, Tensor], concepts: Tensor, concept_names: Sequence[str]
) -> dict[str, dict[int, tuple[int, float]]]:
    """For every concept and timestep, the latent whose firing predicts it best (and the F1).

    Returns ``{concept: {timestep: (latent, f1)}}``.
    """
    out: dict[str, dict[int, tuple[int, float]]] = {c: {} for c in concept_names}
    for t, f in firing.items():
        scores = f1_matrix(f.bool(), concepts.bool())
        best, idx = scores.max(dim=0)
        for j, c in enumerate(concept_names):
            out[c][t] = (int(idx[j]), float(best[j]))
    return out


def score_graph(
    graph: ConceptGraph,
    assignment: Mapping[str, tuple[str, float]],
    true_edges: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    """Edge precision / recall / F1 of a latent graph against true concept edges (module docstring).

    Returns ``precision``, ``recall``, ``f1``, ``concept_edges`` (sorted list of the distinct
    recovered concept edges), ``n_latent_edges``, ``n_unassigned_edges``, ``n_self_edges``,
    ``missing`` (true edges not found) and ``wrong`` (recovered concept edges that are not true).
    """
    truth = set(true_edges)
    concept_edges: set[tuple[str, str]] = set()
    unassigned = 0
    self_edges = 0
    for c, p in graph.edges:
        if c not in assignment or p not in assignment:
            unassigned += 1
            continue
        a, b = assignment[c][0], assignment[p][0]
        if a == b:
            self_edges += 1
            continue
        concept_edges.add((a, b))
    correct = concept_edges & truth
    n_pred = len(concept_edges) + unassigned
    precision = len(correct) / n_pred if n_pred else 0.0
    recall = len(correct) / len(truth) if truth else 0.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "concept_edges": sorted(concept_edges),
        "n_latent_edges": len(graph.edges),
        "n_unassigned_edges": unassigned,
        "n_self_edges": self_edges,
        "missing": sorted(truth - concept_edges),
        "wrong": sorted(concept_edges - truth),
    }


__all__ = [
    "DEFAULT_EXPLAIN_MARGIN",
    "DEFAULT_MAX_REVERSE",
    "DEFAULT_MIN_CONDITIONAL",
    "DEFAULT_MIN_F1",
    "DEFAULT_MIN_LIFT",
    "DEFAULT_MIN_SUPPORT",
    "best_latents",
    "f1_matrix",
    "image_firing",
    "match_latents",
    "node_id",
    "parse_node",
    "recover_timestep_graph",
    "score_graph",
]
