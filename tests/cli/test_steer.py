"""sae-causal steer: before / after generations; concept ids checked against the graph."""

import pytest

from sae_causal_plugin.cli.main import main
from sae_causal_plugin.graph import ConceptGraph


@pytest.fixture
def graph_file(tmp_path):
    graph = ConceptGraph()
    graph.add_concept(0, label="animal")
    graph.add_concept(1, label="bird")
    graph.add_concept(2, label="robin (#2)", concept="robin")
    graph.add_edge(1, 0)
    graph.add_edge(2, 1)
    path = tmp_path / "concept_graph.json"
    graph.save_json(path)
    return path


def steer(trained_sae, graph_file, *extra):
    return main(["steer", "--sae", str(trained_sae), "--graph", str(graph_file),
                 "--prompt", "5 6 7 8", "--max-new-tokens", "4", *extra])


def test_steer_prints_before_and_after(trained_sae, graph_file, capsys):
    assert steer(trained_sae, graph_file, "--concept", "animal", "--mode", "add", "--value", "40") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("concept 0 (animal): latents [0], add 40 at blocks.0.hook_resid_post")
    before = lines[1].removeprefix("before: ").split()
    after = lines[2].removeprefix("after:  ").split()
    assert before[:4] == after[:4] == ["5", "6", "7", "8"] and len(before) == len(after) == 8
    assert before != after  # a large push along a decoder row changes the greedy continuation


def test_include_descendants_and_ablate_without_value(trained_sae, graph_file, capsys):
    assert steer(trained_sae, graph_file, "--concept", "0", "--mode", "ablate", "--include-descendants") == 0
    assert "latents [0, 1, 2], ablate at" in capsys.readouterr().out


def test_concept_found_by_matched_concept_name(trained_sae, graph_file, capsys):
    assert steer(trained_sae, graph_file, "--concept", "robin", "--mode", "scale", "--value", "2") == 0
    assert capsys.readouterr().out.startswith("concept 2 (robin (#2)): latents [2], scale 2 at")


def test_zero_strength_changes_nothing(trained_sae, graph_file, capsys):
    assert steer(trained_sae, graph_file, "--concept", "1", "--mode", "clamp", "--value", "9",
                 "--strength", "0") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].removeprefix("before: ") == lines[2].removeprefix("after:  ")


@pytest.mark.parametrize("extra, message", [
    (["--concept", "99", "--mode", "add", "--value", "1"], "concept '99' is not in the graph"),
    (["--concept", "anmial", "--mode", "add", "--value", "1"], "closest: animal"),
    (["--concept", "0", "--mode", "clamp"], "--mode clamp needs --value"),
    (["--concept", "0", "--mode", "add", "--value", "1", "--max-new-tokens", "40"], "exceed the context"),
])
def test_bad_input_exits_2(trained_sae, graph_file, capsys, extra, message):
    assert steer(trained_sae, graph_file, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_graph_latent_outside_the_sae(trained_sae, tmp_path, capsys):
    graph = ConceptGraph()
    graph.add_concept(500, label="far")
    graph.save_json(tmp_path / "g.json")
    assert steer(trained_sae, tmp_path / "g.json", "--concept", "500", "--mode", "add", "--value", "1") == 2
    assert "outside the SAE's range" in capsys.readouterr().err


def steer_without_graph(trained_sae, *extra):
    return main(["steer", "--sae", str(trained_sae), "--prompt", "5 6 7 8", "--max-new-tokens", "4", *extra])


def test_a_latent_index_steers_without_a_graph(trained_sae, capsys):
    assert steer_without_graph(trained_sae, "--concept", "0", "--mode", "add", "--value", "40") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "concept 0 (0): latents [0], add 40 at blocks.0.hook_resid_post"
    assert lines[1] != lines[2].replace("after:  ", "before: ")


@pytest.mark.parametrize("extra, message", [
    (["--concept", "animal", "--mode", "ablate"], "without --graph, --concept must be a latent index"),
    (["--concept", "0", "--mode", "ablate", "--include-descendants"], "--include-descendants needs --graph"),
    (["--concept", "99", "--mode", "add"], "latent 99 is outside the SAE's range [0, 32)"),
])
def test_without_a_graph_bad_input_exits_2(trained_sae, capsys, extra, message):
    assert steer_without_graph(trained_sae, *extra) == 2
    assert message in capsys.readouterr().err


def test_missing_value_comes_with_a_hint_from_the_latents_firing(trained_sae, capsys):
    import torch
    from sae_lens import SAE

    from sae_causal_plugin.cli.data import hook_activations
    from sae_causal_plugin.cli.models import load_model

    sae = SAE.load_from_disk(trained_sae)
    handle = load_model(sae.cfg.metadata.model_name)
    with torch.no_grad():
        z = torch.cat([sae.encode(x) for x in hook_activations(handle, "blocks.0.hook_resid_post",
                                                                  handle.encode("5 6 7 8"))])
    latent = int((z > 0).sum(0).argmax())  # the latent that fires most on the prompt
    fired = z[:, latent][z[:, latent] > 0]
    assert steer_without_graph(trained_sae, "--concept", str(latent), "--mode", "add") == 2
    err = capsys.readouterr().err
    assert f"--mode add needs --value; latent {latent} fires at {float(fired.mean()):.3g} on average" in err
    assert f"try add --value {4 * float(fired.mean()):.3g}" in err


def test_unknown_concept_lists_concepts_by_name(trained_sae, graph_file, capsys):
    assert steer(trained_sae, graph_file, "--concept", "fish", "--mode", "ablate") == 2
    assert "its concepts: animal (0), bird (1), robin (#2) (2)" in capsys.readouterr().err
