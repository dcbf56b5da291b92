"""``torchrun --nproc_per_node=2 -m sae_causal_plugin graph``: two gloo processes, one graph, errors on every rank."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [str(TORCHRUN), f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "sae_causal_plugin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _one_process(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    return subprocess.run([sys.executable, "-m", "sae_causal_plugin", *args], capture_output=True, text=True,
                          timeout=240, env=env)


def _graph_json(out: Path) -> dict:
    data = json.loads((out / "concept_graph.json").read_text())
    return data


def _parent_child_activations(sae_dir: Path, n: int) -> torch.Tensor:
    """Rows ``3 W_dec[parent] + 3 W_dec[child]``: each child latent fires with its group's parent."""
    from safetensors.torch import load_file

    W = load_file(sae_dir / "sae_weights.safetensors")["W_dec"]
    parents = torch.randint(0, 4, (n,))
    children = 4 + 4 * parents + torch.randint(0, 4, (n,))
    return 3 * W[parents] + 3 * W[children] + 0.05 * torch.randn(n, W.shape[1])


@pytest.mark.parametrize("source", ["activations", "dataset"])
def test_two_processes_write_the_one_process_graph(trained_sae, dataset_file, tmp_path, source):
    acts = tmp_path / "acts.pt"
    torch.save(_parent_child_activations(trained_sae, 3001), acts)
    given = ["--activations", str(acts)] if source == "activations" else ["--dataset", str(dataset_file)]
    common = ["graph", "--sae", str(trained_sae), *given, "--min-support", "5", "--no-progress",
              "--no-labels"]
    one = _one_process([*common, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr
    two = _torchrun([*common, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr
    single, sharded = _graph_json(tmp_path / "one"), _graph_json(tmp_path / "two")
    assert len(single["nodes"]) > 0 and (source == "dataset" or len(single["edges"]) > 0)
    assert sharded == single
    for name in ("concept_graph.graphml", "concept_graph.png", "concept_graph.html"):
        assert (tmp_path / "two" / name).is_file()


def test_an_empty_shard_fails_on_every_rank_and_writes_nothing(trained_sae, tmp_path):
    acts = tmp_path / "one_row.pt"
    torch.save(torch.randn(1, 16), acts)
    out = tmp_path / "g"
    run = _torchrun(["graph", "--sae", str(trained_sae), "--activations", str(acts), "--out", str(out),
                     "--no-progress", "--dist-timeout", "60"])
    assert run.returncode != 0
    message = "rank 1 of 2: ValueError: activations: empty activation source (0 rows)"
    assert run.stderr.count(message) == 2, run.stderr  # from each rank, rank 0 included
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
