"""Graph recovery over two gloo processes (spawned here): the one-process graph, and errors on every rank."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

from sae_causal_plugin.distributed import ProcessGroupShards, shard_slice
from sae_causal_plugin.graph import recover_concept_graph
from sae_causal_plugin.graph.shards import head_share


def _sae(d_sae: int = 24) -> TopKTrainingSAE:
    torch.manual_seed(0)
    return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=8, d_sae=d_sae, k=2))


def _rows(sae, n: int) -> torch.Tensor:
    """``3 W_dec[parent] + 3 W_dec[child]``: children fire with their group's parent latent."""
    g = torch.Generator().manual_seed(1)
    parents = torch.randint(0, 4, (n,), generator=g)
    children = 4 + 4 * parents + torch.randint(0, 4, (n,), generator=g)
    return (3 * sae.W_dec[parents] + 3 * sae.W_dec[children]).detach()


def _rank(rank: int, world: int, tmp: str, case: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    try:
        sae = _sae(28 if case == "other_sae" and rank == 1 else 24)
        x = _rows(_sae(), 600)[shard_slice(600, rank, world)]
        if case == "wide" and rank == 1:
            x = torch.randn(x.shape[0], 9)
        graph = recover_concept_graph(sae, x, min_support=5, factorize_rows=int(case.split("=")[1])
                                      if case.startswith("head=") else 65536, shards=ProcessGroupShards())
        result = {"graph": graph.to_dict() if graph is not None else None}
    except Exception as err:  # noqa: BLE001 - the parent process checks the message
        result = {"error": f"{type(err).__name__}: {err}"}
    finally:
        dist.destroy_process_group()
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(result))


def _spawn(tmp_path: Path, case: str) -> list[dict]:
    mp.spawn(_rank, args=(2, str(tmp_path), case), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("head", [100, 450])
def test_two_ranks_give_the_one_process_graph(tmp_path, head):
    """The factorisation's first rows lie in rank 0 only (100) or across both ranks (450)."""
    single = recover_concept_graph(_sae(), _rows(_sae(), 600), min_support=5, factorize_rows=head)
    ranks = _spawn(tmp_path, f"head={head}")
    assert ranks[1] == {"graph": None}
    assert len(single.edges) > 0
    assert ranks[0]["graph"] == single.to_dict()


@pytest.mark.parametrize("case, message", [
    ("wide", "rank 1 of 2: ValueError: activations"),
    ("other_sae", "the ranks disagree on (d_sae, d_in, evidence, fitted code): rank 0: (24, 8"),
])
def test_bad_input_on_one_rank_fails_on_every_rank(tmp_path, case, message):
    for result in _spawn(tmp_path, case):
        assert message in result.get("error", ""), result


def test_head_share_splits_the_first_rows_in_rank_order():
    assert [head_share([300, 300], r, 450) for r in range(2)] == [300, 150]
    assert [head_share([300, 300], r, 100) for r in range(2)] == [100, 0]
    assert [head_share([5, 0, 7], r, 10) for r in range(3)] == [5, 0, 5]


def test_shard_slices_cover_the_rows_once_in_order():
    slices = [shard_slice(10, r, 3) for r in range(3)]
    assert [list(range(10))[s] for s in slices] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
