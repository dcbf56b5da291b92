"""Hierarchical minimality SAEs: SAELens's BatchTopK, TopK and JumpReLU plus the minimality terms.

Swap ``BatchTopKTrainingSAEConfig(...)`` for ``HierarchicalBatchTopKTrainingSAEConfig(...)`` (same
arguments, plus optional minimality coefficients) and change nothing else: SAELens's runners and
trainer build the SAE from the registry. Saved inference SAEs are plain SAELens ``jumprelu`` /
``topk`` SAEs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import (
    JumpReLUSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
)
from sae_lens.saes.sae import SAEConfig
from sae_lens.saes.topk_sae import TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

from sae_causal_plugin.saes.config import MinimalityConfig, validate_k
from sae_causal_plugin.saes.firing import BatchTopKFiring, JumpReLUFiring, TopKFiring
from sae_causal_plugin.saes.minimality import MinimalityMixin


def _validate_widths(cfg: SAEConfig) -> None:
    for name in ("d_in", "d_sae"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


@dataclass
class HierarchicalBatchTopKTrainingSAEConfig(MinimalityConfig, BatchTopKTrainingSAEConfig):
    """``BatchTopKTrainingSAEConfig`` plus the minimality terms of :class:`MinimalityConfig`.

    Saved for inference as a SAELens ``jumprelu`` SAE, as BatchTopK is.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        _validate_widths(self)
        validate_k(self.k)
        self.validate_minimality()

    @classmethod
    def architecture(cls) -> str:
        return "hierarchical_batchtopk"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return JumpReLUSAEConfig


class HierarchicalBatchTopKTrainingSAE(MinimalityMixin, BatchTopKFiring, BatchTopKTrainingSAE):
    """BatchTopK SAE trained with the compression term."""

    cfg: HierarchicalBatchTopKTrainingSAEConfig  # type: ignore[assignment]

    @torch.no_grad()
    def update_topk_threshold(self, acts_topk: Tensor) -> None:
        """SAELens's running threshold; in a data-parallel run, from the smallest activation kept on any rank."""
        if self.rank_reduce is None:
            return super().update_topk_threshold(acts_topk)
        positive = acts_topk[acts_topk > 0]
        smallest = positive.min().float() if positive.numel() else acts_topk.new_tensor(float("inf")).float()
        smallest = self.rank_reduce(smallest.reshape(1), "min")[0]
        if torch.isfinite(smallest):
            lr = self.cfg.topk_threshold_lr
            self.topk_threshold = (1 - lr) * self.topk_threshold + lr * smallest.to(self.topk_threshold.dtype)
        return None


@dataclass
class HierarchicalTopKTrainingSAEConfig(MinimalityConfig, TopKTrainingSAEConfig):
    """``TopKTrainingSAEConfig`` plus the minimality terms; saved as a SAELens ``topk`` SAE."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _validate_widths(self)
        validate_k(self.k)
        if int(self.k) != self.k:
            raise ValueError(f"k must be an integer for TopK SAEs, got {self.k!r}.")
        self.validate_minimality()

    @classmethod
    def architecture(cls) -> str:
        return "hierarchical_topk"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return TopKSAEConfig


class HierarchicalTopKTrainingSAE(MinimalityMixin, TopKFiring, TopKTrainingSAE):
    """TopK SAE trained with the compression term."""

    cfg: HierarchicalTopKTrainingSAEConfig  # type: ignore[assignment]


@dataclass
class HierarchicalJumpReLUTrainingSAEConfig(MinimalityConfig, JumpReLUTrainingSAEConfig):
    """``JumpReLUTrainingSAEConfig`` plus the minimality terms; saved as SAELens ``jumprelu``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _validate_widths(self)
        if self.l0_coefficient < 0:
            raise ValueError(f"l0_coefficient must be >= 0, got {self.l0_coefficient!r}.")
        self.validate_minimality()

    @classmethod
    def architecture(cls) -> str:
        return "hierarchical_jumprelu"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return JumpReLUSAEConfig


class HierarchicalJumpReLUTrainingSAE(MinimalityMixin, JumpReLUFiring, JumpReLUTrainingSAE):
    """JumpReLU SAE trained with the compression term."""

    cfg: HierarchicalJumpReLUTrainingSAEConfig  # type: ignore[assignment]
