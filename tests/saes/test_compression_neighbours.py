"""The compression term inside the SAE: candidate pairs renewed block by block, equal to all pairs."""

import torch
from sae_lens.saes.sae import TrainStepInput

from sae_causal_plugin import HierarchicalTopKTrainingSAE, HierarchicalTopKTrainingSAEConfig
from sae_causal_plugin.saes import losses


def _sae(**kw) -> HierarchicalTopKTrainingSAE:
    torch.manual_seed(0)
    sae = HierarchicalTopKTrainingSAE(HierarchicalTopKTrainingSAEConfig(d_in=8, d_sae=24, k=2, **kw))
    with torch.no_grad():
        sae.W_dec[1] = sae.W_dec[0] + 0.05 * sae.W_dec[1]  # a near-copy
        sae.W_dec[5] = -sae.W_dec[4]  # opposite rows are copies too (|cos|)
    return sae


def _compression(sae) -> torch.Tensor:
    step = TrainStepInput(sae_in=torch.randn(16, 8).relu(), coefficients={"compression": 1.0, "nested": 0.0},
                          dead_neuron_mask=None, n_training_steps=0, is_logging_step=False)
    out = sae.training_forward_pass(step)
    return out.losses["compression_loss"]


def _all_pairs(W: torch.Tensor, margin: float) -> torch.Tensor:
    unit = W / W.norm(dim=-1, keepdim=True)
    excess = ((unit @ unit.T).abs() - margin).relu().fill_diagonal_(0.0)
    return excess.pow(2).sum() / W.shape[0]


def test_training_loss_equals_the_sum_over_all_pairs():
    sae = _sae(compression_neighbours=23)
    expected = _all_pairs(sae.W_dec.detach(), sae.cfg.compression_margin)
    assert expected > 0.1
    torch.testing.assert_close(_compression(sae), expected)


def test_first_step_fills_every_row_then_one_block_is_renewed_per_step():
    sae = _sae(compression_refresh_rows=5)
    _compression(sae)
    table = sae.compression_neighbours
    assert table.shape == (24, 16)
    assert table[0, 0] == 1 and table[1, 0] == 0 and table[4, 0] == 5
    with torch.no_grad():
        sae.W_dec[10] = sae.W_dec[9]
    _compression(sae)  # renews rows 0-4 only
    assert (table[9] != 10).all() and (table[10] != 9).all()
    _compression(sae)  # rows 5-9: row 9 now lists row 10
    assert table[9, 0] == 10 and (table[10] != 9).all()


def test_pairs_beyond_max_pairs_are_sampled_without_bias():
    torch.manual_seed(0)
    W = torch.randn(40, 4, dtype=torch.float64)
    nbrs = losses.coherent_neighbours(W, torch.arange(40), threshold=0.0, per_row=39)
    exact = losses.dictionary_compression_loss(W, 0.3, nbrs)
    sampled = torch.stack([losses.dictionary_compression_loss(W, 0.3, nbrs, max_pairs=200) for _ in range(400)])
    assert sampled.std() > 0
    assert abs(sampled.mean() - exact) < 4 * sampled.std() / 20
