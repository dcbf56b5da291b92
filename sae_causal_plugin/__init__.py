"""sae-causal-plugin: identifiable, hierarchical sparse autoencoders for SAELens.

Importing the package registers the architectures ``hierarchical_batchtopk``,
``hierarchical_topk`` and ``hierarchical_jumprelu`` with SAELens (idempotently).
"""

from sae_causal_plugin.graph import (
    HierarchyDiagnosis,
    SelectionCode,
    diagnose_hierarchy,
    factorize_decoder,
    recover_concept_graph,
)
from sae_causal_plugin.saes import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAE,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAE,
    HierarchicalTopKTrainingSAEConfig,
    register_architectures,
)

register_architectures()

__version__ = "0.1.0"

__all__ = [
    "HierarchicalBatchTopKTrainingSAE",
    "HierarchicalBatchTopKTrainingSAEConfig",
    "HierarchicalJumpReLUTrainingSAE",
    "HierarchicalJumpReLUTrainingSAEConfig",
    "HierarchicalTopKTrainingSAE",
    "HierarchicalTopKTrainingSAEConfig",
    "register_architectures",
    "diagnose_hierarchy",
    "factorize_decoder",
    "SelectionCode",
    "recover_concept_graph",
    "HierarchyDiagnosis",
]
