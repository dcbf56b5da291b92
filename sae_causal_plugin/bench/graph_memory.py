"""Peak-memory benchmark of ``recover_concept_graph`` at real SAE scale.

Default workload: a TopK SAE with ``d_sae = 65536`` latents and ``k = 64`` on one million
activations, streamed in batches.  Target (issue): peak resident memory under 4 GiB.

Construction (honest stand-in for a trained SAE on real data):

* a SAELens :class:`~sae_lens.synthetic.SyntheticModel` with ``d_sae`` true features in
  ``d_in`` dimensions (random unit directions, heavy superposition), Zipfian firing
  probabilities (exponent 1, 0.3 .. 3e-5, true L0 ~ 5.2) and a SAELens
  hierarchy forest (``d_sae / 64`` roots, branching 4, depth 2, i.e. a third of the
  features are children / grandchildren that fire only with their parent, with
  ``compensate_probabilities=True``);
* a SAELens ``TopKSAE`` initialised with ``init_sae_to_match_feature_dict`` (plus
  ``b_dec`` = the model's bias), so that latent ``i`` is the true feature ``i``.  The
  true L0 is chosen so that, at ``d_in = 256``, interference (std ~0.16) rarely pushes a
  true feature out of the top 64: TopK keeps ~97 % of true firings, so hierarchical
  co-firing survives.  The other ~59 of the 64 latents per row are interference latents
  (those whose direction happens to align with the active features): many distinct,
  weakly structured co-firing pairs, which is the hard case for memory.  (With a true L0
  of ~44, the interference would out-rank the true features and the code would be mostly
  noise.)

Data are streamed with :class:`PoissonHierarchySampler`, an exact, vectorised
re-implementation of SAELens's ``ActivationGenerator`` + ``hierarchy_modifier`` for this
model (no correlation, no mutual exclusion, no rescaling): by Poisson splitting with
rates ``-log(1 - p_i)`` every feature fires independently with probability exactly
``p_i``, then children of silent parents are switched off level by level.  SAELens's own
sampler gives the same distribution but costs ~1.6 s per 1024 rows at 65536 features on
a 2-core CPU (its hierarchy modifier); ``--sampler saelens`` uses it anyway.

Reported: ``ru_maxrss`` high-water mark before the run (baseline, after building model
and SAE) and after it, their difference, the number of stored co-firing pairs, the
statistics' own bytes, wall time, and the edge precision / recall against the true
hierarchy (latent ``i`` = feature ``i`` by construction).

Usage::

    python -m sae_causal_plugin.bench graph-memory --n 1000000 --d-sae 65536 --k 64 --d-in 256 --json out.json

``ru_maxrss`` is the high-water mark of the whole process: run it in a fresh process, as above.
The torch RNG state, the warning filters and SAELens's logger level are restored when
:func:`main` returns.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sae_lens.synthetic import (
    HierarchyConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
    init_sae_to_match_feature_dict,
)

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run, synchronize
from sae_causal_plugin.graph import recover_concept_graph, true_hierarchy_graph


def rss_high_water_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def build(d_sae: int, d_in: int, k: int, seed: int) -> tuple[SyntheticModel, TopKSAE]:
    """The SAELens synthetic model and a TopK SAE whose latents are its true features."""
    cfg = SyntheticModelConfig(
        num_features=d_sae,
        hidden_dim=d_in,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=1.0, max_prob=0.3, min_prob=3e-5),
        hierarchy=HierarchyConfig(
            total_root_nodes=max(1, d_sae // 64),
            branching_factor=4,
            max_depth=2,
            compensate_probabilities=True,
        ),
        orthogonalization=None,
        bias=1.0,
        seed=seed,
    )
    model = SyntheticModel(cfg)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    init_sae_to_match_feature_dict(sae, model.feature_dict)
    with torch.no_grad():
        sae.b_dec.copy_(model.feature_dict.bias)
        sae.b_enc.zero_()
    return model, sae


class PoissonHierarchySampler:
    """Exact fast sampler of ``model.sample_with_features`` (see module docstring).

    Top-down: features without a parent fire by Poisson splitting (rates
    ``-log(1 - p_i)``, so ``P(fire) = p_i`` exactly, independently); then, level by level,
    each child of a fired parent fires with its own probability.  This is the same
    distribution as SAELens's "sample everything, then switch off children of silent
    parents", without drawing the children that would be switched off.
    """

    def __init__(self, model: SyntheticModel, seed: int = 0) -> None:
        gen = model.activation_generator
        if gen.correlation_matrix is not None or gen.low_rank_correlation is not None:
            raise ValueError("PoissonHierarchySampler does not support correlated features")
        self.d = model.cfg.num_features
        self.p = gen.firing_probabilities.double()
        self.children = self._children_table(model)
        top = torch.ones(self.d, dtype=torch.bool)
        top[self.children[self.children >= 0]] = False
        self.always = top & (self.p >= 1)  # p = 1: fire in every row
        rates = torch.where(top & ~self.always, -torch.log1p(-self.p.clamp(max=1 - 1e-12)), 0.0)
        self.rates = rates
        self.total_rate = float(rates.sum())
        self.mean = gen.mean_firing_magnitudes
        self.std = gen.std_firing_magnitudes
        self.vectors = model.feature_dict.feature_vectors.detach()
        self.bias = model.feature_dict.bias.detach()
        self.g = torch.Generator().manual_seed(seed)

    def _children_table(self, model: SyntheticModel) -> torch.Tensor:
        """``[d, max_children]`` child feature indices (``-1`` padded)."""
        kids: dict[int, list[int]] = {}
        stack = [(r, None) for r in (model.hierarchy.roots if model.hierarchy else [])]
        while stack:
            node, parent = stack.pop()
            if node.mutually_exclusive_children or node.scale_children_by_parent:
                raise ValueError("PoissonHierarchySampler supports plain hierarchies only")
            if node.feature_index is not None:
                if parent is not None:
                    kids.setdefault(parent, []).append(node.feature_index)
                parent = node.feature_index
            stack.extend((c, parent) for c in node.children)
        width = max((len(v) for v in kids.values()), default=0)
        table = torch.full((self.d, max(width, 1)), -1, dtype=torch.int64)
        for parent, ch in kids.items():
            table[parent, : len(ch)] = torch.tensor(ch)
        return table

    def sample_fired(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, features)`` of the firing features of ``n`` samples."""
        n_events = int(torch.poisson(torch.tensor(n * self.total_rate), generator=self.g))
        feats = torch.multinomial(self.rates, n_events, replacement=True, generator=self.g)
        rows = torch.randint(0, n, (n_events,), generator=self.g)
        keys = torch.unique(rows * self.d + feats)  # a feature fires at most once per row
        always = self.always.nonzero().flatten()
        if always.numel():
            grid = torch.arange(n).repeat_interleave(always.numel()) * self.d + always.repeat(n)
            keys = torch.unique(torch.cat([keys, grid]))
        rows, feats = keys // self.d, keys % self.d
        out_r, out_f = [rows], [feats]
        while rows.numel():  # children of the features fired at the previous level
            ch = self.children[feats]
            valid = ch >= 0
            rows = rows[:, None].expand_as(ch)[valid]
            feats = ch[valid]
            fire = torch.rand(feats.numel(), generator=self.g, dtype=torch.float64) < self.p[feats]
            rows, feats = rows[fire], feats[fire]
            out_r.append(rows)
            out_f.append(feats)
        return torch.cat(out_r), torch.cat(out_f)

    def sample(self, n: int) -> torch.Tensor:
        """Hidden activations ``[n, d_in]``."""
        rows, feats = self.sample_fired(n)
        mags = (self.mean[feats] + self.std[feats] * torch.randn(feats.numel(), generator=self.g)).relu()
        hidden = self.bias.expand(n, -1).clone()
        hidden.index_add_(0, rows, self.vectors[feats] * mags[:, None])
        return hidden


