"""The pre-activation a latent must exceed to fire, once per SAELens activation kind.

Mixed in right before the SAELens training-SAE class (``class X(OurMixin, TopKFiring,
TopKTrainingSAE)``) by the hierarchical SAEs of :mod:`sae_causal_plugin.saes.hierarchical` and by
the per-level SAEs of :mod:`sae_causal_plugin.multilevel.sae`. Every kind has the signature
``firing_threshold(hidden_pre)``; the result broadcasts to ``hidden_pre``.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


class BatchTopKFiring:
    """BatchTopK: the running threshold SAELens learns for its inference JumpReLU (a scalar)."""

    topk_threshold: Tensor

    def firing_threshold(self, hidden_pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, ""]:
        return self.topk_threshold.to(hidden_pre.dtype)


class TopKFiring:
    """TopK: each sample's ``k``-th largest pre-activation (``k`` of the config), one per sample."""

    cfg: Any

    def firing_threshold(self, hidden_pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch 1"]:
        k = min(int(self.cfg.k), hidden_pre.shape[-1])
        return torch.topk(hidden_pre, k, dim=-1).values[..., -1:]


class JumpReLUFiring:
    """JumpReLU: the learned per-latent threshold."""

    threshold: Tensor

    def firing_threshold(self, hidden_pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, " d_sae"]:
        return self.threshold.to(hidden_pre.dtype)
