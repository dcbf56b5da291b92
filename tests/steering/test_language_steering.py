"""Language-model steering on tiny HookedTransformers built from config (no downloads)."""

from __future__ import annotations

import pytest
import torch
from sae_lens import HookedSAETransformer, StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.steering import steer_activations
from sae_causal_plugin.steering.language import (
    LanguageSteering,
    generate,
    mean_token_nll,
    next_token_probs,
)

HOOK = "blocks.0.hook_resid_post"
D_MODEL, D_SAE, VOCAB, N_CTX = 16, 24, 20, 12


def _cfg() -> HookedTransformerConfig:
    return HookedTransformerConfig(n_layers=2, d_model=D_MODEL, n_heads=2, d_head=8, d_mlp=32,
                                   n_ctx=N_CTX, d_vocab=VOCAB, act_fn="gelu", seed=0, device="cpu")


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return HookedTransformer(_cfg()).eval()


def _sae(d_in: int = D_MODEL, hook: str = HOOK) -> StandardSAE:
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE))
    sae.cfg.metadata.hook_name = hook
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.5)
    return sae.eval()


@pytest.fixture(scope="module")
def sae() -> StandardSAE:
    return _sae()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 8), generator=torch.Generator().manual_seed(1))


def _acts(model, tokens, steering=None):
    seen = {}

    def grab(x, hook):
        seen["x"] = x.detach().clone()

    hooks = [(HOOK, grab)]
    if steering is None:
        with model.hooks(fwd_hooks=hooks):
            logits = model(tokens)
    else:
        with steering, model.hooks(fwd_hooks=hooks):
            logits = model(tokens)
    return logits, seen["x"]


def test_edit_at_hook_equals_the_pure_arithmetic(model, sae, tokens):
    _, x = _acts(model, tokens)
    steering = LanguageSteering(model, sae, [3, 5], "add", 2.0)
    _, x_steered = _acts(model, tokens, steering)
    torch.testing.assert_close(x_steered, steer_activations(x, sae, [3, 5], "add", 2.0))


@pytest.mark.parametrize("mode,value", [("add", 0.0), ("scale", 1.0)])
def test_no_op_values_and_strength_zero_leave_logits_unchanged(model, sae, tokens, mode, value):
    clean = model(tokens)
    with LanguageSteering(model, sae, [1, 2], mode, value):
        torch.testing.assert_close(model(tokens), clean, atol=1e-5, rtol=1e-5)
    with LanguageSteering(model, sae, [1, 2], "clamp", 9.0, strength=0.0):
        assert torch.equal(model(tokens), clean)


def test_ablation_keeps_the_sae_error(model, sae, tokens):
    _, x = _acts(model, tokens)
    _, x_steered = _acts(model, tokens, LanguageSteering(model, sae, [0, 7], "ablate"))
    with torch.no_grad():
        z = sae.encode(x)
        z_new = z.clone()
        z_new[..., [0, 7]] = 0
        torch.testing.assert_close(x_steered - sae.decode(z_new), x - sae.decode(z), atol=1e-5, rtol=1e-5)


def test_positions_restrict_the_edit(model, sae, tokens):
    _, x = _acts(model, tokens)
    _, x_steered = _acts(model, tokens, LanguageSteering(model, sae, [4], "add", 3.0, positions=[1, -1]))
    changed = (x_steered - x).abs().sum(-1) > 1e-6
    assert changed[:, [1, 7]].all() and not changed[:, [0, 2, 3, 4, 5, 6]].any()
    mask = torch.zeros(8, dtype=torch.bool)
    mask[2] = True
    _, x_mask = _acts(model, tokens, LanguageSteering(model, sae, [4], "add", 3.0, positions=mask))
    assert ((x_mask - x).abs().sum(-1) > 1e-6).nonzero()[:, 1].unique().tolist() == [2]


