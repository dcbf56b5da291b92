"""The synthetic benchmark's graph figures: factorised and plain graphs, diagnostics, presets."""

import json

import pytest

from sae_causal_plugin.bench import synthetic_hierarchy as bench

TINY = ["--num-features", "24", "--hidden-dim", "16", "--roots", "3", "--branching", "2",
        "--depth", "2", "--samples", "8192", "--train-seeds", "0"]


def test_every_architecture_carries_plain_and_factorised_diagnostics(capsys, monkeypatch):
    monkeypatch.setattr(bench.BenchConfig, "eval_samples", 4096)
    monkeypatch.setattr(bench.BenchConfig, "graph_samples", 4096)
    bench.main([*TINY, "--archs", "batchtopk", "hierarchical_batchtopk", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert any("edge_f1_plain" in line for line in out[:-1])  # the second table is printed
    for result in report["results"]:
        assert set(bench.GRAPH_KEYS) <= set(result)
        (row,) = result["per_seed"]
        diagnosis = row["diagnosis"]
        assert set(diagnosis) == {"factorised", "plain"}
        # the row's figures are the diagnosis' own, for the graph each names
        assert row["edge_f1"] == diagnosis["factorised"]["f1"]
        assert row["edge_f1_plain"] == diagnosis["plain"]["f1"]
        assert row["matched_precision_plain"] == diagnosis["plain"]["matched_precision"]
        # absorption is a property of the SAE and the code, not of the graph read from them
        assert diagnosis["plain"]["absorption"] == diagnosis["factorised"]["absorption"]
        assert row["absorption_factorised"] == diagnosis["plain"]["absorption_factorised"]
        # 3 roots x (2 + 4) descendants: 18 true edges, whatever the SAE
        assert diagnosis["plain"]["n_true_edges"] == 18
        assert sum(diagnosis["plain"]["wrong_edges"].values()) == (
            diagnosis["plain"]["n_recovered_edges"] - diagnosis["plain"]["n_correct_edges"])


@pytest.mark.parametrize("name", [n for n in bench.PRESETS if n.startswith("x")])
def test_shape_presets_have_the_ratio_and_depth_they_name(name):
    cfg, *_ = bench.parse_args(["--preset", name])
    ratio, depth, lr = name.split("-")
    assert round(cfg.num_features / cfg.hidden_dim) == int(ratio[1:])
    assert cfg.depth == int(depth.removeprefix("depth"))
    assert cfg.lr == float(lr.removeprefix("lr"))
    hierarchy = cfg.roots * sum(cfg.branching ** level for level in range(cfg.depth + 1))
    assert hierarchy <= cfg.num_features  # the whole tree fits in the world


def test_the_shape_grid_is_complete():
    names = {n for n in bench.PRESETS if n.startswith("x")}
    assert names == {f"x{r}-depth{d}-lr{lr}" for r in (2, 4, 6) for d in (2, 3)
                     for lr in ("0.0003", "0.001")}
