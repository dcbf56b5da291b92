"""Cross-level terms on tiny tensors: zero when the constraint holds, gradients the right way."""

import torch

from sae_causal_plugin.multilevel import cross_level_consistency_loss, cross_level_fit_loss
from sae_causal_plugin.saes.losses import graph_sparsity_loss

# two fine latents, two coarse latents; the map says fine 0 -> coarse 1 (weight 0.9)
S = torch.tensor([[0.1, 0.9], [0.2, 0.3]])


def test_consistency_zero_when_selected_coarse_fires_with_fine():
    fine = torch.tensor([[True, False], [False, True]])
    coarse = torch.tensor([[False, True], [False, False]])
    pre = torch.tensor([[-1.0, 2.0], [-1.0, -1.0]])
    loss = cross_level_consistency_loss(fine, coarse, pre, torch.tensor(0.5), S, edge_threshold=0.5)
    assert loss.item() == 0.0  # fine 1 -> coarse 1 has weight 0.3 < 0.5: no constraint


def test_consistency_penalises_silent_coarse_and_gradient_raises_it():
    fine = torch.tensor([[True, False]])
    coarse = torch.tensor([[False, False]])
    pre = torch.tensor([[0.0, -1.0]], requires_grad=True)
    loss = cross_level_consistency_loss(fine, coarse, pre, torch.tensor(0.5), S, edge_threshold=0.5)
    assert torch.isclose(loss, torch.tensor(0.9 * 1.5))  # S * (threshold - pre)
    loss.backward()
    assert pre.grad[0, 1] < 0 and pre.grad[0, 0] == 0  # descent raises coarse 1 only


def test_consistency_per_latent_threshold_broadcasts():
    fine = torch.tensor([[True, False]])
    coarse = torch.tensor([[False, False]])
    pre = torch.tensor([[0.0, 0.0]])
    loss = cross_level_consistency_loss(fine, coarse, pre, torch.tensor([5.0, 2.0]), S, edge_threshold=0.5)
    assert torch.isclose(loss, torch.tensor(0.9 * 2.0))


def test_fit_prefers_the_true_map_and_its_gradient_grows_the_true_edge():
    fine = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 1]], dtype=torch.bool)
    coarse = torch.stack([fine[:, 0], fine[:, 1]], dim=1)  # coarse j = fine j
    leak = torch.zeros(2)
    true_map = torch.eye(2) * 0.999
    wrong_map = torch.tensor([[0.0, 0.999], [0.999, 0.0]])
    assert cross_level_fit_loss(true_map, fine, coarse, leak) < cross_level_fit_loss(wrong_map, fine, coarse, leak)
    s = torch.full((2, 2), 0.5, requires_grad=True)
    cross_level_fit_loss(s, fine, coarse, leak).backward()
    assert s.grad[0, 0] < 0 and s.grad[1, 1] < 0  # descent grows the diagonal
    assert s.grad[0, 1] > 0 and s.grad[1, 0] > 0  # and shrinks the wrong pairs


def test_graph_sparsity_zero_for_empty_map_and_pushes_weights_down():
    assert graph_sparsity_loss(torch.zeros(3, 2)).item() == 0.0
    s = torch.full((3, 2), 0.5, requires_grad=True)
    graph_sparsity_loss(s).backward()
    assert torch.all(s.grad > 0)
