"""sae-causal-plugin: identifiable, hierarchical sparse autoencoders for SAELens.

The architectures ``hierarchical_batchtopk``, ``hierarchical_topk`` and ``hierarchical_jumprelu``
are registered with SAELens (idempotently) when ``sae_causal_plugin.saes`` is imported: taking any
of the classes below from the package does it, and so does importing the package once SAELens is
loaded. The exports are imported on first use, so the command line starts without torch.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sae_causal_plugin._lazy import lazy_exports

__version__ = "0.1.0"

_GRAPH = ("HierarchyDiagnosis", "SelectionCode", "diagnose_hierarchy", "factorize_decoder", "recover_concept_graph")
_SAES = ("HierarchicalBatchTopKTrainingSAE", "HierarchicalBatchTopKTrainingSAEConfig",
         "HierarchicalJumpReLUTrainingSAE", "HierarchicalJumpReLUTrainingSAEConfig",
         "HierarchicalTopKTrainingSAE", "HierarchicalTopKTrainingSAEConfig", "register_architectures")
__all__ = [*_SAES, *_GRAPH]
__getattr__, __dir__ = lazy_exports(__name__, {**dict.fromkeys(_GRAPH, ".graph"), **dict.fromkeys(_SAES, ".saes")})

if TYPE_CHECKING:
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

if "sae_lens" in sys.modules:  # SAELens is loaded already: registering now costs nothing extra
    from sae_causal_plugin.saes import register_architectures as _register

    _register()
