"""DiffusionSteering: error-preserving SAE edits during generation, windows, rows, masks."""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from sae_causal_plugin.diffusion import (
    DiffusionSteering,
    HookedDiffusionPipeline,
    StepWindow,
    hook_denoiser,
    resize_mask,
)
from sae_causal_plugin.steering import steer_activations

MID = "mid_block.hook_out"  # 32 channels, 4x4, in the tiny SD pipeline


def _sae(d_in: int = 32, d_sae: int = 64) -> StandardSAE:
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.5)
    return sae


@pytest.fixture(scope="module")
def sae():
    return _sae()


def _no_hooks_left(denoiser) -> bool:
    return not any(h.has_hooks() for h in denoiser.hook_dict.values()) and all(
        not m._forward_hooks and not m._forward_pre_hooks for m in denoiser.model.modules()
    )


def test_steering_changes_generation_and_strength_zero_is_identity(sd_pipe, sd_call, sae):
    ref = sd_pipe(**sd_call()).images
    with DiffusionSteering(
        sd_pipe, sae, [3, 7], "add", 20.0, hook_name=MID, window=StepWindow(steps=(0, 2)), cfg="cond"
    ) as steer:
        steered = sd_pipe(**sd_call()).images
    assert not torch.allclose(steered, ref)
    with DiffusionSteering(sd_pipe, sae, [3, 7], "add", 20.0, hook_name=MID, strength=0.0):
        same = sd_pipe(**sd_call()).images
    assert torch.equal(same, ref)
    assert _no_hooks_left(steer.denoiser)
    assert torch.equal(sd_pipe(**sd_call()).images, ref)


def test_edit_at_the_hook_is_error_preserving_and_row_limited(sd_pipe, sd_call, sae):
    hp = HookedDiffusionPipeline(sd_pipe)
    _, ref = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    with DiffusionSteering(
        hp, sae, [5], "clamp", 4.0, hook_name=MID, cfg="cond", window=StepWindow(steps=(0, 1))
    ):
        _, c = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    x, y = ref[MID, 667], c[MID, 667]
    assert torch.equal(y[:1], x[:1])  # uncond row untouched
    expected = steer_activations(x[1:], sae, [5], "clamp", 4.0, channel_dim=1)
    torch.testing.assert_close(y[1:], expected)
    z = sae.encode(x[1:].permute(0, 2, 3, 1)).detach()[..., 5]
    change = torch.einsum("bhw,c->bchw", 4.0 - z, sae.W_dec[5].detach())
    torch.testing.assert_close(y[1:] - x[1:], change, atol=1e-5, rtol=1e-5)


def test_spatial_mask(sd_pipe, sd_call, sae):
    hp = HookedDiffusionPipeline(sd_pipe)
    _, ref = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    mask = torch.zeros(16, 16)
    mask[:, :8] = 1.0  # left half of the image
    with DiffusionSteering(hp, sae, [1], "add", 5.0, hook_name=MID, mask=mask):
        _, c = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    changed = (c[MID, 667] - ref[MID, 667]).abs().sum(1) > 0  # (B, 4, 4)
    assert changed[:, :, :2].all() and not changed[:, :, 2:].any()


def test_per_image_masks(sd_pipe, sd_call, sae):
    hp = HookedDiffusionPipeline(sd_pipe)
    _, ref = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    masks = torch.zeros(1, 16, 16)
    masks[0, :8, :] = 1.0  # top half, for the one image (repeated over both CFG halves)
    with DiffusionSteering(hp, sae, [1], "add", 5.0, hook_name=MID, mask=masks):
        _, c = hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    changed = (c[MID, 667] - ref[MID, 667]).abs().sum(1) > 0  # (2, 4, 4)
    assert changed[:, :2].all() and not changed[:, 2:].any()
    two = torch.ones(3, 16, 16)
    with DiffusionSteering(hp, sae, [1], "add", 5.0, hook_name=MID, mask=two):
        with pytest.raises(ValueError, match="one .h, w. mask per generated image"):
            hp.run_with_cache(**sd_call(), names_filter=MID, timesteps=[667])
    with pytest.raises(ValueError, match=r"mask must be \(H, W\), or \(B, H, W\)"):
        DiffusionSteering(hp, sae, [1], "add", 5.0, hook_name=MID, mask=torch.ones(1, 1, 4, 4))


def test_resize_mask_for_tokens_and_maps():
    mask = torch.zeros(8, 8)
    mask[:4] = 1.0
    assert torch.equal(
        resize_mask(mask, torch.zeros(1, 3, 2, 2)), torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    )
    assert torch.equal(resize_mask(mask, torch.zeros(1, 4, 5)), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="grid"):
        resize_mask(torch.ones(2, 3), torch.zeros(1, 7, 5))
    per_image = torch.stack([mask, 1 - mask])
    assert torch.equal(resize_mask(per_image, torch.zeros(2, 4, 5)),
                       torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))
    assert resize_mask(per_image, torch.zeros(4, 3, 2, 2)).shape == (4, 2, 2)


