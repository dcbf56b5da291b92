"""HookedUNet / HookedDiT: bit identity, hook names, caches, deltas, hooks and clean-up."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from transformer_lens import HookedRootModule

from sae_causal_plugin.diffusion import HookedDiT, HookedUNet, hook_denoiser
from sae_causal_plugin.diffusion.hooked import _pack, _unpack
from .tiny import TINY_DENOISERS


def _sample(out):
    return out if isinstance(out, torch.Tensor) else out[0]


def _no_hooks_left(hooked) -> bool:
    points_clean = not any(hp.has_hooks() for hp in hooked.hook_dict.values())
    torch_clean = all(
        not m._forward_hooks and not m._forward_pre_hooks for m in hooked.model.modules()
    )
    return points_clean and torch_clean


@pytest.mark.parametrize("name", list(TINY_DENOISERS))
def test_bit_identical_and_shared(denoisers, name):
    model, kw = denoisers[name]
    with torch.no_grad():
        ref = _sample(model(**kw))
        hooked = hook_denoiser(model)
        out = _sample(hooked(**kw))
        cached_out, cache = hooked.run_with_cache(**kw)
    assert isinstance(hooked, HookedRootModule)
    assert isinstance(hooked, HookedUNet if name.startswith("UNet") else HookedDiT)
    assert hooked.hook_dict and len(cache) == len(hooked.hook_dict)
    assert torch.equal(out, ref)
    assert torch.equal(_sample(cached_out), ref)
    assert hooked.model is model
    assert all(a is b for a, b in zip(hooked.parameters(), model.parameters()))
    assert sum(p.numel() for p in hooked.parameters()) == sum(p.numel() for p in model.parameters())
    assert hook_denoiser(hooked) is hooked
    assert _no_hooks_left(hooked)


@pytest.mark.parametrize("name", list(TINY_DENOISERS))
def test_cache_shapes_match_channels(denoisers, name):
    model, kw = denoisers[name]
    hooked = hook_denoiser(model)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(**kw)
    for hook_name, act in cache.items():
        assert act.shape[0] == 2, hook_name
        channel_dim = 1 if act.ndim == 4 else -1
        assert act.ndim in (3, 4)
        assert act.shape[channel_dim] == hooked.hook_channels(hook_name), hook_name
        if name.startswith("UNet"):
            assert act.ndim == (3 if ".attn2." in hook_name else 4), hook_name
        else:
            assert act.ndim == 3, hook_name


def test_unet_hook_names(unet_cond):
    model, _ = unet_cond
    names = set(hook_denoiser(model).hook_dict)
    for i in range(len(model.down_blocks)):
        assert f"down_blocks.{i}.hook_out" in names
        assert f"down_blocks.{i}.resnets.0.hook_out" in names
        assert f"up_blocks.{i}.hook_out" in names
    assert {
        "mid_block.hook_out",
        "mid_block.hook_delta",
        "mid_block.attentions.0.hook_out",
    } <= names
    assert "down_blocks.0.attentions.0.hook_delta" in names
    assert "down_blocks.0.hook_delta" not in names  # downsamples: no residual update
    assert "up_blocks.0.resnets.0.hook_delta" not in names  # consumes a skip connection
    cross = [n for n in names if ".attn2." in n]
    assert cross and all(n.endswith("transformer_blocks.0.attn2.hook_out") for n in cross)
    assert "mid_block.attentions.0.transformer_blocks.0.attn2.hook_out" in cross


def test_cross_attention_output_is_hooked_where_the_tokens_enter(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.hook_out"
    cross = [n for n in hooked.hook_dict if ".attn2." in n]
    other = dict(kw, encoder_hidden_states=kw["encoder_hidden_states"] + 1.0)
    zero = [(n, lambda x, hook: torch.zeros_like(x)) for n in cross]
    with torch.no_grad():
        ref, ref_other = _sample(hooked(**kw)), _sample(hooked(**other))
        _, cache = hooked.run_with_cache(**kw, names_filter=name)
        _, cache_other = hooked.run_with_cache(**other, names_filter=name)
        zeroed = _sample(hooked.run_with_hooks(**kw, fwd_hooks=zero))
        zeroed_other = _sample(hooked.run_with_hooks(**other, fwd_hooks=zero))
    assert cache[name].ndim == 3 and cache[name].shape[-1] == hooked.hook_channels(name)
    assert not torch.equal(cache[name], cache_other[name]) and not torch.allclose(ref, ref_other)
    # the cross-attention outputs are the tokens' only way in: zeroed, the tokens change nothing
    assert torch.equal(zeroed, zeroed_other)
    assert _no_hooks_left(hooked)


def test_dit_hook_names(denoisers):
    for name in ["DiTTransformer2DModel", "PixArtTransformer2DModel", "SD3Transformer2DModel"]:
        model, _ = denoisers[name]
        expected = {
            f"transformer_blocks.{i}.{k}"
            for i in range(len(model.transformer_blocks))
            for k in ("hook_out", "hook_delta")
        }
        assert set(hook_denoiser(model).hook_dict) == expected
    flux, _ = denoisers["FluxTransformer2DModel"]
    assert "single_transformer_blocks.0.hook_out" in hook_denoiser(flux).hook_dict


def test_hook_delta_is_out_minus_in(denoisers, unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    with torch.no_grad():
        _, c = hooked.run_with_cache(**kw)
    x_in = c["down_blocks.1.hook_out"]  # the mid block's input
    assert torch.equal(c["mid_block.hook_delta"], c["mid_block.hook_out"] - x_in)
    assert torch.equal(
        c["mid_block.resnets.0.hook_delta"], c["mid_block.resnets.0.hook_out"] - x_in
    )
    model, kw = denoisers["SD3Transformer2DModel"]
    hooked = hook_denoiser(model)
    with torch.no_grad():
        _, c = hooked.run_with_cache(**kw)
    assert torch.equal(
        c["transformer_blocks.1.hook_delta"],
        c["transformer_blocks.1.hook_out"] - c["transformer_blocks.0.hook_out"],
    )


def test_editing_the_delta_sets_the_output(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    with (
        torch.no_grad(),
        hooked.hooks(
            fwd_hooks=[("mid_block.resnets.1.hook_delta", lambda x, hook: torch.zeros_like(x))]
        ),
    ):
        _, c = hooked.run_with_cache(
            **kw, names_filter=["mid_block.attentions.0.hook_out", "mid_block.resnets.1.hook_out"]
        )
    torch.testing.assert_close(
        c["mid_block.resnets.1.hook_out"], c["mid_block.attentions.0.hook_out"]
    )
    assert _no_hooks_left(hooked)


def test_run_with_hooks_modifies_and_cleans_up(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    with torch.no_grad():
        ref = model(**kw).sample
        out = hooked.run_with_hooks(
            **kw, fwd_hooks=[("up_blocks.0.hook_out", lambda x, hook: x * 0)]
        ).sample
        assert not torch.allclose(out, ref)
        assert _no_hooks_left(hooked)
        assert torch.equal(hooked(**kw).sample, ref)


def test_down_block_edit_reaches_skip_connection(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    seen = {}

    def grab(module, args, kwargs):
        seen["skips"] = kwargs["res_hidden_states_tuple"]

    edited = {}

    def plus_one(x, hook):
        edited["x"] = x + 1.0
        return edited["x"]

    handle = model.up_blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            hooked.run_with_hooks(**kw, fwd_hooks=[("down_blocks.0.hook_out", plus_one)])
    finally:
        handle.remove()
    assert any(s is edited["x"] for s in seen["skips"])


def test_hooks_removed_after_exception(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)

    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        hooked.run_with_hooks(
            **kw,
            fwd_hooks=[("mid_block.hook_out", lambda x, hook: x), ("up_blocks.1.hook_out", boom)],
        )
    assert _no_hooks_left(hooked)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), hooked.attached():
        with hooked.hooks(fwd_hooks=[("mid_block.hook_delta", boom)]):
            model(**kw)
    assert _no_hooks_left(hooked)


def test_backward_hooks(denoisers):
    model, kw = denoisers["UNet2DModel"]
    hooked = hook_denoiser(model)
    sample = kw["sample"].clone().requires_grad_(True)
    inputs = {**kw, "sample": sample}
    grads = {}

    def save_grad(g, hook):
        grads[hook.name] = g.detach().clone()

    def kill_grad(g, hook):
        return torch.zeros_like(g)

    hooked(**inputs).sample.pow(2).sum().backward()
    ref_grad = sample.grad.clone()
    sample.grad = None
    with hooked.hooks(
        bwd_hooks=[("mid_block.hook_out", save_grad), ("mid_block.hook_delta", save_grad)]
    ):
        out = hooked(**inputs).sample
        out.pow(2).sum().backward()
    assert grads["mid_block.hook_out"].shape == (2, 16, 8, 8)
    # the delta's gradient is the output's gradient (out = in + delta)
    torch.testing.assert_close(grads["mid_block.hook_delta"], grads["mid_block.hook_out"])
    torch.testing.assert_close(sample.grad, ref_grad)  # observing does not change gradients
    sample.grad = None
    with hooked.hooks(bwd_hooks=[("mid_block.hook_out", kill_grad)]):
        hooked(**inputs).sample.pow(2).sum().backward()
    assert not torch.allclose(sample.grad, ref_grad)
    assert _no_hooks_left(hooked)


def test_unknown_hook_name_lists_closest(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    calls = [
        lambda: hooked.run_with_hooks(**kw, fwd_hooks=[("mid_blocks.hook_out", lambda x, hook: x)]),
        lambda: hooked.run_with_cache(**kw, names_filter="mid_block.hook_ou"),
        lambda: hooked.run_with_cache(
            **kw, names_filter=["mid_block.hook_out", "midblock.hook_out"]
        ),
        lambda: hooked.add_hook("mid_block.hookout", lambda x, hook: x),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"Closest names: \['mid_block\.hook_out'"):
            call()
    assert _no_hooks_left(hooked)


def test_attached_fires_hooks_on_raw_calls(unet_cond):
    model, kw = unet_cond
    hooked = hook_denoiser(model)
    with torch.no_grad():
        ref = model(**kw).sample
        with hooked.hooks(fwd_hooks=[("mid_block.hook_out", lambda x, hook: -x)]):
            assert torch.equal(model(**kw).sample, ref)  # raw call, not attached
            with hooked.attached():
                assert not torch.allclose(model(**kw).sample, ref)
    assert _no_hooks_left(hooked)


def test_pack_unpack_outputs():
    a, b = torch.zeros(2), torch.ones(2)
    out = Transformer2DModelOutput(sample=a)
    assert _unpack(out, 0) is a
    packed = _pack(out, 0, a, b)
    assert isinstance(packed, Transformer2DModelOutput) and packed.sample is b
    skip = torch.full((2,), 3.0)
    packed = _pack((a, (skip, a)), 0, a, b)
    assert packed[0] is b and packed[1][0] is skip and packed[1][1] is b
    enc = torch.full((2,), 5.0)
    packed = _pack((enc, a), 1, a, b)
    assert packed == (enc, b)


def test_unsupported_model():
    with pytest.raises(TypeError, match="Unsupported denoiser"):
        hook_denoiser(torch.nn.Linear(2, 2))
