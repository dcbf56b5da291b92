"""The bench table: every entry imports from the installed package and answers ``--help``; the
diffusion-overhead and graph-memory benchmarks run at tiny size with known figures and leave the
process's global state as they found it."""

import importlib
import json
import logging
import warnings

import pytest
import torch

from sae_causal_plugin.bench.__main__ import BENCHMARKS, main


def test_every_entry_is_a_package_module():
    assert set(BENCHMARKS) == {"synthetic-hierarchy", "step-time", "multilevel", "diffusion-overhead",
                               "graph-memory", "diffusion-world", "language-world", "cofiring-speed",
                               "part-world"}
    for name, module in BENCHMARKS.items():
        assert module == "sae_causal_plugin.bench." + name.replace("-", "_")
        assert callable(importlib.import_module(module).main)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_entry_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_unknown_name_lists_the_known_ones(capsys):
    assert main(["no-such-bench"]) == 2
    assert "graph-memory" in capsys.readouterr().err


def _global_state():
    return (torch.get_num_threads(), torch.random.get_rng_state().clone(),
            logging.getLogger("sae_lens").level, list(warnings.filters))


def _assert_same_state(before):
    threads, rng, level, filters = _global_state()
    assert threads == before[0]
    assert torch.equal(rng, before[1])
    assert level == before[2]
    assert filters == before[3]


def test_diffusion_overhead_outputs_identical_and_state_restored(capsys):
    from sae_causal_plugin.bench import diffusion_overhead

    before = _global_state()
    result = diffusion_overhead.main(["--repeats", "1", "--threads", "1", "--json"])
    _assert_same_state(before)
    assert result["identical"] is True
    assert set(result["ratio"]) == {"UNet2DConditionModel", "DiTTransformer2DModel"}
    assert set(result["median_ms"]["UNet2DConditionModel"]) == {"raw", "hooked", "nnsight"}
    assert result["threads"] == 1 and result["repeats"] == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_graph_memory_tiny_run_gives_its_known_figures(tmp_path):
    from sae_causal_plugin.bench import graph_memory

    before = _global_state()
    out = tmp_path / "gm.json"
    res = graph_memory.main(["--n", "4000", "--d-sae", "512", "--k", "8", "--d-in", "64",
                             "--batch-size", "1024", "--json", str(out)])
    _assert_same_state(before)
    # seed 0, measured when the benchmark moved into the package (same figures as before the move);
    # the statistics now prune only once the store holds millions of pairs, so this small run keeps
    # every co-firing pair (14849, was 9468 with pruning after every batch) and finds the same graph
    assert {k: res[k] for k in ("cofiring_pairs", "n_nodes", "n_edges", "n_candidate_edges",
                                "n_true_edges", "n_observable_true_edges", "min_support")} == {
        "cofiring_pairs": 14849, "n_nodes": 203, "n_edges": 40, "n_candidate_edges": 65,
        "n_true_edges": 160, "n_observable_true_edges": 96, "min_support": 20}
    assert res["edge_precision"] == pytest.approx(6 / 40)
    assert res["edge_recall_observable"] == pytest.approx(6 / 96)
    assert res["mean_l0"] == pytest.approx(5.11, abs=5e-3)
    assert json.loads(out.read_text())["n_edges"] == 40


def test_poisson_sampler_fires_roots_at_their_probability():
    """Features without a parent fire independently with probability exactly p_i."""
    from sae_causal_plugin.bench.graph_memory import PoissonHierarchySampler, build

    model, _ = build(d_sae=64, d_in=16, k=4, seed=0)
    sampler = PoissonHierarchySampler(model, seed=0)
    n = 40_000
    rows, feats = sampler.sample_fired(n)
    fired = torch.zeros(n, 64, dtype=torch.bool)
    fired[rows, feats] = True
    roots = ~torch.isin(torch.arange(64), sampler.children[sampler.children >= 0])
    p = sampler.p[roots].float()
    rate = fired[:, roots].float().mean(0)
    assert torch.all((rate - p).abs() <= 4 * (p * (1 - p) / n).sqrt() + 1e-3)
    # a child never fires without its parent
    for parent in range(64):
        for child in sampler.children[parent][sampler.children[parent] >= 0].tolist():
            assert not (fired[:, child] & ~fired[:, parent]).any()


