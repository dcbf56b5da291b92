"""Minimality losses and the learned selection map, as pure functions of tensors.

* **compression** (:func:`dictionary_compression_loss`): no two dictionary directions may
  be near-copies of each other. It removes duplicated latents and *feature absorption*,
  where a child latent's decoder row becomes ``d_child + d_parent`` and so is strongly
  aligned with its parent's row. Each row is compared with a few candidate rows
  (:func:`coherent_neighbours`), not with all ``d_sae`` others.
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

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

#: The map's logits are this factor times its parameter, so under Adam the map moves that much
#: faster than the dictionary and tracks co-firing from the first steps.
SELECTION_LOGIT_SCALE = 20.0


def coherent_neighbours(
    W_dec: Float[Tensor, "d_sae d_in"],
    rows: Int[Tensor, " n_rows"],
    threshold: float,
    per_row: int,
) -> Int[Tensor, "n_rows per_row"]:
    """For each of ``rows``, the (at most ``per_row``) other decoder rows most aligned with it.

    Entry ``[r, s]`` is the index of a row whose ``|cos|`` with row ``rows[r]`` exceeds
    ``threshold``, best first, or ``-1``. No gradient flows: this only chooses which pairs
    :func:`dictionary_compression_loss` compares. Costs one ``len(rows) x d_sae`` matmul.
    """
    with torch.no_grad():
        unit = _unit_rows(W_dec)
        cos = (unit[rows] @ unit.T).abs_()
        cos[torch.arange(len(rows), device=cos.device), rows] = -1.0
        values, index = cos.topk(min(per_row, W_dec.shape[0] - 1), dim=1)
        return torch.where(values > threshold, index, torch.full_like(index, -1))


def dictionary_compression_loss(
    W_dec: Float[Tensor, "d_sae d_in"],
    margin: float,
    neighbours: Int[Tensor, "d_sae per_row"],
    max_pairs: int | None = None,
) -> Float[Tensor, ""]:
    """Penalty on pairs of decoder rows whose absolute cosine exceeds ``margin``.

    ``sum_{i != j} relu(|cos(W_i, W_j)| - margin)^2 / d_sae``, summed over the candidate pairs
    ``(i, neighbours[i, s])`` (``-1`` entries skipped): zero exactly when every pair has
    ``|cos| <= margin``; its gradient rotates offending rows apart. When each row's candidates
    hold every row above ``margin`` (:func:`coherent_neighbours` with a lower threshold), this
    equals the sum over all ``d_sae^2`` pairs, at the cost of the candidate pairs alone.

    Args:
        max_pairs: when more candidate pairs than this exist, a uniform sample of ``max_pairs``
            of them (with replacement) stands for all, scaled up: an unbiased estimate at a
            bounded cost. ``None`` compares every candidate.
    """
    rows, slots = (neighbours >= 0).nonzero(as_tuple=True)
    n_pairs = rows.numel()
    if n_pairs == 0:
        return W_dec.new_zeros(())
    scale = 1.0
    if max_pairs is not None and n_pairs > max_pairs:
        pick = torch.randint(n_pairs, (max_pairs,), device=rows.device)
        rows, slots, scale = rows[pick], slots[pick], n_pairs / max_pairs
    cos = PairCosines.apply(W_dec, rows, neighbours[rows, slots])
    return (cos.abs() - margin).relu().pow(2).sum() * (scale / W_dec.shape[0])


class PairCosines(torch.autograd.Function):
    """``cos(W[rows[p]], W[cols[p]])`` for each pair ``p``, with a hand-written backward.

    Autograd through ``W[rows]`` would accumulate the gradient with ``index_put_``, about ten
    times slower on CPU than the ``index_add_`` used here (it was most of the term's cost).
    """

    @staticmethod
    def forward(ctx: Any, W: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        norms = W.detach().norm(dim=-1).clamp_min(1e-8)
        W_r, W_c = W.detach()[rows], W.detach()[cols]
        n_r, n_c = norms[rows], norms[cols]
        cos = (W_r * W_c).sum(dim=-1) / (n_r * n_c)
        ctx.save_for_backward(W, rows, cols, W_r, W_c, n_r, n_c, cos)
        return cos

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        W, rows, cols, W_r, W_c, n_r, n_c, cos = ctx.saved_tensors
        across = (grad / (n_r * n_c))[:, None]
        grad_W = torch.zeros_like(W)
        grad_W.index_add_(0, rows, across * W_c - (grad * cos / n_r.square())[:, None] * W_r)
        grad_W.index_add_(0, cols, across * W_r - (grad * cos / n_c.square())[:, None] * W_c)
        return grad_W, None, None


def _unit_rows(W: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
    return W / W.norm(dim=-1, keepdim=True).clamp_min(1e-8)


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
