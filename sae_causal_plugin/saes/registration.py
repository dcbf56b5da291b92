"""Idempotent registration of the hierarchical architectures with SAELens's registries.

SAELens's ``register_sae_class`` / ``register_sae_training_class`` raise on a duplicate name, so
a second import or ``importlib.reload`` would fail; here an entry that already points to a class
of the same name from this package is replaced (a reload creates new class objects), and a name
taken by anybody else is an error.
"""

from __future__ import annotations

from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from sae_causal_plugin.saes.hierarchical import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAE,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAE,
    HierarchicalTopKTrainingSAEConfig,
)

TRAINING_CLASSES = {
    "hierarchical_batchtopk": (HierarchicalBatchTopKTrainingSAE, HierarchicalBatchTopKTrainingSAEConfig),
    "hierarchical_topk": (HierarchicalTopKTrainingSAE, HierarchicalTopKTrainingSAEConfig),
    "hierarchical_jumprelu": (HierarchicalJumpReLUTrainingSAE, HierarchicalJumpReLUTrainingSAEConfig),
}
# Inference: the hierarchical SAEs are saved as the stock SAELens architecture they build on.
INFERENCE_CLASSES = {
    "hierarchical_batchtopk": (JumpReLUSAE, JumpReLUSAEConfig),
    "hierarchical_topk": (TopKSAE, TopKSAEConfig),
    "hierarchical_jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
}


def _ours(entry: tuple[type, type], wanted: tuple[type, type]) -> bool:
    return all(
        (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
        for a, b in zip(entry, wanted)
    )


def register_architectures() -> None:
    """Register (or re-register after a reload) every hierarchical architecture."""
    for registry, classes, register in (
        (SAE_TRAINING_CLASS_REGISTRY, TRAINING_CLASSES, register_sae_training_class),
        (SAE_CLASS_REGISTRY, INFERENCE_CLASSES, register_sae_class),
    ):
        for name, pair in classes.items():
            existing = registry.get(name)
            if existing is None:
                register(name, *pair)
            elif _ours(existing, pair):
                registry[name] = pair
            else:
                raise ValueError(
                    f"SAELens architecture name {name!r} is already registered by "
                    f"{existing[0].__module__}.{existing[0].__qualname__}; "
                    "unregister it before importing sae_causal_plugin."
                )