def current_rss_bytes() -> int:
    """Current resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def stream(
    model: SyntheticModel, n: int, chunk: int, sampler: str, seed: int, log_every: int = 0
) -> Iterator[torch.Tensor]:
    """``n`` activations in batches of ``chunk`` rows; logs memory every ``log_every`` rows."""
    fast = PoissonHierarchySampler(model, seed=seed) if sampler == "poisson" else None
    if fast is None:
        model.use_sparse_tensors = True
    done, t0, next_log = 0, time.perf_counter(), log_every
    while done < n:
        m = min(chunk, n - done)
        yield fast.sample(m) if fast is not None else model.sample(m)
        done += m
        if log_every and done >= next_log:
            next_log += log_every
            print(
                f"  rows {done:>9,d}  t={time.perf_counter() - t0:7.0f}s  "
                f"rss={current_rss_bytes() / 2**30:.2f} GiB  peak={rss_high_water_bytes() / 2**30:.2f} GiB",
                file=sys.stderr,
                flush=True,
            )


def score_identity(graph, model: SyntheticModel, min_support: int) -> dict[str, float]:
    """Edge precision / recall with latent i = feature i (true by construction)."""
    true_edges = set(true_hierarchy_graph(model).edges)
    rec = set(graph.edges)
    observable = {(c, p) for c, p in true_edges if c in graph and p in graph}
    correct = rec & true_edges
    return {
        "edge_precision": len(correct) / len(rec) if rec else 0.0,
        "edge_recall_observable": len(correct & observable) / len(observable) if observable else 0.0,
        "n_true_edges": len(true_edges),
        "n_observable_true_edges": len(observable),
        "min_support": min_support,
    }


@dataclass
class GraphWorkload:
    """The synthetic world and TopK SAE that the graph-statistics benches feed (shared options)."""

    d_sae: int = field(default=65536, metadata={"positive": True})
    """SAE width (= synthetic features)"""
    k: int = field(default=64, metadata={"positive": True})
    """TopK k of the SAE"""
    d_in: int = field(default=256, metadata={"positive": True})
    """activation width"""
    batch_size: int = field(default=4096, metadata={"positive": True})
    """rows per statistics update"""
    seed: int = 0
    """seed of the synthetic model, the SAE and the draws"""


@dataclass
class GraphMemoryConfig(GraphWorkload):
    """The command line's options (``--json`` aside)."""

    n: int = field(default=1_000_000, metadata={"positive": True})
    """number of activations"""
    chunk: int = field(default=1024, metadata={"positive": True})
    """rows per streamed activation batch"""
    sampler: Literal["poisson", "saelens"] = "poisson"
    """how the hierarchy's firings are drawn"""
    prune: bool = field(default=True, metadata={"help": "exact counts (memory unbounded)"})
    """prune rare co-firing pairs (bounded memory)"""
    min_activation: float = 0.0
    """fire threshold on codes"""
    log_every: int = 0
    """log memory every N rows (stderr)"""
    progress: bool = False
    """show a progress bar"""
    device: str = device_field()
    """where the SAE encodes and the statistics live (cpu, cuda or cuda:N; rows are drawn on CPU)"""


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark; prints every figure and returns them (``--json`` also writes them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_options(ap, GraphMemoryConfig)
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    cfg = config_from_args(ap, args, GraphMemoryConfig)
    with warnings.catch_warnings(), isolated_run():
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        return _run(cfg, args.json)


def _run(cfg: GraphMemoryConfig, json_path: str | None) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    model, sae = build(cfg.d_sae, cfg.d_in, cfg.k, cfg.seed)
    sae.to(cfg.device)
    baseline = rss_high_water_bytes()
    t0 = time.perf_counter()
    graph, stats = recover_concept_graph(
        sae,
        stream(model, cfg.n, cfg.chunk, cfg.sampler, cfg.seed, cfg.log_every),
        batch_size=cfg.batch_size,
        prune=cfg.prune,
        min_activation=cfg.min_activation,
        show_progress=cfg.progress,
        return_stats=True,
    )
    synchronize(sae.W_dec.device)
    wall = time.perf_counter() - t0
    peak = rss_high_water_bytes()
    gib = 2**30
    res: dict[str, float] = {
        "n": cfg.n,
        "d_sae": cfg.d_sae,
        "k": cfg.k,
        "d_in": cfg.d_in,
        "batch_size": cfg.batch_size,
        "sampler": cfg.sampler,
        "prune_eps": stats.prune_eps,
        "min_activation": cfg.min_activation,
        "peak_rss_gib": peak / gib,
        "baseline_rss_gib": baseline / gib,
        "peak_minus_baseline_gib": (peak - baseline) / gib,
        "cofiring_pairs": stats.n_pairs,
        "stats_bytes_gib": stats.memory_bytes() / gib,
        "mean_l0": float(stats.firing_counts.sum()) / max(stats.n_samples, 1),
        "wall_s": wall,
        "rows_per_s": cfg.n / wall,
        "n_nodes": len(graph),
        "n_edges": len(graph.edges),
        "n_candidate_edges": graph.meta["n_candidate_edges"],
        "under_4gib": peak < 4 * gib,
        "device": cfg.device,
    }
    if sae.W_dec.is_cuda:
        res["peak_cuda_gib"] = torch.cuda.max_memory_allocated(sae.W_dec.device) / gib
    res.update(score_identity(graph, model, graph.meta["min_support"]))
    for key, val in res.items():
        print(f"{key:>26}: {val:.4g}" if isinstance(val, float) else f"{key:>26}: {val}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
