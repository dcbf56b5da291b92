"""Bad hyperparameters and bad activations raise ValueError naming the argument, before training."""

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput

from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAEConfig,
)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k=0), "k"),
    (dict(k=-3), "k"),
    (dict(k=float("nan")), "k"),
    (dict(compression_coefficient=-1.0), "compression_coefficient"),
    (dict(nested_coefficient=-1.0), "nested_coefficient"),
    (dict(compression_margin=1.5), "compression_margin"),
    (dict(level_widths=[8, 4]), "level_widths"),
    (dict(level_widths=[64]), "level_widths"),
    (dict(revival_window=-1), "revival_window"),
    (dict(compression_warm_up_steps=-5), "compression_warm_up_steps"),
    (dict(compression_neighbours=0), "compression_neighbours"),
    (dict(compression_refresh_rows=0), "compression_refresh_rows"),
    (dict(nested_warm_up_steps=1.5), "nested_warm_up_steps"),
])
def test_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HierarchicalBatchTopKTrainingSAEConfig(d_in=8, d_sae=32, **{"k": 2, **kwargs})


def test_topk_needs_integer_k_and_jumprelu_non_negative_l0():
    with pytest.raises(ValueError, match="k"):
        HierarchicalTopKTrainingSAEConfig(d_in=8, d_sae=32, k=2.5)
    with pytest.raises(ValueError, match="l0_coefficient"):
        HierarchicalJumpReLUTrainingSAEConfig(d_in=8, d_sae=32, l0_coefficient=-1.0)


def test_bad_widths():
    with pytest.raises(ValueError, match="d_sae"):
        HierarchicalBatchTopKTrainingSAEConfig(d_in=8, d_sae=0, k=2)


def _step(sae, x):
    coeffs = {k: (v.value if hasattr(v, "value") else v) for k, v in sae.get_coefficients().items()}
    return sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=coeffs, dead_neuron_mask=None, n_training_steps=0,
        is_logging_step=False))


@pytest.mark.parametrize("x, match", [
    (torch.randn(4, 9), "d_in"),
    (torch.tensor([[float("nan")] * 8]), "NaN"),
    (torch.tensor([[float("inf")] * 8]), "Inf"),
])
def test_bad_activations_raise_before_any_update(x, match):
    sae = HierarchicalBatchTopKTrainingSAE(HierarchicalBatchTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2))
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        _step(sae, x)
    after = sae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
