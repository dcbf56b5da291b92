"""The multilevel benchmark: output contract on a tiny run, and bad arguments."""

import json

import pytest
import torch

from sae_causal_plugin.bench import multilevel

TINY = ["--samples", "8192", "--batch-size", "1024", "--eval-samples", "2000", "--concepts-per-level", "3", "6",
        "--parents", "2"]


def test_tiny_run_prints_one_json_object_last(capsys):
    report = multilevel.main(TINY + ["--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert set(parsed) >= {"config", "results"}
    assert [r["method"] for r in parsed["results"]] == ["ours", "baseline"]
    for r in parsed["results"]:
        assert {"method", "level_mcc", "edge_precision", "edge_recall", "edge_f1", "shd", "seed_jaccard",
                "seconds"} <= set(r)
        # the tiny two-level world is easy: both methods recover its graph exactly (seeded run)
        assert len(r["level_mcc"]) == 2 and min(r["level_mcc"]) > 0.97
        assert r["edge_precision"] == r["edge_recall"] == r["edge_f1"] == 1.0 and r["seed_jaccard"] == 1.0
        # ... so the diagnosis finds nothing wrong on either side
        d = r["diagnosis"]
        assert d["concepts_with_latent"] == [3, 6] and d["merged_latents"] == [0, 0]
        assert d["edges_lost_to_dictionary"] == d["graph_missed"] == d["graph_wrong"] == 0
    assert report["config"]["concepts_per_level"] == [3, 6]


def test_main_leaves_threads_and_rng_as_found(capsys):
    before_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rng = torch.random.get_rng_state().clone()
        multilevel.main(TINY + ["--methods", "ours", "--threads", "1", "--json"])
        assert torch.get_num_threads() == 2  # the run used 1 thread and put the caller's 2 back
        assert torch.equal(torch.random.get_rng_state(), rng)
    finally:
        torch.set_num_threads(before_threads)


def test_summarise_means_and_sds():
    rows = [{"method": "ours", "seed": s, "level_mcc": [1.0, m], "edge_precision": 1.0, "edge_recall": 1.0,
             "edge_f1": f, "shd": 0.0, "seed_jaccard": 1.0, "seconds": 1.0} for s, m, f in [(0, 0.8, 0.5), (1, 1.0, 1.0)]]
    (res,) = multilevel.summarise(rows)
    assert res["level_mcc"] == pytest.approx([1.0, 0.9]) and res["edge_f1"] == pytest.approx(0.75)
    assert res["edge_f1_sd"] == pytest.approx(0.3535, abs=1e-3)


@pytest.mark.parametrize("argv,match", [
    (["--composition", "xor"], "composition 'xor' does not exist"),
    (["--levels", "1"], "at least 2"),
    (["--levels", "3", "--concepts-per-level", "4", "8"], "one count per level"),
    (["--samples", "0"], "--samples must be positive"),
    (["--preset", "hard-merge", "--merged-pairs", "9"], "merged_pairs must be an integer from 0 to 4"),
])
def test_bad_arguments_fail_before_training(argv, match):
    with pytest.raises(ValueError, match=match):
        multilevel.main(argv)


def test_presets_are_three_level_multi_parent_worlds_with_noise_and_leakage():
    from sae_causal_plugin.synthetic import HierarchicalSelectionModel

    for name in sorted(multilevel.PRESETS):
        cfg, _, _, _ = multilevel.parse_args(["--preset", name])
        model = HierarchicalSelectionModel(cfg.world_config(), seed=0)
        assert model.n_levels == 3 and cfg.noise > 0 and cfg.leakage > 0
        assert all(model.multi_parent_share(level) > 0 for level in (1, 2))
    cfg, _, _, _ = multilevel.parse_args(["--preset", "b", "--composition", "and,or", "--noise", "0.3"])
    assert cfg.composition == ["and", "or"] and cfg.noise == 0.3 and cfg.concepts_per_level == [8, 12, 16]


def test_tiny_sweep_prints_a_table_and_writes_the_png(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(multilevel, "NOISE_LEVELS", (0.1,))  # the default world: trained once for
    monkeypatch.setattr(multilevel, "LEAKAGE_LEVELS", (0.1,))  # both axes (and the DAG end of the third)
    png = tmp_path / "sweep.png"
    tiny = ["--samples", "2048", "--batch-size", "512", "--eval-samples", "1000", "--concepts-per-level", "3", "6",
            "--parents", "2"]
    report = multilevel.main(tiny + ["--sweep", "--plot", str(png), "--methods", "ours", "--json"])
    assert png.stat().st_size > 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["config"]["sweep"] is True
    axes = {t["axis"] for t in report["results"]}
    assert axes == {"noise", "leakage", "multi_parent"}
    shares = sorted(t["x"] for t in report["results"] if t["axis"] == "multi_parent")
    assert shares[0] == 0.0 and shares[-1] > 0.0  # from a tree to a DAG at the finest level


def test_hard_presets_are_preset_a_with_high_leakage_or_noise_and_options_still_win():
    a, _, _, _ = multilevel.parse_args(["--preset", "a"])
    leak, _, _, _ = multilevel.parse_args(["--preset", "hard-leak"])
    noisy, _, _, _ = multilevel.parse_args(["--preset", "hard-noise"])
    assert (leak.leakage, leak.noise, noisy.leakage, noisy.noise) == (0.6, a.noise, a.leakage, 1.6)
    assert leak.concepts_per_level == noisy.concepts_per_level == a.concepts_per_level
    assert multilevel.parse_args(["--preset", "hard-leak", "--leakage", "0.3"])[0].leakage == 0.3
    merge, _, _, _ = multilevel.parse_args(["--preset", "hard-merge"])
    assert (merge.merged_pairs, leak.merged_pairs, merge.noise, merge.leakage) == (2, 0, a.noise, a.leakage)
    assert multilevel.parse_args(["--preset", "hard-merge", "--merged-pairs", "1"])[0].merged_pairs == 1
    assert (min(multilevel.LEAKAGE_LEVELS), max(multilevel.LEAKAGE_LEVELS)) == (0.0, 0.8)
    assert (min(multilevel.NOISE_LEVELS), max(multilevel.NOISE_LEVELS)) == (0.0, 3.2)
