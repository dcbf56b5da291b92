"""Hierarchy diagnostics: is a wrong concept graph the dictionary's fault or the graph step's?

:func:`diagnose_hierarchy` reports, beside edge F1 (DESIGN.md section 3, SAELens issue #729):

* dictionary: features that got a latent, true edges with both ends matched, how often the
  parent latent fires with / without a given child, absorption (plain and factorised);
* graph step: precision / recall on matched pairs and the wrong edges by kind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sae_causal_plugin._plain_json import plain_json

from .concept_graph import ConceptGraph
from .evaluation import (
    HierarchyScore,
    _f1,
    _ratio,
    check_evaluation_inputs,
    score_hierarchy,
)

#: Kinds of wrong recovered edges ``c -> p``, in report order.
WRONG_EDGE_KINDS = ("reversed", "skip_to_ancestor", "sibling", "unrelated", "unmatched")


@dataclass(frozen=True)
class EdgeFiring:
    """How often the parent latent of a true edge fires, with and without its child feature."""

    child_feature: int
    parent_feature: int
    child_latent: int | None
    parent_latent: int
    parent_with_child: float  # P(parent latent fires | parent and child features present)
    parent_without_child: float  # P(parent latent fires | parent present, child absent)
    n_with_child: int
    n_without_child: int


@dataclass
class HierarchyDiagnosis:
    """Result of :func:`diagnose_hierarchy`; ratios with an empty denominator are 0, rates ``nan``."""

    n_features: int
    n_features_with_latent: int
    n_hierarchy_features: int
    n_hierarchy_features_with_latent: int
    n_true_edges: int
    n_true_edges_matched: int  # both ends have a latent
    n_observable_true_edges: int
    n_recovered_edges: int
    n_recovered_edges_matched: int
    n_correct_edges: int
    precision: float
    recall: float
    f1: float
    matched_precision: float  # correct / recovered edges with both ends matched
    matched_recall: float  # found / true edges with both ends matched and observable
    matched_f1: float
    wrong_edges: dict[str, int]  # kind (WRONG_EDGE_KINDS) -> count
    edge_firing: list[EdgeFiring]  # true edges whose parent feature has a latent
    parent_with_child_recall: float  # pooled over edge_firing, weighted by support
    parent_without_child_recall: float
    absorption: float
    absorption_factorised: float | None  # with code.encode; None without a code
    mean_matched_cosine: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``nan`` stays a float)."""
        return plain_json(asdict(self), "HierarchyDiagnosis")

    def format(self) -> str:
        """A readable multi-line report."""

        def frac(n: int, d: int) -> str:
            return f"{n} / {d}" + (f"  ({n / d:.1%})" if d else "")

        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        rows = [
            ("Dictionary", None),
            ("features with a latent", frac(self.n_features_with_latent, self.n_features)),
            ("hierarchy features with a latent",
             frac(self.n_hierarchy_features_with_latent, self.n_hierarchy_features)),
            ("true edges, both ends matched", frac(self.n_true_edges_matched, self.n_true_edges)),
            ("mean matched |cos|", num(self.mean_matched_cosine)),
            ("parent fires | parent + child", num(self.parent_with_child_recall)),
            ("parent fires | parent, no child", num(self.parent_without_child_recall)),
            ("absorption (plain)", num(self.absorption)),
            ("absorption (factorised)", num(self.absorption_factorised)),
            ("Graph step", None),
            ("recovered edges, both ends matched",
             frac(self.n_recovered_edges_matched, self.n_recovered_edges)),
            ("precision / recall / F1",
             f"{num(self.precision)} / {num(self.recall)} / {num(self.f1)}"),
            ("matched precision / recall / F1",
             f"{num(self.matched_precision)} / {num(self.matched_recall)} / {num(self.matched_f1)}"),
            ("correct edges", str(self.n_correct_edges)),
            ("wrong edges", str(sum(self.wrong_edges.values()))),
            *((f"  {k}", str(self.wrong_edges[k])) for k in WRONG_EDGE_KINDS),
        ]
        width = max(len(name) for name, _ in rows) + 2
        lines = ["Hierarchy diagnosis"]
        for name, value in rows:
            lines.append(f"{name}:" if value is None else f"  {name:<{width}}{value}")
        return "\n".join(lines)


def classify_edge(truth: ConceptGraph, fc: int | None, fp: int | None) -> str | None:
    """Kind of the recovered edge ``feature fc -> feature fp``; ``None`` if it is a true edge."""
    if fc is None or fp is None:
        return "unmatched"
    if fc in truth and fp in truth:
        if fp in truth.parents(fc):
            return None
        if fp in truth.descendants(fc):
            return "reversed"
        if fp in truth.ancestors(fc):
            return "skip_to_ancestor"
        if set(truth.parents(fc)) & set(truth.parents(fp)):
            return "sibling"
    return "unrelated"


