"""HookedDiffusionPipeline: per-timestep caches, CFG rows, step windows and bad input."""

from __future__ import annotations

import pytest
import torch

from sae_causal_plugin.diffusion import HookedDiffusionPipeline, StepWindow

SCHEDULE = [667, 334, 1]  # DDIM, 1000 train steps, 3 inference steps, steps_offset=1
UP = "up_blocks.1.hook_out"


def _no_hooks_left(hp) -> bool:
    den = hp.denoiser
    return not any(h.has_hooks() for h in den.hook_dict.values()) and all(
        not m._forward_hooks and not m._forward_pre_hooks for m in den.model.modules()
    )


def test_generation_identical_and_cached_per_timestep(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    ref = sd_pipe(**sd_call()).images
    assert torch.equal(hp(**sd_call()).images, ref)
    out, cache = hp.run_with_cache(**sd_call(), names_filter=["mid_block.hook_out", UP])
    assert torch.equal(out.images, ref)
    assert cache.timesteps == SCHEDULE
    assert set(cache) == {(n, t) for n in ["mid_block.hook_out", UP] for t in SCHEDULE}
    assert cache["mid_block.hook_out", 667].shape == (2, 32, 4, 4)  # CFG: [uncond, cond]
    assert cache.stack(UP).shape == (3, 2, 16, 8, 8)
    assert _no_hooks_left(hp)


def test_cfg_row_selection(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    assert hp.tracker.cfg_layout == ("uncond", "cond")
    caches = {
        rows: hp.run_with_cache(**sd_call(), names_filter=UP, timesteps=[667], cfg=rows)[1][UP, 667]
        for rows in ("both", "cond", "uncond")
    }
    assert caches["cond"].shape[0] == caches["uncond"].shape[0] == 1
    assert torch.equal(caches["both"][1:], caches["cond"])
    assert torch.equal(caches["both"][:1], caches["uncond"])
    assert not torch.equal(caches["cond"], caches["uncond"])

    # a hook on the uncond rows leaves the cond rows of the same step untouched
    seen = []

    def zero(x, hook):
        seen.append(x.shape[0])
        return torch.zeros_like(x)

    with hp.hooks([("mid_block.hook_out", zero)], cfg="uncond"):
        _, c = hp.run_with_cache(**sd_call(), names_filter=UP, timesteps=[667])
    assert seen == [1, 1, 1]
    assert torch.equal(c[UP, 667][1:], caches["cond"])
    assert not torch.allclose(c[UP, 667][:1], caches["uncond"])
    assert _no_hooks_left(hp)


def test_no_cfg_means_all_rows_are_cond(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    _, both = hp.run_with_cache(**sd_call(guidance_scale=1.0), names_filter=UP, cfg="both")
    _, cond = hp.run_with_cache(**sd_call(guidance_scale=1.0), names_filter=UP, cfg="cond")
    _, uncond = hp.run_with_cache(**sd_call(guidance_scale=1.0), names_filter=UP, cfg="uncond")
    assert both[UP, 667].shape[0] == 1 and torch.equal(both[UP, 667], cond[UP, 667])
    assert len(uncond) == 0


@pytest.mark.parametrize(
    "window,expected",
    [
        (StepWindow(steps=(1, None)), [334, 1]),
        (StepWindow(steps=(0, 1)), [667]),
        (StepWindow(timesteps=(300, 700)), [667, 334]),
        (StepWindow.at([334]), [334]),
    ],
)
def test_window_gating(sd_pipe, sd_call, window, expected):
    hp = HookedDiffusionPipeline(sd_pipe)
    seen = []

    def record(x, hook):
        seen.append((hp.state.step, hp.state.timestep))

    hp.run_with_hooks(**sd_call(), fwd_hooks=[("mid_block.hook_out", record)], window=window)
    assert [t for _, t in seen] == expected
    assert [s for s, _ in seen] == [SCHEDULE.index(t) for t in expected]


def test_edit_outside_window_has_no_effect_before_it(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    _, ref = hp.run_with_cache(**sd_call(), names_filter=UP)
    with hp.hooks([("mid_block.hook_out", lambda x, hook: x * 3)], window=StepWindow(steps=(2, 3))):
        _, c = hp.run_with_cache(**sd_call(), names_filter=UP)
    assert torch.equal(c[UP, 667], ref[UP, 667]) and torch.equal(c[UP, 334], ref[UP, 334])
    assert not torch.allclose(c[UP, 1], ref[UP, 1])


def test_unconditional_ddpm_pipeline(ddpm_pipe):
    hp = HookedDiffusionPipeline(ddpm_pipe)
    call = dict(batch_size=2, num_inference_steps=4, output_type="np")
    ref = ddpm_pipe(**call, generator=torch.Generator().manual_seed(0)).images
    out, cache = hp.run_with_cache(
        **call,
        generator=torch.Generator().manual_seed(0),
        names_filter="mid_block.hook_out",
        cfg="cond",
    )
    assert (out.images == ref).all()
    assert cache.timesteps == [750, 500, 250, 0]
    assert cache["mid_block.hook_out", 750].shape == (2, 16, 4, 4)


def test_dit_pipeline_cond_first(dit_pipe):
    hp = HookedDiffusionPipeline(dit_pipe)
    assert hp.tracker.cfg_layout == ("cond", "uncond")
    name = "transformer_blocks.1.hook_out"
    call = dict(class_labels=[1, 2], num_inference_steps=2, output_type="np")
    _, both = hp.run_with_cache(
        **call, generator=torch.Generator().manual_seed(0), names_filter=name, cfg="both"
    )
    _, cond = hp.run_with_cache(
        **call, generator=torch.Generator().manual_seed(0), names_filter=name, cfg="cond"
    )
    t = both.timesteps[0]
    assert both[name, t].shape[0] == 4 and cond[name, t].shape[0] == 2
    assert torch.equal(both[name, t][:2], cond[name, t])


def test_bad_input_raises_before_generation(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    calls = []
    handle = sd_pipe.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        cases = [
            (dict(timesteps=[1500]), "outside the scheduler's range"),
            (dict(timesteps=[500]), r"not in the scheduler's schedule; nearest: \{500: 334\}"),
            (dict(timesteps=StepWindow(timesteps=(-10, 500))), "outside the scheduler's range"),
            (dict(timesteps=StepWindow(steps=(5, 8))), "starts after the last of the 3"),
            (dict(timesteps=StepWindow(timesteps=(400, 600))), "selects none of the 3"),
            (dict(names_filter="mid_block.hook_outt"), "Closest names"),
            (dict(cfg="conditional"), "cfg must be one of"),
        ]
        for kwargs, msg in cases:
            kwargs.setdefault("names_filter", "mid_block.hook_out")
            with pytest.raises(ValueError, match=msg):
                hp.run_with_cache(**sd_call(), **kwargs)
    finally:
        handle.remove()
    assert calls == []
    assert _no_hooks_left(hp)


def test_hooks_removed_when_generation_raises(sd_pipe, sd_call):
    hp = HookedDiffusionPipeline(sd_pipe)
    ref = sd_pipe(**sd_call()).images

    def boom(x, hook):
        if hp.state.step == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        hp.run_with_hooks(**sd_call(), fwd_hooks=[("mid_block.hook_out", boom)])
    assert _no_hooks_left(hp)
    assert torch.equal(hp(**sd_call()).images, ref)
