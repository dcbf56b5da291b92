"""Each minimality term on tiny tensors: zero when its constraint holds, gradient the right way."""

import torch

from sae_causal_plugin.saes import losses


def test_compression_zero_for_orthogonal_rows():
    W = torch.eye(4, 6) * 3.0
    assert losses.dictionary_compression_loss(W, margin=0.2).item() == 0.0


def test_compression_penalises_absorbed_row_and_gradient_separates_it():
    parent = torch.tensor([1.0, 0.0, 0.0])
    child = torch.tensor([0.0, 1.0, 0.0])
    W = torch.stack([parent, child + parent]).requires_grad_(True)  # absorbed child
    loss = losses.dictionary_compression_loss(W, margin=0.2)
    # cos = 1/sqrt(2): two ordered pairs of (0.707 - 0.2)^2, over 2 rows
    expected = 2 * (2 ** -0.5 - 0.2) ** 2 / 2
    assert torch.isclose(loss, torch.tensor(expected), atol=1e-6)
    loss.backward()
    W2 = (W - 0.1 * W.grad).detach()
    cos = torch.nn.functional.cosine_similarity(W2[0], W2[1], dim=0)
    assert cos < 2 ** -0.5


def test_compression_row_subset_only_compares_those_rows():
    W = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert losses.dictionary_compression_loss(W, 0.1, rows=torch.tensor([0, 2])).item() == 0.0
    assert losses.dictionary_compression_loss(W, 0.1, rows=torch.tensor([0, 1])).item() > 0.0


def test_selection_consistency_zero_when_parents_fire_with_children():
    fired = torch.tensor([[True, True, False], [False, True, False]])
    hidden_pre = torch.tensor([[2.0, 2.0, -1.0], [-1.0, 2.0, -1.0]])
    loss = losses.selection_consistency_loss(
        fired, hidden_pre, torch.tensor(0.5), torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]))
    assert loss.item() == 0.0


def test_selection_consistency_raises_silent_parent():
    fired = torch.tensor([[True, False]])
    hidden_pre = torch.tensor([[2.0, -1.0]], requires_grad=True)
    loss = losses.selection_consistency_loss(
        fired, hidden_pre, torch.tensor([0.5, 0.5]), torch.tensor([0]), torch.tensor([1]),
        torch.tensor([0.8]))
    assert torch.isclose(loss, torch.tensor(0.8 * 1.5))
    loss.backward()
    assert hidden_pre.grad[0, 1] < 0  # descending the loss raises the parent's pre-activation
    assert hidden_pre.grad[0, 0] == 0


def test_selection_consistency_per_sample_threshold():
    fired = torch.tensor([[True, False], [True, False]])
    hidden_pre = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    thr = torch.tensor([[0.5], [2.0]])
    loss = losses.selection_consistency_loss(
        fired, hidden_pre, thr, torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]))
    assert torch.isclose(loss, torch.tensor((0.5 + 2.0) / 2))


def test_graph_sparsity_is_l1_and_zero_for_empty_map():
    assert losses.graph_sparsity_loss(torch.zeros(3, 3)).item() == 0.0
    s = torch.tensor([[0.0, 0.5], [0.25, 0.0]])
    assert torch.isclose(losses.graph_sparsity_loss(s), torch.tensor(0.75 / 2))


def test_selection_fit_prefers_the_true_parent():
    # latent 0 (child) fires only with latent 1 (parent); latent 2 is independent
    child = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    parent = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    other = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    fired = torch.stack([child, parent, other], dim=1)
    logits = torch.full((3, 3), -3.0, requires_grad=True)
    leak = torch.full((3,), 0.0, requires_grad=True)
    opt = torch.optim.Adam([logits, leak], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        s = torch.sigmoid(logits) * (1 - torch.eye(3))
        losses.selection_map_fit_loss(s, fired, fired, torch.sigmoid(leak)).backward()
        opt.step()
    s = torch.sigmoid(logits.detach()) * (1 - torch.eye(3))
    assert s[0, 1] > 0.9
    assert s[0, 2] < s[0, 1]


def test_selection_map_starts_at_sigmoid_minus_4_with_leak_one_half_and_moves_scale_times_faster():
    logits, leak_logits = losses.initial_selection_logits(3, 2, dtype=torch.float32, device="cpu")
    assert logits.shape == (3, 2) and leak_logits.shape == (2,)
    assert torch.allclose(losses.selection_probabilities(logits), torch.sigmoid(torch.tensor(-4.0)).expand(3, 2))
    assert torch.equal(losses.selection_probabilities(leak_logits), torch.full((2,), 0.5))
    step = torch.full((3, 2), 0.01)
    moved = losses.selection_probabilities(logits + step)
    assert torch.allclose(moved, torch.sigmoid(torch.tensor(-4.0 + losses.SELECTION_LOGIT_SCALE * 0.01)).expand(3, 2))
