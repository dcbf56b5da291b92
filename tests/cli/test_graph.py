"""sae-causal graph: SAE folder + activation source -> graph files; bad input stopped cleanly."""

import json

import networkx as nx
import pytest
import torch

from sae_causal_plugin.cli.main import main
from sae_causal_plugin.graph import ConceptGraph


def check_graph_files(out):
    graph = ConceptGraph.load_json(out / "concept_graph.json")
    assert json.loads((out / "concept_graph.json").read_text())["format"] == "sae_causal_plugin.ConceptGraph"
    assert set(nx.read_graphml(out / "concept_graph.graphml").nodes) == {str(n) for n in graph.concepts}
    assert (out / "concept_graph.png").read_bytes()[:4] == b"\x89PNG"
    return graph


def test_graph_from_dataset_uses_the_sae_recorded_model_and_hook(trained_sae, dataset_file, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["graph", "--sae", str(trained_sae), "--dataset", str(dataset_file), "--out", str(out),
                 "--min-support", "5", "--no-progress"]) == 0
    graph = check_graph_files(out)
    assert len(graph) > 0 and all(isinstance(n, int) and 0 <= n < 32 for n in graph.concepts)
    assert f"{len(graph)} concepts" in capsys.readouterr().out


def test_graph_from_activation_file(trained_sae, tmp_path):
    torch.manual_seed(0)
    acts = torch.randn(500, 16)
    torch.save(acts, tmp_path / "acts.pt")
    out = tmp_path / "g"
    assert main(["graph", "--sae", str(trained_sae), "--activations", str(tmp_path / "acts.pt"),
                 "--out", str(out), "--min-support", "5", "--no-progress"]) == 0
    check_graph_files(out)


@pytest.mark.parametrize("extra, message", [
    (["--sae", "{tmp}/nowhere", "--dataset", "{data}"], "SAE folder {tmp}/nowhere does not exist"),
    (["--sae", "{tmp}", "--dataset", "{data}"], "is not a SAELens SAE folder"),
    (["--sae", "{sae}", "--dataset", "{data}", "--hook", "blocks.0.mlp.hook_post", "--force-hook"],
     "has d_in=16 but hook 'blocks.0.mlp.hook_post'"),
    (["--sae", "{sae}", "--dataset", "{data}", "--hook", "blocks.0.hook_resid_pre"],
     "--hook 'blocks.0.hook_resid_pre' is not the hook the SAE in {sae} was trained on"),
    (["--sae", "{sae}", "--activations", "{tmp}/wide.pt"], "have width 7 but the SAE has d_in=16"),
    (["--sae", "{sae}", "--dataset", "{tmp}/none.txt"], "dataset file {tmp}/none.txt does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(trained_sae, dataset_file, tmp_path, capsys, extra, message):
    torch.save(torch.randn(10, 7), tmp_path / "wide.pt")
    fill = dict(tmp=tmp_path, data=dataset_file, sae=trained_sae)
    out = tmp_path / "g"
    status = main(["graph", *[a.format(**fill) for a in extra], "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert message.format(**fill) in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_hook_activations_drop_bos_and_excluded_tokens(model_dir):
    from sae_causal_plugin.cli.data import hook_activations
    from sae_causal_plugin.cli.models import load_model

    handle = load_model(str(model_dir))
    handle.bos_id = 1
    tokens = torch.tensor([[1, 5, 6, 7], [1, 7, 7, 8]])
    rows = torch.cat(list(hook_activations(handle, "blocks.0.hook_resid_post", tokens, exclude_tokens=[7])))
    assert rows.shape == (3, 16)  # kept: 5, 6, 8
    _, cache = handle.model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post"])
    expected = cache["blocks.0.hook_resid_post"][torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]]).bool()]
    assert torch.allclose(rows, expected)


def test_progress_bar_over_a_dataset_has_its_total(trained_sae, dataset_file, tmp_path, capsys):
    import re

    assert main(["graph", "--sae", str(trained_sae), "--dataset", str(dataset_file), "--out", str(tmp_path / "g"),
                 "--min-support", "5"]) == 0
    err = capsys.readouterr().err
    done = re.findall(r"co-firing stats: 100%\|[^|]*\| (\d+)/(\d+)", err)
    assert done and done[-1][0] == done[-1][1] and int(done[-1][1]) > 0, err[-500:]