def test_hooks_are_removed_after_exit_and_when_the_call_raises(model, sae, tokens):
    clean = model(tokens)
    with LanguageSteering(model, sae, [1], "add", 5.0):
        assert not torch.allclose(model(tokens), clean)
    torch.testing.assert_close(model(tokens), clean)
    with pytest.raises(RuntimeError, match="boom"):
        with LanguageSteering(model, sae, [1], "add", 5.0):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="outside a sequence"):
        with LanguageSteering(model, sae, [1], "add", 5.0, positions=[10]):
            model(tokens)  # 8 tokens: position 10 fails inside the forward pass
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    torch.testing.assert_close(model(tokens), clean)


def test_include_descendants_expands_through_the_graph(model, sae):
    graph = ConceptGraph()
    graph.add_edge(5, 2)
    graph.add_edge(9, 5)
    graph.add_edge(11, 3)
    steering = LanguageSteering(model, sae, [2], "ablate", include_descendants=True, graph=graph)
    assert steering.latents == [2, 5, 9]


def test_bad_input_is_rejected_early(model, sae):
    with pytest.raises(ValueError, match="closest.*blocks.0.hook_resid_post"):
        LanguageSteering(model, sae, [1], "add", 1.0, hook_name="blocks.0.hook_resid_pots")
    with pytest.raises(ValueError, match="d_in=8"):
        LanguageSteering(model, _sae(d_in=8), [1], "add", 1.0)
    graph = ConceptGraph()
    graph.add_edge(5, 2)
    with pytest.raises(ValueError, match="not concepts of the graph"):
        LanguageSteering(model, sae, [7], "add", 1.0, include_descendants=True, graph=graph)
    with pytest.raises(ValueError, match="needs graph"):
        LanguageSteering(model, sae, [7], "add", 1.0, include_descendants=True)
    with pytest.raises(ValueError, match="outside the model's context"):
        LanguageSteering(model, sae, [1], "add", 1.0, positions=[N_CTX])
    with pytest.raises(ValueError, match="positions must be"):
        LanguageSteering(model, sae, [1], "add", 1.0, positions=[1.5])
    with pytest.raises(ValueError, match="outside the SAE's range"):
        LanguageSteering(model, sae, [D_SAE], "add", 1.0)
    with pytest.raises(ValueError, match="needs value"):
        LanguageSteering(model, sae, [1], "clamp")
    with pytest.raises(ValueError, match="mode must be"):
        LanguageSteering(model, sae, [1], "push", 1.0)


def test_hooked_sae_transformer_with_and_without_a_spliced_sae(sae, tokens):
    model = HookedSAETransformer(_cfg()).eval()
    clean = model(tokens)
    with LanguageSteering(model, sae, [2], "add", 4.0):
        steered = model(tokens)
    assert not torch.allclose(steered, clean)
    spliced = _sae()
    spliced.use_error_term = True
    model.add_sae(spliced)
    torch.testing.assert_close(model(tokens), clean, atol=1e-5, rtol=1e-5)
    steering = LanguageSteering(model, sae, [2], "add", 4.0)
    assert steering.hook_name == f"{HOOK}.hook_sae_output"
    with steering:
        torch.testing.assert_close(model(tokens), steered, atol=1e-4, rtol=1e-4)
    model.reset_saes()


def test_generation_and_readouts(model, sae, tokens):
    out = generate(model, tokens[:, :4], max_new_tokens=3)
    assert out.shape == (3, 7) and torch.equal(out[:, :4], tokens[:, :4])
    assert torch.equal(out, generate(model, tokens[:, :4], max_new_tokens=3))
    steering = LanguageSteering(model, sae, [1], "add", 50.0, positions=[-1])
    steered = generate(model, tokens[:, :4], max_new_tokens=3, steering=steering)
    assert steered.shape == (3, 7)
    probs = next_token_probs(model, tokens)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert mean_token_nll(model, tokens) > 0
    with pytest.raises(ValueError, match="exceed the context"):
        generate(model, tokens, max_new_tokens=N_CTX)
