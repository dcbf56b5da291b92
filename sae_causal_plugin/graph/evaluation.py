"""Score a recovered concept graph against the ground-truth hierarchy of a SAELens
:class:`~sae_lens.synthetic.SyntheticModel`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .concept_graph import ConceptGraph, NodeId


def _hierarchy_of(synthetic_model: Any) -> Any:
    hierarchy = getattr(synthetic_model, "hierarchy", synthetic_model)
    if hierarchy is None or not hasattr(hierarchy, "roots"):
        raise ValueError(
            "synthetic_model has no hierarchy; build it with SyntheticModelConfig(hierarchy=HierarchyConfig(...))"
        )
    return hierarchy


def true_hierarchy_graph(synthetic_model: Any) -> ConceptGraph:
    """Ground-truth :class:`ConceptGraph` on feature indices (edges child -> parent).

    Accepts a ``SyntheticModel`` or a ``Hierarchy``.  Organisational nodes without a
    ``feature_index`` are skipped: their children attach to the nearest ancestor that has
    one (as SAELens's hierarchy modifier does).  ``level`` = number of feature ancestors.
    """
    graph = ConceptGraph()
    stack = [(root, None, 0) for root in reversed(_hierarchy_of(synthetic_model).roots)]
    while stack:
        node, parent, depth = stack.pop()
        if node.feature_index is not None:
            idx = int(node.feature_index)
            graph.add_concept(idx, level=depth)
            if parent is not None:
                graph.add_edge(idx, parent)
            parent, depth = idx, depth + 1
        stack.extend((child, parent, depth) for child in reversed(list(node.children)))
    return graph


def match_latents_to_features(
    W_dec: Float[Tensor, "d_sae d_in"],
    feature_vectors: Float[Tensor, "n_features d_in"],
    min_cosine: float = 0.5,
) -> dict[int, tuple[int, float]]:
    """One-to-one matching ``latent -> (feature, |cos|)``.

    Hungarian matching (``scipy.optimize.linear_sum_assignment``) maximising the total
    absolute cosine similarity between decoder rows and true feature vectors; a matched
    pair is kept only when ``|cos| >= min_cosine``.  Builds a dense ``[d_sae, n_features]``
    matrix, so it is meant for evaluation-sized models.
    """
    if W_dec.shape[1] != feature_vectors.shape[1]:
        raise ValueError(
            f"sae: decoder d_in={W_dec.shape[1]} does not match the synthetic model's "
            f"hidden_dim={feature_vectors.shape[1]}"
        )
    a = torch.nn.functional.normalize(W_dec.detach().float().cpu(), dim=1)
    b = torch.nn.functional.normalize(feature_vectors.detach().float().cpu(), dim=1)
    cos = (a @ b.T).abs().numpy().astype(np.float64)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return {
        int(r): (int(c), float(cos[r, c])) for r, c in zip(rows, cols) if cos[r, c] >= min_cosine
    }


def _latent_index(node: NodeId) -> int | None:
    """``12 -> 12``; ``"L1:12" -> 12``; anything else -> None."""
    if isinstance(node, int):
        return node
    tail = str(node).rsplit(":", 1)[-1]
    return int(tail) if tail.lstrip("-").isdigit() else None


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@torch.no_grad()
def evaluate_hierarchy_recovery(
    graph: ConceptGraph,
    sae: Any,
    synthetic_model: Any,
    *,
    num_samples: int = 16384,
    min_cosine: float = 0.5,
    batch_size: int = 4096,
) -> dict[str, float | int]:
    """Precision / recall of recovered edges and absorption, against the true hierarchy.

    Matching rule: each SAE latent is matched to at most one true feature by Hungarian
    matching of ``sae.W_dec`` rows to ``synthetic_model.feature_dict.feature_vectors`` on
    absolute cosine similarity (:func:`match_latents_to_features`); the match counts only
    if ``|cos| >= min_cosine``.  Graph nodes are latent indices (``int``, or ``"L{l}:{i}"``
    strings whose index ``i`` is used).

    * True edges: ``child feature -> parent feature`` for every parent/child pair of
      ``synthetic_model.hierarchy`` (:func:`true_hierarchy_graph`).
    * A recovered edge ``c -> p`` is correct iff both latents are matched and
      ``feature(c) -> feature(p)`` is a true edge.
    * ``precision = correct / all recovered edges``: edges touching an unmatched latent
      count as false positives.
    * ``recall = true edges found / observable true edges``, where a true edge is
      observable when both of its features fired in the ``num_samples`` evaluation
      samples drawn with ``synthetic_model.sample_with_features``.
    * ``absorption``: over true pairs whose parent feature has a matched latent, the
      fraction of child-feature firings in which that parent latent does NOT fire,
      pooled over pairs (i.e. weighted by child firings).  ``nan`` if no such firing.

    Ratios with an empty denominator are 0 (``nan`` for absorption).

    Returns:
        ``precision``, ``recall``, ``f1``, ``absorption``, ``n_true_edges``,
        ``n_observable_true_edges``, ``n_recovered_edges``, ``n_correct_edges``,
        ``n_matched``, ``mean_matched_cosine``.
    """
    if not 0.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must lie in [0, 1], got {min_cosine}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    truth = true_hierarchy_graph(synthetic_model)
    true_edges = set(truth.edges)
    match = match_latents_to_features(
        sae.W_dec, synthetic_model.feature_dict.feature_vectors, min_cosine
    )
    feature_of = {lat: f for lat, (f, _) in match.items()}
    latent_of = {f: lat for lat, f in feature_of.items()}

    # --- sample: feature firing counts and absorption tallies
    n_features = synthetic_model.feature_dict.feature_vectors.shape[0]
    feat_count = torch.zeros(n_features, dtype=torch.int64)
    pairs = [(c, p) for c, p in true_edges if p in latent_of]
    child_idx = torch.tensor([c for c, _ in pairs], dtype=torch.int64)
    parent_lat = torch.tensor([latent_of[p] for _, p in pairs], dtype=torch.int64)
    child_fires = torch.zeros(len(pairs), dtype=torch.int64)
    absorbed = torch.zeros(len(pairs), dtype=torch.int64)
    sae_device = sae.W_dec.device
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        hidden, feats = synthetic_model.sample_with_features(n)
        feats = (feats.to_dense() if feats.is_sparse else feats).cpu() > 0
        feat_count += feats.sum(0)
        if pairs:
            codes = sae.encode(hidden.to(sae_device))
            codes = codes.to_dense() if codes.is_sparse else codes
            parent_on = (codes[:, parent_lat.to(sae_device)] != 0).cpu()
            child_on = feats[:, child_idx]
            child_fires += child_on.sum(0)
            absorbed += (child_on & ~parent_on).sum(0)
        done += n

    observable = {(c, p) for c, p in true_edges if feat_count[c] > 0 and feat_count[p] > 0}
    recovered = graph.edges
    found: set[tuple[int, int]] = set()
    correct = 0
    for c, p in recovered:
        lc, lp = _latent_index(c), _latent_index(p)
        fc, fp = feature_of.get(lc), feature_of.get(lp)  # type: ignore[arg-type]
        if fc is not None and fp is not None and (fc, fp) in true_edges:
            correct += 1
            found.add((fc, fp))
    precision = correct / len(recovered) if recovered else 0.0
    recall = len(found & observable) / len(observable) if observable else 0.0
    total_child = int(child_fires.sum())
    absorption = float(absorbed.sum()) / total_child if total_child else math.nan
    cosines = [c for _, c in match.values()]
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "absorption": absorption,
        "n_true_edges": len(true_edges),
        "n_observable_true_edges": len(observable),
        "n_recovered_edges": len(recovered),
        "n_correct_edges": correct,
        "n_matched": len(match),
        "mean_matched_cosine": float(np.mean(cosines)) if cosines else 0.0,
    }
