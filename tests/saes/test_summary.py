"""summarise_sae on tensors: exact figures for an identity SAE, streaming equals one tensor, empty refused."""

import pytest
import torch

from sae_causal_plugin.saes.summary import summarise_sae

from tests.helpers import identity_sae


def test_identity_sae_on_known_rows():
    sae = identity_sae(4)
    x = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.5, 0.0, 0.0, 3.0]])
    s = summarise_sae(sae, x)
    # encode = relu: the only reconstruction error is the negative entry -1 (|err|^2 = 1)
    total = float(((x - x.mean(0)) ** 2).sum())
    assert s.explained_variance == pytest.approx(1 - 1.0 / total)
    assert s.mean_l0 == pytest.approx((2 + 2) / 2)
    assert (s.dead_latents, s.d_sae, s.n_rows) == (1, 4, 2)  # latent 1 never fires
    assert str(s) == (f"explained variance {1 - 1 / total:.3f}, L0 2.0, dead latents 1 / 4 "
                      f"(on 2 activation rows)")


def test_batches_give_the_same_summary_as_one_tensor():
    sae = identity_sae(8)
    x = torch.randn(100, 8)
    whole = summarise_sae(sae, x)
    streamed = summarise_sae(sae, iter(x.split(7)))
    assert streamed.mean_l0 == pytest.approx(whole.mean_l0)
    assert streamed.explained_variance == pytest.approx(whole.explained_variance, abs=1e-6)
    assert (streamed.dead_latents, streamed.n_rows) == (whole.dead_latents, 100)


def test_empty_activations_are_refused():
    with pytest.raises(ValueError, match="activations are empty"):
        summarise_sae(identity_sae(4), iter([]))
