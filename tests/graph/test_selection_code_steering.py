"""Steering through the factorised code: ablating a parent removes its atom inside the children that
absorbed it, with the SAE's reconstruction error kept."""

import pytest
import torch
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.factorization import factorize_decoder
from sae_causal_plugin.steering.core import expand_latents, steer_activations

COUNTS = torch.tensor([900, 300, 200, 100])  # parent 0 fires most, then its children 1 and 2, then 3


def _absorbing(k: int = 1, d_in: int = 32):
    """Orthonormal features f; SAE rows: parent f0, children f1 + 0.8 f0 and f2 + 0.8 f0 (absorbed), free f3."""
    f, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=torch.Generator().manual_seed(0)))
    f = f.T[:4].contiguous()
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=4, k=k, device="cpu"))
    with torch.no_grad():
        sae.W_dec.copy_(torch.stack([f[0], f[1] + 0.8 * f[0], f[2] + 0.8 * f[0], f[3]]))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae, f


def test_ablating_a_parent_through_the_selection_code_removes_it_inside_an_absorbing_child():
    sae, f = _absorbing(k=1)
    code = factorize_decoder(sae, firing_counts=COUNTS)
    x = 2.0 * (f[1] + 0.8 * f[0]).unsqueeze(0)  # child 1 with its parent present
    with torch.no_grad():
        z = sae.encode(x)
        assert z[0].nonzero().flatten().tolist() == [1]  # the child absorbed the parent: latent 0 is silent
        plain = steer_activations(x, sae, 0, "ablate")
        factorised = steer_activations(x, code, 0, "ablate")
    assert torch.equal(plain, x)  # plain steering has nothing to remove
    # the selection code lifts the child's parent share onto latent 0, whose atom is the parent direction
    share = float(code.encode(x)[0, 0])
    assert share > 1.0
    assert torch.allclose(code.atoms[0].float(), f[0], atol=1e-5)
    assert torch.allclose(x - factorised, share * f[0], atol=1e-4)  # only the parent atom goes
    assert torch.allclose(factorised @ f[1], x @ f[1], atol=1e-5)  # the child's own direction stays


def test_error_term_is_kept_and_include_descendants_follows_the_recovered_links():
    sae, f = _absorbing(k=2)
    code = factorize_decoder(sae, firing_counts=COUNTS)
    graph = ConceptGraph()
    for i in range(4):
        graph.add_concept(i)
    for c, p in zip(code.children.tolist(), code.parents.tolist()):
        graph.add_edge(c, p)
    assert expand_latents(0, graph) == [0, 1, 2]
    x = (f[1] + 0.8 * f[0] + 0.5 * f[3]).unsqueeze(0) + 0.01 * torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lifted = code.encode(x)
        out = steer_activations(x, code, expand_latents(0, graph), "ablate")
        # error-preserving: the change is exactly minus the decoded atoms of the ablated latents
        removed = lifted[:, [0, 1, 2]] @ code.atoms[[0, 1, 2]]
        assert torch.allclose(x - out, removed.float(), atol=1e-5)
        # the unrelated feature keeps its share of the input
        assert torch.allclose(out @ f[3], x @ f[3], atol=1e-5)
