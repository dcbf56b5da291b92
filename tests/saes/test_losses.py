"""Each minimality term on tiny tensors: zero when its constraint holds, gradient the right way."""

import torch

from sae_causal_plugin.saes import losses


def dense_compression(W: torch.Tensor, margin: float) -> torch.Tensor:
    """The definition over all ordered pairs: the reference the candidate pairs must equal."""
    unit = W / W.norm(dim=-1, keepdim=True)
    excess = ((unit @ unit.T).abs() - margin).relu()
    return (excess.pow(2).sum() - excess.diagonal().pow(2).sum()) / W.shape[0]


def compression(W: torch.Tensor, margin: float, per_row: int = 16, threshold: float | None = None) -> torch.Tensor:
    rows = torch.arange(W.shape[0])
    nbrs = losses.coherent_neighbours(W, rows, margin if threshold is None else threshold, per_row)
    return losses.dictionary_compression_loss(W, margin, nbrs)


def test_compression_zero_for_orthogonal_rows():
    W = torch.eye(4, 6) * 3.0
    assert compression(W, margin=0.2).item() == 0.0


def test_compression_penalises_absorbed_row_and_gradient_separates_it():
    parent = torch.tensor([1.0, 0.0, 0.0])
    child = torch.tensor([0.0, 1.0, 0.0])
    W = torch.stack([parent, child + parent]).requires_grad_(True)  # absorbed child
    loss = compression(W, margin=0.2)
    # cos = 1/sqrt(2): two ordered pairs of (0.707 - 0.2)^2, over 2 rows
    expected = 2 * (2 ** -0.5 - 0.2) ** 2 / 2
    assert torch.isclose(loss, torch.tensor(expected), atol=1e-6)
    loss.backward()
    W2 = (W - 0.1 * W.grad).detach()
    cos = torch.nn.functional.cosine_similarity(W2[0], W2[1], dim=0)
    assert cos < 2 ** -0.5


def test_candidate_pairs_equal_all_pairs_and_their_gradient():
    torch.manual_seed(0)
    W = torch.randn(64, 8, dtype=torch.float64)
    W[1] = W[0] + 0.1 * W[1]  # a near-copy, far above the margin
    dense_W, sparse_W = W.clone().requires_grad_(True), W.clone().requires_grad_(True)
    dense, sparse = dense_compression(dense_W, 0.3), compression(sparse_W, 0.3, per_row=63, threshold=0.2)
    assert dense.item() > 0
    torch.testing.assert_close(sparse, dense)
    dense.backward()
    sparse.backward()
    torch.testing.assert_close(sparse_W.grad, dense_W.grad)


def test_neighbours_keep_the_most_aligned_rows_above_the_threshold():
    W = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    nbrs = losses.coherent_neighbours(W, torch.tensor([0, 3]), threshold=0.5, per_row=2)
    assert nbrs.tolist() == [[1, 2], [-1, -1]]
    assert losses.coherent_neighbours(W, torch.tensor([0]), threshold=0.5, per_row=1).tolist() == [[1]]


def test_compression_without_candidates_is_zero():
    W = torch.randn(4, 3, requires_grad=True)
    assert losses.dictionary_compression_loss(W, 0.3, torch.full((4, 2), -1)).item() == 0.0


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


def test_pair_cosines_gradient_is_the_autograd_one():
    torch.manual_seed(1)
    W = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    rows, cols = torch.tensor([0, 0, 3, 5, 0]), torch.tensor([1, 2, 4, 0, 1])
    assert torch.autograd.gradcheck(losses.PairCosines.apply, (W, rows, cols))
