"""Throughput of :meth:`CoFiringStats.update` against its floor, one sort of each batch's pair keys.

The batches are the ``graph-memory`` benchmark's: a TopK SAE (``d_sae`` latents, ``k`` per row) whose
latents are the true features of a SAELens synthetic model with a hierarchy, fed with its
activations. The SAE's top-k indices of ``--batches`` batches of ``--batch-size`` rows are computed
once; then, ``--repeats`` times and interleaved, the same batches go through

* the floor: each batch's pair keys ``i * d_sae + j`` (``i < j``, from the row-sorted indices) are
  built and counted with one ``torch.unique(sorted=True, return_counts=True)``;
* a fresh :class:`CoFiringStats` with pruning as ``recover_concept_graph`` builds it
  (``min_conditional`` 0.5), queried at the end (so its buffer is folded in).

Printed: rows/s of both (median over repeats), their ratio (target <= 3) and the stored pairs.
``--json``: the last line is one JSON object.

    python -m sae_causal_plugin.bench cofiring-speed --d-sae 65536 --k 64 --batches 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run, synchronize
from sae_causal_plugin.bench.graph_memory import GraphWorkload, PoissonHierarchySampler, build
from sae_causal_plugin.graph.cofiring import CoFiringStats, iter_batch_pair_keys


@dataclass
class CoFiringSpeedConfig(GraphWorkload):
    """The command line's options (``--json`` aside): the graph-memory workload, fed in batches."""

    batches: int = field(default=40, metadata={"positive": True})
    """batches fed per repeat"""
    repeats: int = field(default=3, metadata={"positive": True})
    """timed repeats of each contender, interleaved"""
    min_conditional: float = 0.5
    """the statistics' pruning threshold, as recover_concept_graph's default"""
    device: str = device_field()
    """where the indices and the statistics live (cpu, cuda or cuda:N)"""


def topk_batches(cfg: CoFiringSpeedConfig) -> list[torch.Tensor]:
    """``[batch_size, k]`` top-k latent indices of the SAE on fresh synthetic activations."""
    model, sae = build(cfg.d_sae, cfg.d_in, cfg.k, cfg.seed)
    sampler = PoissonHierarchySampler(model, seed=cfg.seed)
    out = []
    with torch.no_grad():
        for _ in range(cfg.batches):
            z = sae.encode(sampler.sample(cfg.batch_size))
            values, idx = z.topk(cfg.k, dim=1)
            out.append(torch.where(values > 0, idx, -1).to(cfg.device))
    return out


def floor_pass(batches: list[torch.Tensor], d_sae: int) -> None:
    """One ``torch.unique`` of each batch's pair keys (built as the statistics build them)."""
    for idx in batches:
        rows, _ = idx.sort(dim=1)
        torch.unique(torch.cat(list(iter_batch_pair_keys(rows, d_sae, rows.shape[0] * rows.shape[1] ** 2))),
                     sorted=True, return_counts=True)


def stats_pass(batches: list[torch.Tensor], cfg: CoFiringSpeedConfig) -> CoFiringStats:
    stats = CoFiringStats(cfg.d_sae, min_conditional=cfg.min_conditional, device=cfg.device)
    for idx in batches:
        stats.update(idx)
    stats.n_pairs  # noqa: B018  (folds the buffer in: part of the work)
    return stats


def _timed(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_options(ap, CoFiringSpeedConfig)
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args(argv)
    cfg = config_from_args(ap, args, CoFiringSpeedConfig)
    with isolated_run():
        torch.manual_seed(cfg.seed)
        batches = topk_batches(cfg)
        rows = cfg.batches * cfg.batch_size
        floor_s, stats_s, pairs = [], [], 0
        for _ in range(cfg.repeats):
            floor_s.append(_timed(lambda: floor_pass(batches, cfg.d_sae), cfg.device))
            box: list[CoFiringStats] = []
            stats_s.append(_timed(lambda: box.append(stats_pass(batches, cfg)), cfg.device))
            pairs = box[0].n_pairs
    floor, update = statistics.median(floor_s), statistics.median(stats_s)
    res = {"config": asdict(cfg), "rows": rows, "floor_rows_per_s": rows / floor,
           "update_rows_per_s": rows / update, "ratio": update / floor, "stored_pairs": pairs,
           "floor_seconds": floor_s, "update_seconds": stats_s}
    print(f"{rows:,d} rows, d_sae {cfg.d_sae}, k {cfg.k}, {cfg.device}: floor (one unique of the pair keys) "
          f"{res['floor_rows_per_s']:,.0f} rows/s, CoFiringStats.update {res['update_rows_per_s']:,.0f} rows/s, "
          f"ratio {res['ratio']:.2f} (target <= 3); {pairs:,d} pairs stored")
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
