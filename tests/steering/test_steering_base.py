"""One steering base: language and diffusion steering refuse the same bad input with the same
message, and always remove their hooks (tiny models built from config, no downloads)."""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_causal_plugin.diffusion import DiffusionSteering, hook_denoiser
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.steering import LanguageSteering, Steering

WIDTH, D_SAE = 16, 24  # the language model's d_model and the UNet's mid-block channels
LM_HOOK, UNET_HOOK = "blocks.0.hook_resid_post", "mid_block.hook_out"


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, d_model=WIDTH, n_heads=2, d_head=8, d_mlp=32, n_ctx=8,
                                  d_vocab=20, act_fn="gelu", seed=0, device="cpu")
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    net = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                      block_out_channels=(8, WIDTH), down_block_types=("DownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()
    return hook_denoiser(net)


def _sae(d_in: int = WIDTH) -> StandardSAE:
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.5)
    return sae.eval()


def _nan_sae() -> StandardSAE:
    sae = _sae()
    with torch.no_grad():
        sae.W_dec[3, 2] = math.nan
    return sae


def _graph() -> ConceptGraph:
    graph = ConceptGraph()
    graph.add_edge(5, 2)
    return graph


SAE = _sae()

#: (sae, latents, mode, value, keyword arguments): one fault each
BAD_INPUTS = {
    "unknown mode": (SAE, [1], "push", 1.0, {}),
    "clamp without value": (SAE, [1], "clamp", None, {}),
    "nan value": (SAE, [1], "add", math.nan, {}),
    "inf in a value list": (SAE, [1, 2], "add", [1.0, math.inf], {}),
    "nan value tensor": (SAE, [1], "add", torch.tensor([math.nan]), {}),
    "value as text": (SAE, [1], "add", "1", {}),
    "nan strength": (SAE, [1], "add", 1.0, {"strength": math.nan}),
    "hook name in the latents slot": (SAE, "blocks.3.hook_out", "add", 1.0, {}),
    "float latent": (SAE, [1.5], "add", 1.0, {}),
    "bool latent": (SAE, [True], "add", 1.0, {}),
    "float latent tensor": (SAE, torch.tensor([1.0]), "add", 1.0, {}),
    "latent outside the SAE": (SAE, [D_SAE], "add", 1.0, {}),
    "no latents": (SAE, [], "add", 1.0, {}),
    "descendants without a graph": (SAE, [2], "ablate", None, {"include_descendants": True}),
    "latent not in the graph": (SAE, [7], "ablate", None, {"include_descendants": True, "graph": _graph()}),
    "not an SAE": (object(), [1], "add", 1.0, {}),
    "SAE with NaN weights": (_nan_sae(), [1], "add", 1.0, {}),
    "SAE d_in is not the hook width": (_sae(d_in=8), [1], "add", 1.0, {}),
    "unknown hook": (SAE, [1], "add", 1.0, {"hook_name": "no.such_hook_zzz"}),
    "no hook and none in the SAE metadata": (SAE, [1], "add", 1.0, {"hook_name": None}),
}


def _refusal(cls, hooked, hook: str, case: str) -> str:
    sae, latents, mode, value, kwargs = BAD_INPUTS[case]
    kwargs = {"hook_name": hook, **kwargs}
    with pytest.raises(ValueError) as err:
        cls(hooked, sae, latents, mode, value, **kwargs)
    return str(err.value).replace(hook, "<hook>").replace(type(hooked).__name__, "<model>")


def _no_hooks(hooked) -> bool:
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in hooked.hook_dict.values())


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_both_refuse_the_same_bad_input_with_the_same_message(model, unet, case):
    language = _refusal(LanguageSteering, model, LM_HOOK, case)
    diffusion = _refusal(DiffusionSteering, unet, UNET_HOOK, case)
    assert language == diffusion
    assert _no_hooks(model) and _no_hooks(unet)


