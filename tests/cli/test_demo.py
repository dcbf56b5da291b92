"""sae-causal demo: world run -> report folder; a world without a demo exits with a clear message."""

import json

import pytest

from sae_causal_plugin.cli import demo
from sae_causal_plugin.cli.main import main
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.report import REPORT_FILES
from sae_causal_plugin.worlds.run import SteeringExample, WorldRun


def fake_language_world(seed, *, out_dir, progress=True):
    true = ConceptGraph()
    true.add_edge("bird", "animal")
    true.add_edge("robin", "bird")
    learned = ConceptGraph()
    learned.add_concept(0, label="animal (#0)", concept="animal")
    learned.add_concept(1, label="bird")
    learned.add_edge(1, 0, p_parent_given_child=0.97)
    metrics = {"edge_f1": 0.8, "steer_mass_ratio": 7.0, "ppl_increase": 0.03,
               "ablation_mass_fraction": 0.05, "seed": seed, "hook_name": "blocks.0.hook_resid_post",
               "empty_sweep": [], "steer_hint": {"concept": "animal", "prompt": "the tasty", "value": 24.5,
                                                 "visible": True}}
    return WorldRun("language", learned, true, metrics,
                    [SteeringExample("toward animal", "the fast taxi", "the fast robin")],
                    sae_dirs={"blocks.0.hook_resid_post": out_dir / "saes" / "layer",
                              "layers": out_dir / "saes" / "levels"})


def test_demo_writes_the_report_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "world_runner", lambda world: fake_language_world)
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--seed", "3", "--no-progress"]) == 0
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["seconds"] >= 0  # the CLI times the run when the world does not
    assert "empty_sweep" not in (out / "index.html").read_text()
    printed = capsys.readouterr().out
    assert str((out / "index.html").resolve()) in printed
    assert "edge_f1" in printed and "not reached" in printed  # 0.8 < 0.85, said honestly
    assert f"sae-causal steer --sae {out / 'saes' / 'layer'} --graph {out / 'concept_graph.json'} " \
           "--concept animal --mode add --value 24.5 --prompt 'the tasty'" in printed


def test_world_without_a_demo_exits_nonzero_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.WORLD_RUNS, "diffusion", ("sae_causal_plugin.worlds", "no_such_run"))
    assert main(["demo", "--world", "diffusion", "--out", str(tmp_path / "r")]) == 2
    assert "the diffusion world demo is not available yet" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_world_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--world", "vision"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_run_removes_what_it_wrote(tmp_path, monkeypatch, capsys, existed):
    """The world wrote an SAE folder and an image, then failed: both are removed, older files kept."""
    def failing_world(seed, *, out_dir, progress=True):
        (out_dir / "saes" / "layer").mkdir(parents=True)
        (out_dir / "saes" / "layer" / "cfg.json").write_text("{}")
        (out_dir / "steering_grids").mkdir()
        (out_dir / "steering_grids" / "a.png").write_bytes(b"png")
        raise RuntimeError("the world broke")

    monkeypatch.setattr(demo, "world_runner", lambda world: failing_world)
    out = tmp_path / "report"
    if existed:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--no-progress"]) == 1
    assert "the world broke" in capsys.readouterr().err
    if existed:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()
