"""Hierarchical minimality SAEs (SAELens training-SAE subclasses) and their pure losses.

Importing this package registers the three architectures with SAELens (idempotent)."""

from sae_causal_plugin.saes.config import MinimalityConfig
from sae_causal_plugin.saes.hierarchical import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAE,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAE,
    HierarchicalTopKTrainingSAEConfig,
)
from sae_causal_plugin.saes.registration import register_architectures

register_architectures()

__all__ = [
    "HierarchicalBatchTopKTrainingSAE",
    "HierarchicalBatchTopKTrainingSAEConfig",
    "HierarchicalJumpReLUTrainingSAE",
    "HierarchicalJumpReLUTrainingSAEConfig",
    "HierarchicalTopKTrainingSAE",
    "HierarchicalTopKTrainingSAEConfig",
    "MinimalityConfig",
    "register_architectures",
]