def test_the_messages_say_what_to_change(model):
    expected = {
        "unknown mode": "mode must be one of ('add', 'clamp', 'ablate', 'scale'), got 'push'",
        "clamp without value": "needs value=",
        "nan value": "value must be a finite number, got nan",
        "nan strength": "strength must be a finite number, got nan",
        "hook name in the latents slot": "a hook name goes in hook_name=",
        "float latent": "latents must be SAE latent ids (ints), got 1.5",
        "latent outside the SAE": f"outside the SAE's range [0, {D_SAE})",
        "descendants without a graph": "needs graph=",
        "latent not in the graph": "not concepts of the graph; steer them without include_descendants",
        "not an SAE": "sae must be a SAELens SAE with cfg.d_in and cfg.d_sae",
        "SAE with NaN weights": "the SAE's W_dec contain NaN values (first at row 3); load or train an SAE with finite weights",
        "SAE d_in is not the hook width": "SAE d_in=8 but <hook> has 16 channels; use the SAE trained on this hook",
        "unknown hook": "unknown hook name 'no.such_hook_zzz' on <model>; every name is in .hook_dict",
        "no hook and none in the SAE metadata": "pass hook_name=",
    }
    for case, pattern in expected.items():  # plain substrings
        message = _refusal(LanguageSteering, model, LM_HOOK, case)
        assert pattern in message, (case, message)


def test_close_hook_names_are_suggested_for_both(model, unet):
    with pytest.raises(ValueError, match=r"closest names: \['blocks.0.hook_resid_post'"):
        LanguageSteering(model, SAE, [1], "add", 1.0, hook_name="blocks.0.hook_resid_pots")
    with pytest.raises(ValueError, match=r"closest names: \['mid_block.hook_out'"):
        DiffusionSteering(unet, SAE, [1], "add", 1.0, hook_name="mid_block.hook_outt")


def _runs(model, unet):
    tokens = torch.tensor([[1, 2, 3, 4]])
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    return (
        (LanguageSteering, model, LM_HOOK, lambda: model(tokens)),
        (DiffusionSteering, unet, UNET_HOOK, lambda: unet.model(noise, t).sample),
    )


@torch.no_grad()
def test_hooks_are_removed_after_an_exception_inside_the_with_block(model, unet):
    for cls, hooked, hook, run in _runs(model, unet):
        clean = run()
        steering = cls(hooked, SAE, [1, 2], "add", 20.0, hook_name=hook)
        with pytest.raises(RuntimeError, match="boom"):
            with steering:
                assert not torch.allclose(run(), clean), cls.__name__
                raise RuntimeError("boom")
        assert _no_hooks(hooked), cls.__name__
        torch.testing.assert_close(run(), clean)
        with steering:  # usable again afterwards
            with pytest.raises(RuntimeError, match="already active"):
                steering.__enter__()
            assert not torch.allclose(run(), clean)
        assert _no_hooks(hooked), cls.__name__


@contextmanager
def _fails_on_enter():
    raise OSError("cannot attach")
    yield  # pragma: no cover


@torch.no_grad()
def test_a_failure_while_entering_removes_the_hook_already_registered(model, unet):
    for cls, hooked, hook, run in _runs(model, unet):
        failing = type(f"Failing{cls.__name__}", (cls,), {"extra_contexts": lambda self: [_fails_on_enter()]})
        steering = failing(hooked, SAE, [1], "add", 20.0, hook_name=hook)
        with pytest.raises(OSError, match="cannot attach") as err:
            steering.__enter__()
        assert _no_hooks(hooked), cls.__name__  # while the traceback (and its frames) still live
        del err
        steering.__exit__(None, None, None)  # nothing was entered: a no-op
        with pytest.raises(OSError, match="cannot attach"), steering:  # not left half-active
            pass
        assert _no_hooks(hooked), cls.__name__
        torch.testing.assert_close(run(), run())


def test_both_are_steering_subclasses_with_the_same_argument_order():
    base = list(inspect.signature(Steering.__init__).parameters.values())[1:]
    for cls in (LanguageSteering, DiffusionSteering):
        params = list(inspect.signature(cls.__init__).parameters.values())[1:len(base) + 1]
        assert params[0].kind == base[0].kind  # the model (model / target), then the rest by name
        assert [(p.name, p.kind, p.default) for p in params[1:]] == [(p.name, p.kind, p.default) for p in base[1:]]
    assert issubclass(LanguageSteering, Steering) and issubclass(DiffusionSteering, Steering)
