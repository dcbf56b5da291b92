"""The diffusion world's concept graph across denoising timesteps: image-level firing, naming, score.

Levels are timesteps, noisiest first (level 0 = most abstract).  Three steps, each a plain
function on tensors:

1. :func:`image_firing`: a latent *fires in an image* at a timestep when its SAE code is
   non-zero at one or more of the image's tokens (spatial positions of the hooked feature map).
   Concepts of this world are image-level facts, and a part need not sit on the same tokens as
   the object it composes (the smoke is above the chimney), so co-firing is counted per image.
2. :func:`~sae_causal_plugin.graph.layered.recover_timestep_graph` (the graph layer): the
   child -> parent graph between latents of adjacent timesteps, nodes ``"t{timestep}:{latent}"``.
3. :func:`match_latents` / :func:`score_graph`: every latent is assigned to the concept its image
   firing predicts best (F1 against the detector-read concepts of the same images), if that F1
   is at least ``min_f1``; a latent below it is *unassigned*.  The recovered latent graph is
   collapsed onto concepts: the edge ``c -> p`` maps to ``concept(c) -> concept(p)``; edges that
   map a concept onto itself are dropped.  Precision = correct distinct concept edges / (distinct
   concept edges + edges touching an unassigned latent, each counted as a false positive);
   recall = true edges found / true edges; F1 their harmonic mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import node_id
from sae_causal_plugin.graph.matching import best_per_row, firing_f1

DEFAULT_MIN_F1 = 0.8


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
        for i, (j, b) in best_per_row(firing_f1(f.bool(), concepts.bool()), min_f1).items():
            out[node_id(t, i, prefix="t")] = (concept_names[j], b)
    return out


def best_latents(
    firing: Mapping[int, Tensor], concepts: Tensor, concept_names: Sequence[str]
) -> dict[str, dict[int, tuple[int, float]]]:
    """For every concept and timestep, the latent whose firing predicts it best (and the F1).

    Returns ``{concept: {timestep: (latent, f1)}}``.
    """
    out: dict[str, dict[int, tuple[int, float]]] = {c: {} for c in concept_names}
    for t, f in firing.items():
        best, idx = firing_f1(f.bool(), concepts.bool()).max(dim=0)
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
    "DEFAULT_MIN_F1",
    "best_latents",
    "image_firing",
    "match_latents",
    "score_graph",
]
