"""Minimality losses and the learned selection map, as pure functions of tensors.

* **compression** (:func:`dictionary_compression_loss`): no two dictionary directions may
  be near-copies of each other. It removes duplicated latents and *feature absorption*,
  where a child latent's decoder row becomes ``d_child + d_parent`` and so is strongly
  aligned with its parent's row.
* **nested reconstruction** (:func:`nested_reconstruction_loss`): the first ``w_0 < w_1 < ...``
  latents (the coarse levels) must reconstruct the input on their own, Matryoshka style, so a
  parent concept keeps a latent of its own instead of being copied into its children.
* **selection map** (:func:`initial_selection_logits`, :func:`selection_probabilities`): a
  learned non-negative map ``S[child, parent]`` in ``[0, 1]`` and a per-parent leak, kept as
  logits scaled by :data:`SELECTION_LOGIT_SCALE`.
* **selection consistency** (:func:`selection_consistency_loss`): under the hierarchical
  selection model a child concept can only be present when its parent is; when the selection
  map says latent ``p`` is a parent of latent ``c``, a firing ``c`` whose parent stays silent is
  penalised through the parent's pre-activation.
* **selection fit** (:func:`selection_map_fit_loss`): children's firing predicts parents' firing.
* **graph sparsity** (:func:`graph_sparsity_loss`): each concept is composed of few
  lower-level concepts, an L1 penalty on the selection map.

The hierarchical SAEs of :mod:`sae_causal_plugin.saes` train with the first two; the selection
terms tie the levels of :mod:`sae_causal_plugin.multilevel` together. Nothing in this module
knows about SAELens.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

#: The map's logits are this factor times its parameter, so under Adam the map moves that much
#: faster than the dictionary and tracks co-firing from the first steps.
SELECTION_LOGIT_SCALE = 20.0


def dictionary_compression_loss(
    W_dec: Float[Tensor, "d_sae d_in"],
    margin: float,
    rows: Tensor | None = None,
) -> Float[Tensor, ""]:
    """Penalty on pairs of decoder rows whose absolute cosine exceeds ``margin``.

    ``sum_{i != j} relu(|cos(W_i, W_j)| - margin)^2 / n_rows``: zero exactly when every pair of
    (selected) rows has ``|cos| <= margin``; its gradient rotates offending rows apart.

    Args:
        W_dec: decoder, one row per latent.
        margin: coherence allowed for free, in ``[0, 1)``.
        rows: optional index tensor of the rows to compare (a random subset keeps the cost
            ``O(len(rows)^2 d_in)`` on very wide SAEs).
    """
    if rows is not None:
        W_dec = W_dec[rows]
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cos = unit @ unit.T
    excess = (cos.abs() - margin).relu()
    excess = excess - torch.diag_embed(torch.diagonal(excess))
    return excess.pow(2).sum() / W_dec.shape[0]


def nested_reconstruction_loss(
    feature_acts: Float[Tensor, "batch d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
    target: Float[Tensor, "batch d_in"],
    widths: list[int],
) -> Float[Tensor, ""]:
    """Sum over coarse levels of the squared error of reconstructing from the first ``w`` latents.

    Zero when every prefix reconstructs ``target`` exactly; ``widths`` lists the prefix sizes
    (each < ``d_sae``; the full width is the ordinary reconstruction loss).
    """
    total = target.new_zeros(())
    recon = b_dec.expand_as(target)
    start = 0
    for width in widths:
        recon = recon + feature_acts[:, start:width] @ W_dec[start:width]
        total = total + (recon - target).pow(2).sum(dim=-1).mean()
        start = width
    return total


def selection_consistency_loss(
    fired: Bool[Tensor, "batch d_sae"],
    hidden_pre: Float[Tensor, "batch d_sae"],
    threshold: Tensor,
    children: Tensor,
    parents: Tensor,
    strength: Float[Tensor, " n_edges"],
) -> Float[Tensor, ""]:
    """Hinge that asks a parent latent to fire whenever its child latent fires.

    For every edge ``children[e] -> parents[e]`` with weight ``strength[e]`` and every sample
    where the child fires and the parent does not, the loss is
    ``strength * relu(threshold[parent] - hidden_pre[parent])``: zero when the selection
    constraint holds; its gradient raises the parent's pre-activation.

    Args:
        fired: which latents fired in each sample.
        hidden_pre: pre-activations, in the same units as ``threshold``.
        threshold: the firing threshold, broadcastable to ``hidden_pre`` (a scalar, one per
            latent ``[d_sae]`` or one per sample ``[batch, 1]``).
        children, parents: edge endpoints (long tensors of equal length).
        strength: per-edge weight in ``[0, 1]`` (e.g. the estimated ``P(parent | child)``).
    """
    if children.numel() == 0:
        return hidden_pre.new_zeros(())
    thr = torch.broadcast_to(threshold, hidden_pre.shape)
    violated = fired[:, children] & ~fired[:, parents]
    gap = (thr[:, parents] - hidden_pre[:, parents]).relu()
    per_sample = (violated * gap * strength).sum(dim=-1)
    return per_sample.mean()


def graph_sparsity_loss(selection: Float[Tensor, "n_fine n_coarse"]) -> Float[Tensor, ""]:
    """L1 penalty on a non-negative selection map (few parents per concept)."""
    return selection.abs().sum() / selection.shape[0]


def selection_map_fit_loss(
    selection: Float[Tensor, "n_fine n_coarse"],
    child_fired: Float[Tensor, "batch n_fine"],
    parent_fired: Float[Tensor, "batch n_coarse"],
    leak: Float[Tensor, " n_coarse"],
) -> Float[Tensor, ""]:
    """Fit of a non-negative selection map: children's firing predicts parents' firing.

    Predicted parent firing is the noisy-OR ``1 - (1 - leak_p) prod_c (1 - S[c, p])^{a_c}``
    (``leak_p`` covers a parent that fires with none of its children), compared by binary
    cross-entropy with the observed firing. Only ``selection`` and ``leak`` get gradients.
    """
    s = selection.clamp(0.0, 1.0 - 1e-4)
    log_not = child_fired.detach() @ torch.log1p(-s) + torch.log1p(-leak.clamp(0.0, 1.0 - 1e-4))
    predicted = (1.0 - log_not.exp()).clamp(1e-6, 1 - 1e-6)
    return torch.nn.functional.binary_cross_entropy(predicted, parent_fired.detach())


def initial_selection_logits(
    n_fine: int, n_coarse: int, *, dtype: torch.dtype, device: torch.device | str,
) -> tuple[Float[Tensor, "n_fine n_coarse"], Float[Tensor, " n_coarse"]]:
    """Starting parameters of a selection map and its leak: every weight ``sigmoid(-4)``, leak 0.5."""
    logits = torch.full((n_fine, n_coarse), -4.0 / SELECTION_LOGIT_SCALE, dtype=dtype, device=device)
    return logits, torch.zeros(n_coarse, dtype=dtype, device=device)


def selection_probabilities(logits: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """Map weights (or leaks) in ``[0, 1]`` from their parameters: ``sigmoid(SELECTION_LOGIT_SCALE * logits)``."""
    return torch.sigmoid(SELECTION_LOGIT_SCALE * logits)
