"""Steering arithmetic on tiny tensors with real SAELens SAEs."""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.steering import decoder_directions, expand_latents, steer_activations

D_IN, D_SAE = 6, 12


def _sae(seed: int = 0, **cfg_kwargs) -> StandardSAE:
    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, **cfg_kwargs))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.5)  # make most latents fire
        sae.b_dec.normal_(0.0, 0.3)
    return sae


@pytest.fixture(scope="module")
def sae() -> StandardSAE:
    return _sae()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(5, D_IN, generator=torch.Generator().manual_seed(1))


def _z_target(z: torch.Tensor, ids: list[int], mode: str, value: float) -> torch.Tensor:
    out = z.clone()
    if mode == "add":
        out[:, ids] = z[:, ids] + value
    elif mode == "clamp":
        out[:, ids] = value
    elif mode == "ablate":
        out[:, ids] = 0.0
    else:
        out[:, ids] = value * z[:, ids]
    return out


@pytest.mark.parametrize(
    "mode,value", [("add", 2.5), ("clamp", 3.0), ("ablate", 0.0), ("scale", -1.5)]
)
def test_change_is_decoder_weighted_and_error_preserved(sae, x, mode, value):
    ids = [1, 4, 7]
    z = sae.encode(x).detach()
    steered = steer_activations(x, sae, ids, mode, value)
    z_new = _z_target(z, ids, mode, value)
    # x' - x = (z'_S - z_S) @ W_dec[S]
    expected = (z_new[:, ids] - z[:, ids]) @ sae.W_dec[ids].detach()
    torch.testing.assert_close(steered - x, expected, atol=1e-5, rtol=1e-5)
    # the SAE error x - decode(z) is kept: x' - decode(z') == x - decode(z)
    with torch.no_grad():
        torch.testing.assert_close(
            steered - sae.decode(z_new), x - sae.decode(z), atol=1e-5, rtol=1e-5
        )
    # latents outside S are untouched in the change
    assert not torch.allclose(steered, x)


@pytest.mark.parametrize("mode", ["add", "clamp", "ablate", "scale"])
def test_strength_zero_is_exact_noop(sae, x, mode):
    out = steer_activations(x, sae, [0, 3], mode, 5.0, strength=0.0)
    assert out is x


def test_noop_values_and_strength_scaling(sae, x):
    assert torch.equal(steer_activations(x, sae, [2], "add", 0.0), x)
    assert torch.equal(steer_activations(x, sae, [2], "scale", 1.0), x)
    full = steer_activations(x, sae, [2], "clamp", 4.0) - x
    half = steer_activations(x, sae, [2], "clamp", 4.0, strength=0.5) - x
    torch.testing.assert_close(half, 0.5 * full)


def test_ablate_subtracts_the_latent_and_skips_rows_where_it_is_off(sae, x):
    z = sae.encode(x).detach()
    counts = (z > 0).sum(0)
    partial = ((counts > 0) & (counts < len(x))).nonzero().flatten()
    assert len(partial), "need a latent that fires on some rows only"
    i = int(partial[0])
    off = z[:, i] == 0
    steered = steer_activations(x, sae, [i], "ablate")
    assert torch.equal(steered[off], x[off])
    torch.testing.assert_close(steered - x, -z[:, [i]] * sae.W_dec[i].detach())


def test_per_latent_values_and_add_without_encoding(sae, x):
    steered = steer_activations(
        x, sae, [5, 2], "add", [1.0, -2.0]
    )  # sorted ids: 2 -> 1.0, 5 -> -2.0
    expected = 1.0 * sae.W_dec[2] - 2.0 * sae.W_dec[5]
    torch.testing.assert_close(steered - x, expected.detach().expand_as(x), atol=1e-6, rtol=1e-5)


def test_channel_first_feature_maps_match_channel_last(sae):
    fmap = torch.randn(2, D_IN, 3, 4, generator=torch.Generator().manual_seed(2))
    out = steer_activations(fmap, sae, [1, 3], "clamp", 2.0, channel_dim=1)
    last = fmap.permute(0, 2, 3, 1)
    ref = steer_activations(last, sae, [1, 3], "clamp", 2.0).permute(0, 3, 1, 2)
    assert out.shape == fmap.shape
    torch.testing.assert_close(out, ref)


def test_mask_limits_the_edit(sae):
    fmap = torch.randn(2, D_IN, 3, 4, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(3, 4)
    mask[1:, 2:] = 1.0
    out = steer_activations(fmap, sae, [0], "add", 3.0, mask=mask, channel_dim=1)
    changed = (out - fmap).abs().sum(1) > 0
    assert torch.equal(changed, mask.bool().expand(2, 3, 4))


def test_topk_rescaled_decoder_directions():
    sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    dirs = decoder_directions(sae, [0, 5])
    expected = sae.W_dec[[0, 5]] / sae.W_dec[[0, 5]].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(dirs.detach(), expected.detach())


def test_stateful_normalisation_preserves_error():
    sae = _sae(normalize_activations="layer_norm")
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(4)) * 3 + 1
    ids = [2, 6]
    steered = steer_activations(x, sae, ids, "clamp", 1.0)
    with torch.no_grad():
        z = sae.encode(x)
        z_new = z.clone()
        z_new[:, ids] = 1.0
        recon = sae.decode(z)
        sae.encode(x)  # re-prime the per-row normalisation state
        recon_new = sae.decode(z_new)
    torch.testing.assert_close(steered - x, recon_new - recon, atol=1e-5, rtol=1e-5)


def test_bad_inputs(sae, x):
    with pytest.raises(ValueError, match="d_in=6"):
        steer_activations(torch.randn(3, 7), sae, [0], "add", 1.0)
    with pytest.raises(ValueError, match=r"outside the SAE's range"):
        steer_activations(x, sae, [D_SAE], "add", 1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        steer_activations(x, sae, [0], "boost", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one per latent"):
        steer_activations(x, sae, [0, 1], "add", [1.0, 2.0, 3.0])


class _Tree:
    """A minimal graph: children (finer concepts) of each node."""

    def __init__(self, children: dict):
        self.children = children

    def descendants(self, node):
        out, todo = set(), list(self.children.get(node, ()))
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(self.children.get(n, ()))
        return out


def test_expand_latents_with_descendants():
    tree = _Tree({0: [3, 4], 4: [9], 7: ["other:1"]})
    assert expand_latents([0], tree) == [0, 3, 4, 9]
    assert expand_latents([7], tree, latent_of=lambda n: None if isinstance(n, str) else n) == [7]
    with pytest.raises(ValueError, match="latent_of"):
        expand_latents([7], tree)
    with pytest.raises(ValueError, match="descendants"):
        expand_latents([0], object())  # type: ignore[arg-type]


def test_expand_latents_with_concept_graph():
    g = ConceptGraph()
    g.add_edge(3, 0)  # child 3 -> parent 0 (fine -> coarse)
    g.add_edge(5, 3)
    assert expand_latents([0], g) == [0, 3, 5]


def test_latent_firing_size_averages_only_where_the_latent_fires(sae, x):
    from sae_causal_plugin.steering.core import latent_firing_size

    z = sae.encode(x).detach()
    latent = int((z > 0).sum(0).argmax())
    on = z[:, latent][z[:, latent] > 0]
    size = latent_firing_size(sae, x.split(2), latent)  # chunks pool into one mean
    assert size.fired == on.numel() and size.rows == x.shape[0]
    assert size.mean == pytest.approx(float(on.mean()))
    silent = latent_firing_size(sae, [torch.zeros(0, D_IN)], latent)
    assert silent == (None, 0, 0)
