"""train -> graph -> steer on the shipped language world, offline, at a tiny budget."""

import json

import pytest
import torch

from sae_causal_plugin.cli.main import main

from tests.helpers import write_yaml


@pytest.fixture(scope="module")
def world_sae(tmp_path_factory):
    root = tmp_path_factory.mktemp("lw")
    config = write_yaml(root / "lw.yaml", {
        "architecture": "hierarchical_batchtopk", "model_name": "language-world",
        "hook_name": "blocks.0.hook_resid_post", "dataset_path": "language-world", "context_size": 32,
        "training_tokens": 49152, "train_batch_size_tokens": 512, "n_batches_in_buffer": 64,
        "prepend_bos": False, "disable_concat_sequences": True, "exclude_special_tokens": [0],
        "n_batches_for_norm_estimate": 2, "verbose": False, "lr": 0.003, "output_path": str(root / "sae"),
        "sae": {"d_sae": 64, "k": 4},
    })
    torch.manual_seed(0)
    assert main(["train", str(config)]) == 0
    return root


def test_graph_names_latents_and_steer_finds_them_by_concept(world_sae, capsys):
    out = world_sae / "graph"
    assert main(["graph", "--sae", str(world_sae / "sae"), "--dataset", "language-world", "--tokens", "12800",
                 "--out", str(out), "--min-support", "5", "--no-progress"]) == 0
    assert "latents by the language world's true concepts" in capsys.readouterr().out
    nodes = json.loads((out / "concept_graph.json").read_text())["nodes"]
    named = [n["attrs"]["concept"] for n in nodes if "concept" in n["attrs"]]
    assert named, "no latent was matched to a true concept"
    assert main(["steer", "--sae", str(world_sae / "sae"), "--graph", str(out / "concept_graph.json"),
                 "--concept", named[0], "--mode", "add", "--value", "8", "--prompt", "the fast",
                 "--max-new-tokens", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("before: <bos> the fast") and lines[2].startswith("after:  <bos> the fast")


def test_prompt_outside_the_vocabulary_is_a_user_error(world_sae, capsys):
    graph = world_sae / "g.json"
    from sae_causal_plugin.graph import ConceptGraph

    g = ConceptGraph()
    g.add_concept(0)
    g.save_json(graph)
    assert main(["steer", "--sae", str(world_sae / "sae"), "--graph", str(graph), "--concept", "0",
                 "--mode", "ablate", "--prompt", "the zebra"]) == 2
    assert "['zebra'] are not in the language world's vocabulary" in capsys.readouterr().err