def _edge_firing(s: HierarchyScore) -> tuple[list[EdgeFiring], float, float]:
    sup, on = s.counts.support, s.counts.fired["sae"]
    records = [
        EdgeFiring(
            c, p, s.latent_of.get(c), lat,
            _ratio(int(on["with_child"][i]), int(sup["with_child"][i]), math.nan),
            _ratio(int(on["without_child"][i]), int(sup["without_child"][i]), math.nan),
            int(sup["with_child"][i]), int(sup["without_child"][i]),
        )
        for i, ((c, p), lat) in enumerate(zip(s.counts.pairs, s.counts.parent_latents))
    ]
    pooled = [
        _ratio(int(on[k].sum()), int(sup[k].sum()), math.nan) for k in ("with_child", "without_child")
    ]
    return records, pooled[0], pooled[1]


def diagnose_hierarchy(
    graph: ConceptGraph,
    sae: Any,
    synthetic_model: Any,
    *,
    code: Any = None,
    num_samples: int = 16384,
    min_cosine: float = 0.5,
    batch_size: int = 4096,
    print_report: bool = True,
) -> HierarchyDiagnosis:
    """Diagnose ``graph`` (latents, child -> parent) against ``synthetic_model``'s hierarchy.

    Matching, sampling, ``precision`` / ``recall`` / ``f1`` and ``absorption`` are those of
    :func:`~sae_causal_plugin.graph.evaluate_hierarchy_recovery` (same arguments, same values).
    On top of them:

    * wrong recovered edges ``c -> p`` by kind: ``unmatched`` (a latent without a feature),
      ``reversed`` (feature(p) a descendant of feature(c)), ``skip_to_ancestor`` (a proper
      ancestor, not the direct parent), ``sibling`` (both share a direct parent), else
      ``unrelated``;
    * precision / recall restricted to edges whose two ends have a latent;
    * per true edge whose parent feature has a latent: how often that latent fires when
      the parent feature is present with / without the child feature;
    * ``absorption_factorised``: the absorption computed with ``code.encode`` (e.g. a
      :class:`~sae_causal_plugin.graph.factorization.SelectionCode`), on the same samples.

    Args:
        code: optional object with ``encode(x: [n, d_in]) -> [n, d_sae]``, in the SAE's latent indices.
        print_report: print :meth:`HierarchyDiagnosis.format`.

    Raises:
        ValueError: on bad arguments, before any sampling.
    """
    check_evaluation_inputs(
        sae, synthetic_model, num_samples=num_samples, min_cosine=min_cosine, batch_size=batch_size
    )
    if code is not None and not callable(getattr(code, "encode", None)):
        raise ValueError(
            f"code: {type(code).__name__} has no encode(x) method; pass an object with "
            "encode(x: [n, d_in]) -> [n, d_sae] (e.g. a SelectionCode) or code=None"
        )
    encoders = {"sae": sae.encode} | ({"code": code.encode} if code is not None else {})
    s = score_hierarchy(
        graph, sae, synthetic_model, encoders=encoders,
        num_samples=num_samples, min_cosine=min_cosine, batch_size=batch_size,
    )
    kinds = [classify_edge(s.truth, fc, fp) for fc, fp in s.recovered_features]
    matched_edges = {(c, p) for c, p in s.true_edges if c in s.latent_of and p in s.latent_of}
    n_rec_matched = sum(k != "unmatched" for k in kinds)
    m_prec = _ratio(s.n_correct, n_rec_matched)
    m_rec = _ratio(len(s.found & s.observable), len(matched_edges & s.observable))
    records, with_child, without_child = _edge_firing(s)
    diagnosis = HierarchyDiagnosis(
        n_features=int(s.feature_count.numel()),
        n_features_with_latent=len(s.latent_of),
        n_hierarchy_features=len(s.truth),
        n_hierarchy_features_with_latent=sum(f in s.latent_of for f in s.truth.concepts),
        n_true_edges=len(s.true_edges),
        n_true_edges_matched=len(matched_edges),
        n_observable_true_edges=len(s.observable),
        n_recovered_edges=len(s.recovered),
        n_recovered_edges_matched=n_rec_matched,
        n_correct_edges=s.n_correct,
        precision=s.precision,
        recall=s.recall,
        f1=_f1(s.precision, s.recall),
        matched_precision=m_prec,
        matched_recall=m_rec,
        matched_f1=_f1(m_prec, m_rec),
        wrong_edges={k: kinds.count(k) for k in WRONG_EDGE_KINDS},
        edge_firing=records,
        parent_with_child_recall=with_child,
        parent_without_child_recall=without_child,
        absorption=s.counts.absorption("sae"),
        absorption_factorised=s.counts.absorption("code") if code is not None else None,
        mean_matched_cosine=s.mean_matched_cosine,
    )
    if print_report:
        print(diagnosis.format())
    return diagnosis
