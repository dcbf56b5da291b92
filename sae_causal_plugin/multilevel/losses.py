"""Cross-level minimality terms between two adjacent levels (pure functions of tensors).

Level ``l + 1`` (fine, ``n_f`` latents) and level ``l`` (coarse, ``n_c`` latents) see the same
inputs. A learned non-negative selection map ``S[c, p]`` (fine latent ``c`` -> coarse latent
``p``) ties them together:

* :func:`cross_level_fit_loss`: the fine latents' firing must predict the coarse latents' firing
  through ``S`` (a noisy-OR, :func:`sae_causal_plugin.saes.losses.selection_map_fit_loss`); only
  ``S`` learns from it;
* :func:`cross_level_consistency_loss`: where ``S`` says ``c -> p`` and ``c`` fired but ``p`` did
  not, ``p``'s pre-activation is pushed up to its firing threshold (the selection-consistency
  hinge of :func:`sae_causal_plugin.saes.losses.selection_consistency_loss`, across levels);
* :func:`sae_causal_plugin.saes.losses.graph_sparsity_loss` on ``S``: few parents per concept.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.saes import losses as level_losses


def cross_level_consistency_loss(
    fine_fired: Bool[Tensor, "batch n_f"],
    coarse_fired: Bool[Tensor, "batch n_c"],
    coarse_hidden_pre: Float[Tensor, "batch n_c"],
    coarse_threshold: Tensor,
    selection: Float[Tensor, "n_f n_c"],
    edge_threshold: float,
) -> Float[Tensor, ""]:
    """Mean over samples of ``sum_{c -> p} S[c, p] * relu(thr_p - pre_p)`` where ``c`` fired and
    ``p`` did not, over the edges with ``S[c, p] > edge_threshold``.

    Zero when every selected coarse latent fires with its fine latents; the gradient reaches only
    ``coarse_hidden_pre`` (the map's weights act as constants here) and raises it.
    """
    n_f = fine_fired.shape[1]
    with torch.no_grad():
        children, parents = torch.nonzero(selection > edge_threshold, as_tuple=True)
        strength = selection[children, parents]
    fired = torch.cat([fine_fired, coarse_fired], dim=1)
    pre = torch.cat([coarse_hidden_pre.new_zeros(fine_fired.shape), coarse_hidden_pre], dim=1)
    thr = torch.broadcast_to(coarse_threshold.to(coarse_hidden_pre.dtype), coarse_hidden_pre.shape)
    thr = torch.cat([thr.new_zeros(fine_fired.shape), thr], dim=1)
    return level_losses.selection_consistency_loss(fired, pre, thr, children, parents + n_f, strength)


def cross_level_fit_loss(
    selection: Float[Tensor, "n_f n_c"],
    fine_fired: Bool[Tensor, "batch n_f"],
    coarse_fired: Bool[Tensor, "batch n_c"],
    leak: Float[Tensor, " n_c"],
) -> Float[Tensor, ""]:
    """Binary cross-entropy of the noisy-OR prediction of coarse firing from fine firing."""
    dtype = selection.dtype
    return level_losses.selection_map_fit_loss(selection, fine_fired.to(dtype), coarse_fired.to(dtype), leak)
