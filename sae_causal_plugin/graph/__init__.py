"""Concept graphs recovered from SAE co-firing statistics.

* :class:`ConceptGraph`: a DAG of concepts, edges child -> parent (fine -> coarse).
* :class:`CoFiringStats`: streaming, sparse firing / co-firing counts (bounded memory).
* :func:`recover_concept_graph`: SAE + activations -> minimal-parent :class:`ConceptGraph`.
* :func:`evaluate_hierarchy_recovery`, :func:`true_hierarchy_graph`: scoring against a
  SAELens synthetic hierarchy.
* :mod:`.layered`: graphs across the levels of an SAE stack (layers, timesteps), node ids, naming.
* :mod:`.matching`: latent -> concept matching (firing F1, decoder cosine; Hungarian or best).
* :func:`summarise_latents` -> :class:`LatentSummary`: per-latent rows of a latent browser.
* :func:`diagnose_hierarchy` -> :class:`HierarchyDiagnosis`: whether a wrong graph is the
  dictionary's fault or the graph step's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_causal_plugin._lazy import lazy_exports

_EXPORTS = {
    "CoFiringStats": ".cofiring",
    "ConceptGraph": ".concept_graph",
    "HierarchyDiagnosis": ".diagnostics",
    "diagnose_hierarchy": ".diagnostics",
    "evaluate_hierarchy_recovery": ".evaluation",
    "match_latents_to_features": ".evaluation",
    "true_hierarchy_graph": ".evaluation",
    "SelectionCode": ".factorization",
    "factorize_decoder": ".factorization",
    "LatentSummary": ".latents",
    "summarise_latents": ".latents",
    "layered_graph_from_firing": ".layered",
    "name_matched_latents": ".layered",
    "recover_timestep_graph": ".layered",
    "minimal_parent_set": ".parent_sets",
    "build_concept_graph": ".recovery",
    "recover_concept_graph": ".recovery",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .cofiring import CoFiringStats
    from .concept_graph import ConceptGraph
    from .diagnostics import HierarchyDiagnosis, diagnose_hierarchy
    from .evaluation import evaluate_hierarchy_recovery, match_latents_to_features, true_hierarchy_graph
    from .factorization import SelectionCode, factorize_decoder
    from .latents import LatentSummary, summarise_latents
    from .layered import layered_graph_from_firing, name_matched_latents, recover_timestep_graph
    from .parent_sets import minimal_parent_set
    from .recovery import build_concept_graph, recover_concept_graph

__all__ = [
    "ConceptGraph",
    "CoFiringStats",
    "recover_concept_graph",
    "factorize_decoder",
    "SelectionCode",
    "build_concept_graph",
    "evaluate_hierarchy_recovery",
    "match_latents_to_features",
    "true_hierarchy_graph",
    "diagnose_hierarchy",
    "HierarchyDiagnosis",
    "layered_graph_from_firing",
    "LatentSummary",
    "summarise_latents",
    "minimal_parent_set",
    "name_matched_latents",
    "recover_timestep_graph",
]
