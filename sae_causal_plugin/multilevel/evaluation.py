"""Scores of per-level SAEs and layered graphs against a known multi-level world (pure maths).

* :func:`level_mcc`: SAELens's ``mean_correlation_coefficient`` (Hungarian matching on absolute
  cosine of decoder rows vs. true concept directions, mean matched ``|cos|``).
* :func:`match_latents`: the latent -> concept matching that the edge scores use.
* :func:`edge_scores`: precision / recall / F1 / structural Hamming distance of a recovered
  layered graph, after renaming its latents to the concepts they match.
* :func:`edge_jaccard`: agreement of two recovered graphs (e.g. two training seeds), matching
  the latents of one run to those of the other by decoder cosine; no ground truth needed.
* :func:`merged_latents` and :func:`layered_diagnosis`: the two causes of a wrong layered graph
  kept apart: the dictionary (concepts without a latent, latents that merge two concepts, true
  edges lost because an end has no latent) and the graph step (wrong and missed edges between
  matched latents).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

from jaxtyping import Float
from sae_lens.synthetic.evals import mean_correlation_coefficient
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import node_id, parse_node
from sae_causal_plugin.graph.matching import abs_cosine, one_to_one

Edge = tuple[str, str]


def level_mcc(W_dec: Float[Tensor, "d_sae d"], feature_vectors: Float[Tensor, "n d"]) -> float:
    """Mean matched absolute cosine between decoder rows and the true concept directions."""
    return float(mean_correlation_coefficient(W_dec.detach().float().cpu(), feature_vectors.detach().float().cpu()))


def match_latents(
    W_dec: Float[Tensor, "d_sae d"], targets: Float[Tensor, "n d"], min_cosine: float = 0.5
) -> dict[int, int]:
    """One-to-one ``latent -> target row`` by Hungarian matching on ``|cos|`` (kept if ``>= min_cosine``)."""
    return {r: c for r, (c, _) in one_to_one(abs_cosine(W_dec, targets), min_cosine).items()}


def rename_edges(graph: ConceptGraph, matchings: Sequence[dict[int, int]]) -> tuple[set[Edge], int]:
    """Edges of ``graph`` renamed through per-level matchings; also the count of edges with an
    unmatched endpoint (dropped from the set)."""
    out: set[Edge] = set()
    unmatched = 0
    for child, parent in graph.edges:
        (lc, ic), (lp, ip) = parse_node(child), parse_node(parent)
        if ic in matchings[lc] and ip in matchings[lp]:
            out.add((node_id(lc, matchings[lc][ic]), node_id(lp, matchings[lp][ip])))
        else:
            unmatched += 1
    return out, unmatched


def edge_scores(recovered: ConceptGraph, truth: ConceptGraph, matchings: Sequence[dict[int, int]]) -> dict[str, float]:
    """Precision, recall, F1 and structural Hamming distance of ``recovered`` against ``truth``.

    A recovered edge is correct when both latents are matched (:func:`match_latents`) and the
    matched concepts form a true edge; every other recovered edge (wrong, or touching an
    unmatched latent) is a false positive. ``shd = false positives + missed true edges`` (no
    reversals can occur: every edge goes from a finer to a coarser level).
    """
    true_edges = set(truth.edges)
    renamed, unmatched = rename_edges(recovered, matchings)
    n_recovered = len(recovered.edges)
    tp = len(renamed & true_edges)
    fp = n_recovered - tp
    fn = len(true_edges - renamed)
    precision = tp / n_recovered if n_recovered else 0.0
    recall = tp / len(true_edges) if true_edges else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"edge_precision": precision, "edge_recall": recall, "edge_f1": f1, "shd": float(fp + fn),
            "n_recovered": float(n_recovered), "n_true": float(len(true_edges)), "n_unmatched": float(unmatched)}


def edge_jaccard(graph_a: ConceptGraph, graph_b: ConceptGraph, decoders_a: Sequence[Tensor],
                 decoders_b: Sequence[Tensor], min_cosine: float = 0.5) -> float:
    """Jaccard index of two graphs' edge sets after matching run B's latents to run A's.

    Latents of B are matched level by level to latents of A by Hungarian matching on decoder
    ``|cos|``; B's edges are renamed into A's ids (an edge touching an unmatched latent counts
    as its own, unshared edge). Two empty graphs agree perfectly (1.0).
    """
    matchings = [match_latents(wb, wa, min_cosine) for wa, wb in zip(decoders_a, decoders_b)]
    edges_a = set(graph_a.edges)
    renamed, unmatched = rename_edges(graph_b, matchings)
    union = len(edges_a | renamed) + unmatched
    return 1.0 if union == 0 else len(edges_a & renamed) / union


def merged_latents(
    W_dec: Float[Tensor, "d_sae d"], targets: Float[Tensor, "n d"], single: float = 0.8, pair: float = 0.9,
    balance: float = 0.3,
) -> list[tuple[int, int, int]]:
    """Latents whose decoder row is a mix of two concepts: ``(latent, concept_a, concept_b)``.

    A latent counts as merged when no single concept explains its (unit) row (best ``|cos|`` below
    ``single``) but the span of two concepts does (norm of the projection at least ``pair``), with
    the smaller of the two least-squares weights at least ``balance`` times the larger.
    """
    rows = torch.nn.functional.normalize(W_dec.detach().float().cpu(), dim=1)
    t = torch.nn.functional.normalize(targets.detach().float().cpu(), dim=1)
    best_single = (rows @ t.T).abs().max(dim=1).values
    out = []
    for latent in torch.nonzero(best_single < single).flatten().tolist():
        best: tuple[float, int, int] | None = None
        for a, b in itertools.combinations(range(t.shape[0]), 2):
            basis = t[[a, b]].T  # [d, 2]
            w = torch.linalg.lstsq(basis, rows[latent][:, None]).solution.flatten()
            fit = float((basis @ w).norm())
            small, large = sorted(w.abs().tolist())
            if fit >= pair and small >= balance * large and (best is None or fit > best[0]):
                best = (fit, a, b)
        if best is not None:
            out.append((latent, best[1], best[2]))
    return out


def layered_diagnosis(
    recovered: ConceptGraph, truth: ConceptGraph, matchings: Sequence[dict[int, int]],
    decoders: Sequence[Tensor], feature_vectors: Sequence[Tensor],
) -> dict[str, Any]:
    """Why a layered graph is wrong, with the dictionary's and the graph step's share apart.

    Dictionary: ``concepts_with_latent`` and ``merged_latents`` per level, ``edges_lost_to_dictionary``
    (true edges with an end that no latent matches) and ``recovered_unmatched`` (recovered edges
    touching an unmatched latent). Graph step, on the edges whose two ends are matched:
    ``graph_missed`` and ``graph_wrong`` edges and ``matched_precision`` / ``matched_recall``.
    """
    true_edges = set(truth.edges)
    renamed, unmatched = rename_edges(recovered, matchings)
    matched_concepts = [set(m.values()) for m in matchings]

    def observable(edge: Edge) -> bool:
        (lc, ic), (lp, ip) = parse_node(edge[0]), parse_node(edge[1])
        return ic in matched_concepts[lc] and ip in matched_concepts[lp]

    observable_true = {e for e in true_edges if observable(e)}
    correct = renamed & true_edges
    return {
        "concepts_with_latent": [len(m) for m in matchings],
        "concepts": [int(fv.shape[0]) for fv in feature_vectors],
        "merged_latents": [len(merged_latents(w, fv)) for w, fv in zip(decoders, feature_vectors)],
        "edges_lost_to_dictionary": len(true_edges) - len(observable_true),
        "recovered_unmatched": unmatched,
        "graph_missed": len(observable_true - renamed),
        "graph_wrong": len(renamed - true_edges),
        "matched_precision": len(correct) / len(renamed) if renamed else 0.0,
        "matched_recall": len(correct & observable_true) / len(observable_true) if observable_true else 1.0,
    }
