"""Decoder factorisation: exact decode, A recovered on an absorbed oracle, save/load, bad input."""

import pytest
import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

from sae_causal_plugin.graph.factorization import SelectionCode, factorize_decoder


def _absorbed_sae(d_in=32):
    """4 orthonormal features: parent 0, children 1, 2 whose rows absorbed the parent, free 3."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_in))
    f = q.T[:4]
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=4, k=2, device="cpu"))
    with torch.no_grad():
        sae.W_dec.copy_(torch.stack([f[0], f[1] + 0.8 * f[0], f[2] + 0.8 * f[0], f[3]]))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_absorbed_oracle_recovers_A_exactly():
    sae = _absorbed_sae()
    counts = torch.tensor([900, 300, 200, 100])
    code = factorize_decoder(sae, firing_counts=counts)
    links = sorted(zip(code.children.tolist(), code.parents.tolist()))
    assert links == [(1, 0), (2, 0)]
    norm = (1 + 0.8**2) ** 0.5
    assert torch.allclose(code.weights, torch.full((2,), 0.8 / norm, dtype=torch.float64), atol=1e-5)
    # a child firing alone now fires its parent in the selection code
    lifted = code.lift(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    assert torch.isclose(lifted[0, 0].double(), code.norms[1].double() * code.weights[0], atol=1e-6)
    assert float(lifted[0, 0]) > 0.5


@pytest.mark.parametrize("make", [
    lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=16, d_sae=48, k=4, device="cpu")),
    lambda: TopKTrainingSAE(TopKTrainingSAEConfig(d_in=16, d_sae=48, k=4, device="cpu",
                                                  rescale_acts_by_decoder_norm=True)),
])
def test_selection_code_decodes_exactly_what_the_sae_did(make):
    torch.manual_seed(1)
    sae = make()
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(48, 1) + 0.5)
    x = torch.randn(512, 16)
    code = factorize_decoder(sae, x, min_cosine=0.2)
    assert code.n_links > 0
    with torch.no_grad():
        ref = sae.decode(sae.encode(x))
        got = code.decode(code.encode(x))
        assert float((got - ref).norm() / ref.norm()) < 1e-5
        z = sae.encode(x)
        assert torch.allclose(code.unlift(code.lift(z)), z, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    sae = _absorbed_sae()
    code = factorize_decoder(sae, firing_counts=torch.tensor([900, 300, 200, 100]))
    code.save(tmp_path / "code")
    back = SelectionCode.load(tmp_path / "code", sae)
    assert torch.equal(back.children, code.children) and torch.equal(back.weights, code.weights)
    other = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=32, d_sae=5, k=2, device="cpu"))
    with pytest.raises(ValueError, match="another|d_sae"):
        SelectionCode.load(tmp_path / "code", other)


def test_cyclic_A_from_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    sae = _absorbed_sae()
    code = factorize_decoder(sae, firing_counts=torch.tensor([900, 300, 200, 100]))
    code.save(tmp_path / "code")
    save_file({"children": torch.tensor([0, 1]), "parents": torch.tensor([1, 0]),
               "weights": torch.tensor([0.5, 0.5], dtype=torch.float64)},
              str(tmp_path / "code" / "selection_code.safetensors"))
    with pytest.raises(ValueError, match="cycle"):
        SelectionCode.load(tmp_path / "code", sae)


def test_bad_input():
    sae = _absorbed_sae()
    with pytest.raises(ValueError, match="min_cosine"):
        factorize_decoder(sae, firing_counts=torch.ones(4), min_cosine=1.5)
    with pytest.raises(ValueError, match="decoder"):
        factorize_decoder(object(), firing_counts=torch.ones(4))
    with pytest.raises(ValueError, match="d_in"):
        factorize_decoder(sae, torch.randn(10, 7))
    with pytest.raises(ValueError, match="NaN"):
        factorize_decoder(sae, torch.full((10, 32), float("nan")))


def test_decoder_basis_is_w_dec_or_the_probed_rows_and_refuses_a_non_affine_decode():
    from sae_causal_plugin.graph.factorization import decoder_basis

    torch.manual_seed(0)
    plain = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=8, d_sae=20, k=2, device="cpu",
                                                  rescale_acts_by_decoder_norm=False))
    D, b = decoder_basis(plain)
    assert torch.equal(D, plain.W_dec.detach()) and torch.equal(b, plain.b_dec.detach())
    rescaled = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=8, d_sae=20, k=2, device="cpu",
                                                     rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        rescaled.W_dec.mul_(torch.rand(20, 1) + 0.5)
    D, _ = decoder_basis(rescaled)
    expected = rescaled.decode(torch.eye(20)) - rescaled.decode(torch.zeros(1, 20))
    torch.testing.assert_close(D, expected.detach())
    assert not torch.allclose(D, rescaled.W_dec.detach())
    squared = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=8, d_sae=20, k=2, device="cpu"))
    squared.decode = lambda z: (z ** 2) @ squared.W_dec + squared.b_dec
    with pytest.raises(ValueError, match="not affine"):
        decoder_basis(squared)
