"""Concept graphs recovered from SAE co-firing statistics.

* :class:`ConceptGraph`: a DAG of concepts, edges child -> parent (fine -> coarse).
* :class:`CoFiringStats`: streaming, sparse firing / co-firing counts (bounded memory).
* :func:`recover_concept_graph`: SAE + activations -> minimal-parent :class:`ConceptGraph`.
* :func:`evaluate_hierarchy_recovery`, :func:`true_hierarchy_graph`: scoring against a
  SAELens synthetic hierarchy.
* :mod:`.layered`: graphs across the levels of an SAE stack (layers, timesteps), node ids, naming.
* :mod:`.matching`: latent -> concept matching (firing F1, decoder cosine; Hungarian or best).
* :func:`diagnose_hierarchy` -> :class:`HierarchyDiagnosis`: whether a wrong graph is the
  dictionary's fault or the graph step's.
"""

from .cofiring import CoFiringStats
from .concept_graph import ConceptGraph
from .diagnostics import HierarchyDiagnosis, diagnose_hierarchy
from .evaluation import evaluate_hierarchy_recovery, match_latents_to_features, true_hierarchy_graph
from .factorization import SelectionCode, factorize_decoder
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
    "minimal_parent_set",
    "name_matched_latents",
    "recover_timestep_graph",
]
