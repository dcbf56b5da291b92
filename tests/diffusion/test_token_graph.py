"""Per-token timestep SAEs and their spatial graph on any pipeline: the SD v1.4 path on its tiny twin."""

import json
import runpy
from pathlib import Path

import pytest
import torch

from sae_causal_plugin.diffusion import HookedDiffusionPipeline
from sae_causal_plugin.diffusion.sd14 import SD14, load_sd14, tiny_sd14_pipeline
from sae_causal_plugin.diffusion.token_graph import (
    TokenSAESpec, explained_variance, generated_tokens, nearest_schedule_timesteps, token_codes, train_token_sae,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sd14_concept_graph.py"


@pytest.fixture(scope="module")
def tiny():
    return HookedDiffusionPipeline(tiny_sd14_pipeline())


def test_the_tiny_twin_has_every_sd14_hook_and_the_paper_timesteps_map_onto_its_schedule(tiny):
    for hook in SD14.hooks:
        tiny.denoiser.check_hook_name(hook)
    assert nearest_schedule_timesteps(tiny.scheduler, 10, SD14.timesteps) == [901, 501, 101]
    assert nearest_schedule_timesteps(tiny.scheduler, 50, SD14.timesteps) == [901, 501, 101]
    with pytest.raises(ValueError, match="outside the scheduler's range"):
        nearest_schedule_timesteps(tiny.scheduler, 10, [1000, 500])
    with pytest.raises(ValueError, match="same steps"):
        nearest_schedule_timesteps(tiny.scheduler, 2, [899, 800])
    with pytest.raises(ValueError, match="Closest names"):
        generated_tokens(tiny, ["a"], ["up_blocks.1.attentions.9.hook_out"], [901], num_inference_steps=10)
    with pytest.raises(ValueError, match="give a list of hook names"):
        generated_tokens(tiny, ["a"], SD14.hooks[1], [901], num_inference_steps=10)


def test_tokens_per_timestep_then_an_sae_each_with_clear_errors(tiny):
    hook = SD14.hooks[1]
    both, grids = generated_tokens(tiny, ["a cat", "a dog", "a car"], [hook, SD14.hooks[3]], [901, 101],
                                   num_inference_steps=10, batch=2)
    acts = {t: both[hook, t] for t in (901, 101)}
    assert grids[hook] == (4, 4) and set(both) == {(h, t) for h in (hook, SD14.hooks[3]) for t in (901, 101)}
    assert acts[901].shape == (3 * 16, 16) and not torch.equal(acts[901], acts[101])
    spec = TokenSAESpec(architecture="batchtopk", d_sae=8, k=2, steps=5, batch=16)
    sae = train_token_sae(acts[101], (SD14.hooks[1], 101), spec)
    codes = token_codes(sae, acts[101])
    assert codes.shape == (48, 8)
    assert explained_variance(sae, acts[101], codes) == pytest.approx(explained_variance(sae, acts[101]), abs=1e-5)
    with pytest.raises(ValueError, match="codes has 47 rows"):
        explained_variance(sae, acts[101], codes[:47])
    with pytest.raises(ValueError, match="d_in=16"):
        token_codes(sae, torch.zeros(4, 8))
    bad = acts[101].clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train_token_sae(bad, (SD14.hooks[1], 101), spec)
    with pytest.raises(ValueError, match="k must"):
        TokenSAESpec(d_sae=4, k=8)
    with pytest.raises(ValueError, match="architecture"):
        TokenSAESpec(architecture="relu")


def test_the_sd14_script_runs_end_to_end_on_the_tiny_twin(tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    summary = main(["--out", str(tmp_path), "--tiny", "--repeat", "2", "--hooks", SD14.hooks[0], SD14.hooks[3],
                    "--num-inference-steps", "10", "--d-sae", "16", "--k", "2", "--sae-steps", "10",
                    "--sae-batch", "64"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    for hook in (SD14.hooks[0], SD14.hooks[3]):
        info = summary["hooks"][hook]
        assert info["timesteps"] == [901, 501, 101] and info["nodes"] >= 0
        stem = hook.replace(".hook_out", "").replace(".", "_")
        assert json.loads((tmp_path / f"{stem}.graph.json").read_text())
    assert summary["hooks"][SD14.hooks[0]]["grid"] == [4, 4]


def test_loading_the_real_model_offline_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="local copy"):
        load_sd14(str(tmp_path / "no-such-model"), device="cpu")
