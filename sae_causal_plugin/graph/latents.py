"""Per-latent summaries for a latent browser (pure maths on plain tensors and a :class:`ConceptGraph`).

:func:`summarise_latents` gives, for every latent, its firing rate, decoder norm, matched concept with
firing F1, parents and children in the recovered graph, and the rows where it fires hardest (the caller
turns rows into contexts: text around a token, or an image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .concept_graph import ConceptGraph


@dataclass(frozen=True)
class LatentSummary:
    """One latent: what it fires on and where it sits in the graph."""

    latent: int
    firing_rate: float
    """share of rows where the latent is active"""
    decoder_norm: float
    concept: str | None
    """the true concept it was matched to, if any"""
    firing_f1: float | None
    """F1 of its firing against that concept's presence"""
    parents: tuple[str, ...]
    children: tuple[str, ...]
    top_rows: tuple[int, ...]
    """rows with the largest activation, largest first (only rows where it fires)"""
    top_values: tuple[float, ...]


def summarise_latents(
    codes: Float[Tensor, "n d_sae"],
    decoder: Float[Tensor, "d_sae d_in"],
    graph: ConceptGraph,
    match: Mapping[Any, tuple[str, float]],
    *,
    top_k: int = 5,
    nodes: Sequence[Any] | None = None,
) -> list[LatentSummary]:
    """Summaries of every latent of ``codes`` (SAE activations, one row per sample).

    ``graph`` has the latents as integer nodes (a latent not in it has no parents or children; labels
    come from :meth:`ConceptGraph.node_label`); ``match`` maps latent -> (concept, firing F1).

    Raises:
        ValueError: shapes that do not pair, non-finite codes, or ``top_k < 1``.
    """
    if codes.ndim != 2 or decoder.ndim != 2 or codes.shape[1] != decoder.shape[0]:
        raise ValueError(f"codes {tuple(codes.shape)} must be [n, d_sae] and decoder {tuple(decoder.shape)} "
                         "[d_sae, d_in] with the same d_sae")
    if codes.shape[0] == 0:
        raise ValueError("codes has no rows: pass the SAE activations of at least one sample")
    if not torch.isfinite(codes).all():
        raise ValueError("codes holds NaN or infinite values: check the activations the SAE encoded")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    nodes = list(range(codes.shape[1])) if nodes is None else list(nodes)
    if len(nodes) != codes.shape[1]:
        raise ValueError(f"nodes names {len(nodes)} latents, codes has {codes.shape[1]}: give one node per latent")
    codes = codes.detach().float().cpu()
    rates = (codes > 0).float().mean(0)
    norms = decoder.detach().float().cpu().norm(dim=1)
    values, rows = codes.topk(min(top_k, codes.shape[0]), dim=0)
    out = []
    for latent in range(codes.shape[1]):
        fires = values[:, latent] > 0
        node = nodes[latent]
        concept, f1 = match.get(node, (None, None))
        near = node in graph
        out.append(LatentSummary(
            latent=latent, firing_rate=float(rates[latent]), decoder_norm=float(norms[latent]),
            concept=concept, firing_f1=None if f1 is None else float(f1),
            parents=tuple(graph.node_label(p) for p in graph.parents(node)) if near else (),
            children=tuple(graph.node_label(c) for c in graph.children(node)) if near else (),
            top_rows=tuple(int(r) for r in rows[fires, latent]),
            top_values=tuple(float(v) for v in values[fires, latent]),
        ))
    return out


__all__ = ["LatentSummary", "summarise_latents"]