def test_diffusion_world_tiny_run_prints_its_json_and_restores_state(capsys):
    from sae_causal_plugin.bench import diffusion_world

    before = _global_state()
    result = diffusion_world.main(["--train-images", "256", "--eval-images", "256", "--sae-steps", "60",
                                   "--sae-batch", "64", "--n-samples", "2", "--num-inference-steps", "4", "--json"])
    _assert_same_state(before)
    assert list(result) == ["edge_f1", "steer_success", "off_target_preserved", "ablation_success", "n_samples",
                            "seconds", "edge_precision", "edge_recall", "recovered_concept_edges", "missing_edges",
                            "wrong_edges", "n_latent_edges", "n_unassigned_edges", "best_f1", "sae", "steering",
                            "targets", "met", "config"]
    assert result["n_samples"] == 11 * 2 and set(result["sae"]) == {"901", "501", "101"}
    assert result["config"]["k"] == pytest.approx(2.125) and result["config"]["pool"] is True
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("edge_f1") and json.loads(lines[-1]) == json.loads(json.dumps(result))


def test_part_world_tiny_run_prints_its_json_and_restores_state(capsys):
    from sae_causal_plugin.bench import part_world

    before = _global_state()
    result = part_world.main(["--train-images", "32", "--eval-images", "32", "--sae-steps", "30", "--probe-steps", "30",
                              "--sae-batch",
                              "256", "--n-samples", "2", "--num-inference-steps", "4", "--min-iou", "0.1", "--json"])
    _assert_same_state(before)
    for key in ("edge_f1", "heatmap_iou", "part_removal_success", "off_target_preserved", "part_addition_success",
                "whole_removal_success", "n_samples", "seconds"):
        assert key in result, key
    assert set(result["sae"]) == {"901", "501", "101"} and 0 <= result["heatmap_iou"] <= 1
    assert 0 <= result["probe_edge_f1"] <= 1 and set(result["probe"]) >= {"edge_f1", "heatmap_iou"}
    assert result["n_samples"] > 0  # some concept got a latent and was steered
    lin = result["concept_linearity"]
    assert set(lin) == {"901", "501", "101"} and all(0 <= v["r2"] <= 1 and v["condition"] >= 1 for v in lin.values())
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("edge_f1") and json.loads(lines[-1]) == json.loads(json.dumps(result))
    assert any(line.startswith("concepts at t=501") for line in lines)


def test_cofiring_speed_tiny_run_prints_the_ratio_and_its_json(capsys):
    from sae_causal_plugin.bench import cofiring_speed

    before = _global_state()
    res = cofiring_speed.main(["--d-sae", "512", "--k", "8", "--d-in", "64", "--batch-size", "256",
                               "--batches", "4", "--repeats", "2", "--json"])
    _assert_same_state(before)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "ratio" in lines[0] and "target <= 3" in lines[0]
    assert json.loads(lines[-1])["ratio"] == pytest.approx(res["ratio"])
    assert res["rows"] == 4 * 256 and res["ratio"] > 0 and res["stored_pairs"] > 0
    assert len(res["floor_seconds"]) == len(res["update_seconds"]) == 2


#: The benches that run on a chosen device; the two toy worlds are built for CPU only.
ON_A_DEVICE = sorted(set(BENCHMARKS) - {"diffusion-world", "language-world", "part-world"})


@pytest.mark.parametrize("name", ON_A_DEVICE)
@pytest.mark.parametrize("device, message", [
    ("gpu", "--device gpu: not a torch device; use cpu, cuda or cuda:N"),
    ("cuda:7", "--device cuda:7: "),
])
def test_every_bench_checks_its_device_before_running(name, device, message, capsys):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--device", device])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_step_time_on_a_named_device_reports_it(capsys):
    rows = importlib.import_module("sae_causal_plugin.bench.step_time").main(
        ["--d-in", "8", "--width", "16", "--k", "2", "--batch", "16", "--steps", "2", "--warmup", "1",
         "--archs", "topk", "--device", "cpu", "--json"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["config"]["device"] == "cpu" and set(last["ratios"]) == {"topk@16"}
    assert rows[0]["ratio"] > 0
