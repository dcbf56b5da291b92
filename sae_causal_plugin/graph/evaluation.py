"""Score a recovered concept graph against the ground-truth hierarchy of a SAELens
:class:`~sae_lens.synthetic.SyntheticModel`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .concept_graph import ConceptGraph, NodeId
from .layered import parse_node
from .matching import abs_cosine, one_to_one


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
    return one_to_one(abs_cosine(W_dec, feature_vectors), min_cosine)


def _latent_index(node: NodeId) -> int | None:
    """``12 -> 12``; ``"L1:12" -> 12``; anything else -> None."""
    if isinstance(node, int):
        return node
    try:
        return parse_node(str(node))[1]
    except ValueError:
        return None


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _dense(t: Tensor) -> Tensor:
    return t.to_dense() if t.is_sparse else t


def _ratio(num: float, den: float, empty: float = 0.0) -> float:
    return num / den if den else empty


Encoder = Callable[[Float[Tensor, "n d_in"]], Float[Tensor, "n d_sae"]]


def check_evaluation_inputs(
    sae: Any, synthetic_model: Any, *, num_samples: int, min_cosine: float, batch_size: int
) -> None:
    """Raise ``ValueError`` naming the bad argument (before any sampling)."""
    if not 0.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must lie in [0, 1], got {min_cosine}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    W_dec = getattr(sae, "W_dec", None)
    if not isinstance(W_dec, Tensor) or W_dec.ndim != 2:
        raise ValueError(
            f"sae: needs a 2-D decoder matrix W_dec [d_sae, d_in], got {type(sae).__name__} "
            "without one; pass a SAELens SAE"
        )
    if not callable(getattr(sae, "encode", None)):
        raise ValueError(f"sae: {type(sae).__name__} has no encode(x) method; pass a SAELens SAE")
    _hierarchy_of(synthetic_model)
    vectors = getattr(getattr(synthetic_model, "feature_dict", None), "feature_vectors", None)
    if not isinstance(vectors, Tensor):
        raise ValueError(
            "synthetic_model: no feature_dict.feature_vectors; pass a sae_lens.synthetic.SyntheticModel"
        )
    d_in = getattr(getattr(sae, "cfg", None), "d_in", W_dec.shape[1])
    if W_dec.shape[1] != vectors.shape[1] or d_in != vectors.shape[1]:
        raise ValueError(
            f"sae: d_in={d_in} (decoder rows of length {W_dec.shape[1]}) does not match the "
            f"synthetic model's hidden_dim={vectors.shape[1]}; use an SAE trained on this model"
        )


@dataclass
class PairCounts:
    """Firing tallies over the true edges ``(child, parent)`` whose parent feature has a latent.

    ``support``: ``child`` (child feature present), ``with_child`` (parent and child features
    present), ``without_child`` (parent present, child absent).  ``fired[encoder]``:
    ``absorbed`` (child present, parent latent silent), ``with_child`` / ``without_child``
    (the parent latent fires in those samples).
    """

    pairs: list[tuple[int, int]]
    parent_latents: list[int]
    support: dict[str, Int[Tensor, " pairs"]]
    fired: dict[str, dict[str, Int[Tensor, " pairs"]]]

    def absorption(self, encoder: str) -> float:
        """Pooled fraction of child firings in which the parent latent is silent (``nan`` if none)."""
        total = int(self.support["child"].sum())
        return _ratio(float(self.fired[encoder]["absorbed"].sum()), total, math.nan)


@torch.no_grad()
def sample_pair_counts(
    synthetic_model: Any,
    encoders: Mapping[str, Encoder],
    device: torch.device,
    pairs: list[tuple[int, int]],
    parent_latents: list[int],
    *,
    num_samples: int,
    batch_size: int,
) -> tuple[Int[Tensor, " n_features"], PairCounts]:
    """Stream ``num_samples`` samples: feature firing counts and :class:`PairCounts`."""
    n_features = synthetic_model.feature_dict.feature_vectors.shape[0]
    feature_count = torch.zeros(n_features, dtype=torch.int64)
    child_idx = torch.tensor([c for c, _ in pairs], dtype=torch.int64)
    parent_idx = torch.tensor([p for _, p in pairs], dtype=torch.int64)
    lat = torch.tensor(parent_latents, dtype=torch.int64, device=device)
    keys = ("child", "with_child", "without_child")
    zero = torch.zeros(len(pairs), dtype=torch.int64)
    support = {k: zero.clone() for k in keys}
    fired = {e: {k: zero.clone() for k in ("absorbed", "with_child", "without_child")} for e in encoders}
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        hidden, feats = synthetic_model.sample_with_features(n)
        feats = _dense(feats).cpu() > 0
        feature_count += feats.sum(0)
        done += n
        if not pairs:
            continue
        child_on, parent_on = feats[:, child_idx], feats[:, parent_idx]
        masks = {"child": child_on, "with_child": parent_on & child_on, "without_child": parent_on & ~child_on}
        for k in keys:
            support[k] += masks[k].sum(0)
        x = hidden.to(device)
        for name, encode in encoders.items():
            on = (_dense(encode(x))[:, lat] != 0).cpu()
            fired[name]["absorbed"] += (child_on & ~on).sum(0)
            fired[name]["with_child"] += (masks["with_child"] & on).sum(0)
            fired[name]["without_child"] += (masks["without_child"] & on).sum(0)
    return feature_count, PairCounts(pairs, list(parent_latents), support, fired)


@dataclass
class HierarchyScore:
    """What :func:`evaluate_hierarchy_recovery` and ``diagnose_hierarchy`` share."""

    truth: ConceptGraph
    true_edges: set[tuple[int, int]]
    match: dict[int, tuple[int, float]]
    feature_of: dict[int, int]  # latent -> feature
    latent_of: dict[int, int]  # feature -> latent
    feature_count: Int[Tensor, " n_features"]
    counts: PairCounts
    recovered: list[tuple[NodeId, NodeId]]
    recovered_features: list[tuple[int | None, int | None]]  # (feature(c), feature(p)) per edge
    observable: set[tuple[int, int]]
    found: set[tuple[int, int]]  # true edges that were recovered
    n_correct: int

    @property
    def precision(self) -> float:
        return _ratio(self.n_correct, len(self.recovered))

    @property
    def recall(self) -> float:
        return _ratio(len(self.found & self.observable), len(self.observable))

    @property
    def mean_matched_cosine(self) -> float:
        cosines = [c for _, c in self.match.values()]
        return float(np.mean(cosines)) if cosines else 0.0


def score_hierarchy(
    graph: ConceptGraph,
    sae: Any,
    synthetic_model: Any,
    *,
    encoders: Mapping[str, Encoder],
    num_samples: int,
    min_cosine: float,
    batch_size: int,
) -> HierarchyScore:
    """Match latents to features, sample, and score ``graph`` (inputs already checked)."""
    truth = true_hierarchy_graph(synthetic_model)
    true_edges = set(truth.edges)
    match = match_latents_to_features(sae.W_dec, synthetic_model.feature_dict.feature_vectors, min_cosine)
    feature_of = {lat: f for lat, (f, _) in match.items()}
    latent_of = {f: lat for lat, f in feature_of.items()}
    pairs = sorted((c, p) for c, p in true_edges if p in latent_of)
    feature_count, counts = sample_pair_counts(
        synthetic_model, encoders, sae.W_dec.device, pairs, [latent_of[p] for _, p in pairs],
        num_samples=num_samples, batch_size=batch_size,
    )
    recovered = graph.edges
    recovered_features = [
        (feature_of.get(_latent_index(c)), feature_of.get(_latent_index(p)))  # type: ignore[arg-type]
        for c, p in recovered
    ]
    correct = [e for e in recovered_features if e in true_edges]
    observable = {(c, p) for c, p in true_edges if feature_count[c] > 0 and feature_count[p] > 0}
    return HierarchyScore(
        truth, true_edges, match, feature_of, latent_of, feature_count, counts, recovered,
        recovered_features, observable, set(correct), len(correct),  # type: ignore[arg-type]
    )


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
    check_evaluation_inputs(
        sae, synthetic_model, num_samples=num_samples, min_cosine=min_cosine, batch_size=batch_size
    )
    s = score_hierarchy(
        graph, sae, synthetic_model, encoders={"sae": sae.encode},
        num_samples=num_samples, min_cosine=min_cosine, batch_size=batch_size,
    )
    return {
        "precision": s.precision,
        "recall": s.recall,
        "f1": _f1(s.precision, s.recall),
        "absorption": s.counts.absorption("sae"),
        "n_true_edges": len(s.true_edges),
        "n_observable_true_edges": len(s.observable),
        "n_recovered_edges": len(s.recovered),
        "n_correct_edges": s.n_correct,
        "n_matched": len(s.match),
        "mean_matched_cosine": s.mean_matched_cosine,
    }