class _Graph:
    def descendants(self, node):
        return {0: {3, 9}}.get(node, set())


def test_include_descendants(sd_pipe, sae):
    steer = DiffusionSteering(
        sd_pipe, sae, [0], "ablate", hook_name=MID, include_descendants=True, graph=_Graph()
    )
    assert steer.latents == [0, 3, 9]
    with pytest.raises(ValueError, match="needs graph="):
        DiffusionSteering(sd_pipe, sae, [0], "ablate", hook_name=MID, include_descendants=True)


def test_steering_a_bare_denoiser_by_timestep(denoisers):
    model, kw = denoisers["DiTTransformer2DModel"]
    hooked = hook_denoiser(model)
    sae = _sae(d_in=16, d_sae=32)
    late = {**kw, "timestep": torch.full((2,), 900)}
    with torch.no_grad():
        ref, late_ref = model(**kw).sample, model(**late).sample
        with DiffusionSteering(
            hooked,
            sae,
            [2],
            "add",
            10.0,
            hook_name="transformer_blocks.0.hook_out",
            window=StepWindow(timesteps=(400, 600)),
        ):
            inside = model(**kw).sample  # timestep 500
            outside = model(**late).sample
    assert not torch.allclose(inside, ref)
    assert torch.equal(outside, late_ref)
    assert _no_hooks_left(hooked)


def test_bad_input(sd_pipe, sd_call, sae):
    calls = []
    handle = sd_pipe.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"d_in=16 but mid_block.hook_out has 32 channels"):
            DiffusionSteering(sd_pipe, _sae(d_in=16), [0], "add", 1.0, hook_name=MID)
        with pytest.raises(ValueError, match="closest names"):
            DiffusionSteering(sd_pipe, sae, [0], "add", 1.0, hook_name="mid_block.hook_outt")
        with pytest.raises(ValueError, match="starts after the last of the 3"):
            DiffusionSteering(
                sd_pipe,
                sae,
                [0],
                "add",
                1.0,
                hook_name=MID,
                window=StepWindow(steps=(5, 9)),
                num_inference_steps=3,
            )
        with pytest.raises(ValueError, match="outside the scheduler's range"):
            DiffusionSteering(
                sd_pipe, sae, [0], "add", 1.0, hook_name=MID, window=StepWindow(timesteps=(0, 5000))
            )
        with pytest.raises(ValueError, match="needs value="):
            DiffusionSteering(sd_pipe, sae, [0], "clamp", hook_name=MID)
        with pytest.raises(ValueError, match=r"outside the SAE's range \[0, 64\)"):
            DiffusionSteering(sd_pipe, sae, [64], "add", 1.0, hook_name=MID)
        with pytest.raises(ValueError, match="cfg must be one of"):
            DiffusionSteering(sd_pipe, sae, [0], "add", 1.0, hook_name=MID, cfg="positive")
    finally:
        handle.remove()
    assert calls == []
    # a window that misses the actual schedule is caught at the first denoiser call
    steer = DiffusionSteering(
        sd_pipe, sae, [0], "add", 1.0, hook_name=MID, window=StepWindow(timesteps=(400, 600))
    )
    with pytest.raises(ValueError, match="selects none of the 3 denoising steps"), steer:
        sd_pipe(**sd_call())
    assert _no_hooks_left(steer.denoiser)


def test_hooks_removed_when_body_raises(sd_pipe, sd_call, sae):
    steer = DiffusionSteering(sd_pipe, sae, [0], "add", 1.0, hook_name=MID)
    with pytest.raises(KeyError), steer:
        raise KeyError("inside")
    assert _no_hooks_left(steer.denoiser)
    with steer:  # reusable after an error
        sd_pipe(**sd_call())
    assert _no_hooks_left(steer.denoiser)


def test_concept_steering_needs_a_hook_and_a_concept_with_latents(sd_pipe, sae):
    from sae_causal_plugin.diffusion import concept_steering

    with pytest.raises(ValueError, match="give hook="):
        with concept_steering(sd_pipe, {500: sae}, {"x": {500: [1]}}, "x"):
            pass
    with pytest.raises(ValueError, match="'y' has no latents"):
        with concept_steering(sd_pipe, {500: sae}, {"x": {500: [1]}}, "y", hook=MID):
            pass
    with concept_steering(sd_pipe, {500: sae}, {"x": {500: [1]}}, "x", hook=MID) as entered:
        assert len(entered) == 1 and entered[0].hook_name == MID
