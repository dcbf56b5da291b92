"""The synthetic-hierarchy benchmark end to end at tiny size: JSON contract and bad options."""

import json

import pytest

from sae_causal_plugin.bench import synthetic_hierarchy

TINY = ["--num-features", "24", "--hidden-dim", "16", "--roots", "3", "--branching", "2",
        "--depth", "2", "--samples", "8192", "--train-seeds", "0", "1"]
KEYS = {"arch", "f1", "mcc", "uniqueness", "explained_variance", "l0", "dead_latents",
        "edge_precision", "edge_recall", "edge_f1", "absorption", "seconds"}


# f1 / mcc of the seeded tiny run (torch 2.13 CPU); a change of the training or the scoring moves them
TINY_FIGURES = {"batchtopk": (0.327, 0.536), "hierarchical_batchtopk": (0.215, 0.519)}


def test_json_last_line_has_one_result_per_architecture(capsys):
    synthetic_hierarchy.main([*TINY, "--eval-samples", "4096", "--graph-samples", "4096",
                              "--archs", "batchtopk", "hierarchical_batchtopk", "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert set(report) == {"config", "results"}
    assert [r["arch"] for r in report["results"]] == ["batchtopk", "hierarchical_batchtopk"]
    for result in report["results"]:
        assert KEYS <= set(result)
        f1, mcc = TINY_FIGURES[result["arch"]]
        assert result["f1"] == pytest.approx(f1, abs=0.01) and result["mcc"] == pytest.approx(mcc, abs=0.01)
        assert result["consistency_mcc"] is not None  # two training seeds
        assert len(result["per_seed"]) == 2


@pytest.mark.parametrize("argv, name", [
    (["--depth", "0"], "--depth"),
    (["--mutually-exclusive", "1.5"], "--mutually-exclusive"),
    (["--k", "-1"], "--k"),
    (["--samples", "0"], "--samples"),
])
def test_bad_options_name_the_option(argv, name):
    with pytest.raises(ValueError, match=name):
        synthetic_hierarchy.main(argv)


def test_synthsaebench_preset_builds_the_published_v2_world():
    from dataclasses import replace

    from sae_causal_plugin.bench.synthetic_hierarchy import PRESETS, BenchConfig, build_synthetic_model

    preset = replace(BenchConfig(), **PRESETS["synthsaebench-16k"])
    assert (preset.num_features, preset.hidden_dim, preset.width, preset.k) == (16384, 768, 16384, 25)
    assert (preset.samples, preset.lr, preset.seed, preset.autocast) == (200_000_000, 3e-4, 42, True)
    small = replace(preset, num_features=96, hidden_dim=48, roots=4, branching=2, depth=2)
    model = build_synthetic_model(small, small.seed)
    cfg = model.cfg
    assert cfg.hierarchy.scale_children_by_parent and cfg.hierarchy.mutually_exclusive_portion == 1.0
    assert (cfg.correlation.rank, cfg.correlation.correlation_scale) == (25, 0.1)
    assert cfg.bias == 0.5 and cfg.orthogonalization.num_steps == 100
    parents = [node for root in model.hierarchy.roots for node in [root, *root.children] if node.children]
    assert parents and all(node.scale_children_by_parent for node in parents)
