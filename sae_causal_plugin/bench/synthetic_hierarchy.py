"""Benchmark: SAELens architectures vs hierarchical minimality SAEs on a synthetic hierarchy.

On one SAELens ``SyntheticModel`` with a ground-truth hierarchy, and the same sample budget,
width and L0, it trains SAELens ``batchtopk``, ``matryoshka_batchtopk`` and ``jumprelu`` and our
``hierarchical_batchtopk`` with SAELens's own trainer, then prints SAELens's synthetic metrics
(F1, MCC, uniqueness, explained variance, L0, dead latents), edge precision / recall / F1 and
absorption through :func:`recover_concept_graph` + :func:`evaluate_hierarchy_recovery`, and wall
time. ``--seed`` picks the synthetic world; ``--train-seeds 0 1 2`` trains every architecture
once per seed on that world (initialisation and data stream), reports mean ± sd, and the
consistency of the learned dictionaries: the mean over seed pairs of SAELens's MCC between the
two decoders (1 = the same latents up to permutation).

Run ``python -m sae_causal_plugin.bench synthetic-hierarchy --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run

ARCHITECTURES = ("batchtopk", "matryoshka_batchtopk", "jumprelu", "hierarchical_batchtopk")
OPTIONAL_ARCHITECTURES = ("hierarchical_jumprelu", "hierarchical_topk", "topk")
RESULT_KEYS = ("f1", "mcc", "uniqueness", "explained_variance", "l0", "dead_latents",
               "edge_precision", "edge_recall", "edge_f1", "absorption", "seconds")
#: The same graph figures for the graph read from plain co-firing of the SAE's latents, and
#: the diagnostics that tell the dictionary's failures from the graph step's (both graphs).
GRAPH_KEYS = ("edge_f1_plain", "edge_precision_plain", "matched_precision", "matched_recall",
              "matched_precision_plain", "matched_recall_plain", "absorption_factorised",
              "features_with_latent", "true_edges_matched")
SUMMARY_KEYS = RESULT_KEYS + GRAPH_KEYS


@dataclass
class BenchConfig:
    seed: int = 0
    """seed of the synthetic world"""
    num_features: int = 256
    hidden_dim: int = 128
    roots: int = 16
    branching: int = 3
    depth: int = 2
    mutually_exclusive: float = 0.0
    """share of parents whose children are mutually exclusive"""
    samples: int = 3_000_000
    """training samples per SAE"""
    k: float | None = None
    """L0 of every SAE (default: the true mean L0 of the synthetic model, rounded)"""
    width: int | None = None
    """d_sae (default: num features)"""
    lr: float = 1e-3
    batch_size: int = 1024
    eval_samples: int = 50_000
    graph_samples: int = 100_000
    device: str = device_field()
    """where the world, the SAEs and the statistics live (cpu, cuda or cuda:N)"""
    preset: str | None = None
    """a named world (its values win over the other options)"""
    firing: str = "zipfian"
    max_prob: float = 0.3
    min_prob: float = 0.01
    orthogonalize: bool = False
    published_world: bool = False
    """SAELens's published SynthSAEBench v2 settings for the world: scale_children_by_parent,
    rank-25 feature correlations, magnitudes 5 -> 4 (sd 0.5), bias 0.5, orthogonalised (100 steps)"""
    autocast: bool = False
    """bfloat16 autocast of the SAE and of data generation (SAELens's autocast_sae / autocast_data; for GPUs)"""
    ours_config: dict[str, Any] | None = None
    """JSON of extra hierarchical-config arguments, e.g. '{"compression_margin": 0.4}'"""

    def validate(self) -> None:
        for name in ("num_features", "hidden_dim", "roots", "branching", "samples",
                     "batch_size", "eval_samples", "graph_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.depth < 1:
            raise ValueError(f"--depth must be at least 1, got {self.depth}.")
        if not 0.0 <= self.mutually_exclusive <= 1.0:
            raise ValueError(f"--mutually-exclusive must lie in [0, 1], got {self.mutually_exclusive}.")
        if self.k is not None and self.k <= 0:
            raise ValueError(f"--k must be positive, got {self.k}.")
        if self.width is not None and self.width <= 0:
            raise ValueError(f"--width must be positive, got {self.width}.")


PRESETS: dict[str, dict[str, Any]] = {
    # SAELens's published SynthSAEBench-16k world, v2 (SAELens docs, "SynthSAEBench"; v2 is v1
    # with scale_children_by_parent, as the paper describes): 16,384 features in 768 dimensions,
    # Zipfian firing (exponent 0.5, p_max 0.4, p_min 5e-4), 128 roots with branching 4 and depth
    # 3, all children mutually exclusive, rank-25 correlations, magnitudes 5 -> 4, bias 0.5,
    # seed 42; SAEs of width 16,384 at L0 = 25 on 200M samples, lr 3e-4. For one GPU
    # (--device cuda; bfloat16 autocast as SAELens's runner offers it).
    "synthsaebench-16k": dict(num_features=16384, hidden_dim=768, roots=128, branching=4, depth=3,
                              mutually_exclusive=1.0, firing="zipfian", max_prob=0.4,
                              min_prob=5e-4, published_world=True, seed=42, k=25, width=16384,
                              samples=200_000_000, batch_size=1024, lr=3e-4, autocast=True,
                              eval_samples=500_000, graph_samples=1_000_000),
}


def _shape_presets() -> dict[str, dict[str, Any]]:
    """Worlds the defaults must work on untuned (issue: 2x-6x features per dimension,
    SyntheticSAERunner's lr 3e-4 and 1e-3, depth 2 and 3): 256 features in 128 / 64 / 43
    dimensions; depth 2 as world A (16 roots, branching 3), depth 3 as 8 roots with branching 2
    and half of the parents' children mutually exclusive.  Named ``x{ratio}-depth{d}-lr{lr}``."""
    presets = {}
    for ratio in (2, 4, 6):
        for depth in (2, 3):
            shape = (dict(roots=16, branching=3, mutually_exclusive=0.0) if depth == 2
                     else dict(roots=8, branching=2, mutually_exclusive=0.5))
            for lr in (3e-4, 1e-3):
                presets[f"x{ratio}-depth{depth}-lr{lr:g}"] = dict(
                    num_features=256, hidden_dim=round(256 / ratio), depth=depth, lr=lr, **shape)
    return presets


PRESETS.update(_shape_presets())


def build_synthetic_model(cfg: BenchConfig, seed: int):
    """The SAELens ``SyntheticModel`` with a hierarchy that every architecture is trained on."""
    from sae_lens.synthetic import (
        HierarchyConfig,
        LinearFiringProbabilityConfig,
        SyntheticModel,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )
    from sae_lens.synthetic.synthetic_model import OrthogonalizationConfig

    if cfg.firing == "linear":
        firing = LinearFiringProbabilityConfig(max_prob=cfg.max_prob, min_prob=cfg.min_prob)
    else:
        firing = ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=cfg.max_prob, min_prob=cfg.min_prob)
    hierarchy = dict(total_root_nodes=cfg.roots, branching_factor=cfg.branching, max_depth=cfg.depth,
                     mutually_exclusive_portion=cfg.mutually_exclusive, compensate_probabilities=True)
    world: dict[str, Any] = dict(
        orthogonalization=OrthogonalizationConfig() if cfg.orthogonalize else None, bias=False)
    if cfg.published_world:  # SAELens docs, "SynthSAEBench": the world of the published v2 SAEs
        from sae_lens.synthetic import FoldedNormalMagnitudeConfig, LinearMagnitudeConfig, LowRankCorrelationConfig

        hierarchy.update(mutually_exclusive_min_depth=0, scale_children_by_parent=True)
        world = dict(orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4),
                     correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
                     mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
                     std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5), bias=0.5)
    model_cfg = SyntheticModelConfig(
        num_features=cfg.num_features,
        hidden_dim=cfg.hidden_dim,
        firing_probability=firing,
        hierarchy=HierarchyConfig(**hierarchy),
        seed=seed,
        **world,
    )
    return SyntheticModel(model_cfg, device=cfg.device)


def level_widths(cfg: BenchConfig, width: int) -> list[int]:
    """Cumulative sizes of the true hierarchy's levels (given to Matryoshka as its widths)."""
    widths, level, total = [], cfg.roots, 0
    for _ in range(cfg.depth):
        total += level
        if total >= width:
            break
        widths.append(total)
        level *= cfg.branching
    return widths + [width]


def make_sae(arch: str, cfg: BenchConfig, d_in: int, width: int, k: float):
    """A SAELens training SAE of ``arch`` at the shared width and L0."""
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )

    import sae_causal_plugin as ours
    from sae_causal_plugin import HierarchicalBatchTopKTrainingSAE, HierarchicalBatchTopKTrainingSAEConfig

    common = dict(d_in=d_in, d_sae=width, device=cfg.device)
    if arch == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=k, **common))
    if arch == "matryoshka_batchtopk":
        return MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            k=k, matryoshka_widths=level_widths(cfg, width), **common))
    if arch == "jumprelu":
        # Same L0 as the others: SAELens's quadratic L0 loss around target_l0 = k.
        return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(
            jumprelu_sparsity_loss_mode="quadratic", target_l0=float(k), **common))
    if arch == "hierarchical_batchtopk":
        return HierarchicalBatchTopKTrainingSAE(HierarchicalBatchTopKTrainingSAEConfig(
            k=k, **common, **(cfg.ours_config or {})))
    if arch == "hierarchical_jumprelu":
        return ours.HierarchicalJumpReLUTrainingSAE(ours.HierarchicalJumpReLUTrainingSAEConfig(
            jumprelu_sparsity_loss_mode="quadratic", target_l0=float(k), **common,
            **(cfg.ours_config or {})))
    if arch == "hierarchical_topk":
        return ours.HierarchicalTopKTrainingSAE(ours.HierarchicalTopKTrainingSAEConfig(
            k=int(round(k)), **common, **(cfg.ours_config or {})))
    if arch == "topk":
        from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

        return TopKTrainingSAE(TopKTrainingSAEConfig(k=int(round(k)), **common))
    raise ValueError(f"unknown architecture {arch!r}; choose from "
                     f"{', '.join(ARCHITECTURES + OPTIONAL_ARCHITECTURES)}.")


def run_architecture(arch: str, cfg: BenchConfig, model, seed: int, k: float
                     ) -> tuple[dict[str, Any], torch.Tensor]:
    """Train one architecture with SAELens's trainer and evaluate it."""
    from sae_lens.synthetic import eval_sae_on_synthetic_data
    from sae_lens.synthetic.training import train_toy_sae

    from sae_causal_plugin.graph import diagnose_hierarchy, factorize_decoder, recover_concept_graph

    width = cfg.width or cfg.num_features
    torch.manual_seed(10_000 * cfg.seed + seed)
    sae = make_sae(arch, cfg, cfg.hidden_dim, width, k)
    start = time.perf_counter()
    train_toy_sae(sae, model.feature_dict, model.activation_generator,
                  training_samples=cfg.samples, batch_size=cfg.batch_size, lr=cfg.lr,
                  device=cfg.device, autocast_sae=cfg.autocast, autocast_data=cfg.autocast)
    seconds = time.perf_counter() - start
    sae.eval()
    ev = eval_sae_on_synthetic_data(sae, model.feature_dict, model.activation_generator,
                                    num_samples=cfg.eval_samples, batch_size=cfg.batch_size)
    with torch.no_grad():
        acts = model.sample(cfg.graph_samples)
    code = factorize_decoder(sae, acts)
    graphs = {"factorised": recover_concept_graph(sae, acts, selection_code=code),
              "plain": recover_concept_graph(sae, acts, evidence="cofiring")}
    diagnosis = {}
    for name, graph in graphs.items():  # both graphs scored on the same evaluation samples
        torch.manual_seed(10_000 * cfg.seed + seed + 1)
        diagnosis[name] = diagnose_hierarchy(graph, sae, model, code=code, print_report=False)
    fact, plain = diagnosis["factorised"], diagnosis["plain"]
    row = {
        "arch": arch, "seed": seed,
        "f1": ev.classification.f1_score, "mcc": ev.mcc, "uniqueness": ev.uniqueness,
        "explained_variance": ev.explained_variance, "l0": ev.sae_l0,
        "dead_latents": ev.dead_latents,
        "edge_precision": fact.precision, "edge_recall": fact.recall,
        "edge_f1": fact.f1, "absorption": fact.absorption, "seconds": seconds,
        "edge_f1_plain": plain.f1, "edge_precision_plain": plain.precision,
        "matched_precision": fact.matched_precision, "matched_recall": fact.matched_recall,
        "matched_precision_plain": plain.matched_precision,
        "matched_recall_plain": plain.matched_recall,
        "absorption_factorised": fact.absorption_factorised,
        "features_with_latent": fact.n_features_with_latent / fact.n_features,
        "true_edges_matched": fact.n_true_edges_matched / max(fact.n_true_edges, 1),
        "composition_links": int(code.children.numel()),
        "diagnosis": {name: d.to_dict() for name, d in diagnosis.items()},
    }
    return row, sae.W_dec.detach().clone()


def decoder_consistency(decoders: list[torch.Tensor]) -> float | None:
    """Mean over pairs of seeds of the MCC between their decoders (None for one seed)."""
    from sae_lens.synthetic import mean_correlation_coefficient

    pairs = [(a, b) for i, a in enumerate(decoders) for b in decoders[i + 1:]]
    if not pairs:
        return None
    return statistics.fmean(mean_correlation_coefficient(a, b) for a, b in pairs)


def summarise(rows: list[dict[str, Any]], consistency: dict[str, float | None]) -> list[dict[str, Any]]:
    """One result per architecture: the mean over seeds, with ``<key>_sd`` beside each key."""
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        result: dict[str, Any] = {"arch": arch, "seeds": [r["seed"] for r in mine], "per_seed": mine}
        for key in SUMMARY_KEYS:
            values = [float(r[key]) for r in mine]
            result[key] = statistics.fmean(values)
            result[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        result["consistency_mcc"] = consistency.get(arch)
        out.append(result)
    return out


SHORT = {"explained_variance": "ev", "dead_latents": "dead", "edge_precision": "edge_p",
         "edge_recall": "edge_r", "edge_f1": "edge_f1", "uniqueness": "uniq", "absorption": "absorb",
         "edge_f1_plain": "edge_f1_plain", "edge_precision_plain": "edge_p_plain",
         "matched_precision": "m_prec", "matched_recall": "m_rec",
         "matched_precision_plain": "m_prec_plain", "matched_recall_plain": "m_rec_plain",
         "absorption_factorised": "absorb_fact", "features_with_latent": "feat_w_lat",
         "true_edges_matched": "edges_matched"}


def format_table(results: list[dict[str, Any]], keys: tuple[str, ...] = RESULT_KEYS,
                 consistency: bool = True) -> str:
    """Mean ± sd of ``keys`` per architecture, one row each (and the seed consistency)."""
    header = f"{'arch':23s}" + "".join(f"{SHORT.get(k, k):>14s}" for k in keys)
    lines = [header, "-" * len(header)]
    for r in results:
        cells = []
        for key in keys:
            digits = 0 if key in ("seconds", "dead_latents") else 3
            cells.append(f"{r[key]:.{digits}f}±{r.get(key + '_sd', 0.0):.{digits}f}")
        if consistency:
            value = r.get("consistency_mcc")
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"{r['arch']:23s}" + "".join(f"{c:>14s}" for c in cells))
    if consistency:
        lines[0] += f"{'seed_mcc':>14s}"
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, list[int], list[str], bool]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench synthetic-hierarchy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, BenchConfig)["preset"].choices = sorted(PRESETS)
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                   help="one training run per seed on the same world; mean ± sd and consistency")
    p.add_argument("--archs", nargs="+", default=list(ARCHITECTURES),
                   choices=ARCHITECTURES + OPTIONAL_ARCHITECTURES)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    cfg = config_from_args(p, a, BenchConfig)
    if cfg.preset:
        cfg = replace(cfg, **PRESETS[cfg.preset])
    cfg.validate()
    return cfg, list(a.train_seeds), a.archs, a.json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, seeds, archs, as_json = parse_args(argv)
    with isolated_run():
        model = build_synthetic_model(cfg, cfg.seed)
        k = cfg.k
        if k is None:
            k = float(round(float((model.activation_generator.sample(20_000) > 0).sum(-1).float().mean())))
        rows, decoders = [], {arch: [] for arch in archs}
        for seed in seeds:
            for arch in archs:
                row, decoder = run_architecture(arch, cfg, model, seed, k)
                row["k"] = k
                rows.append(row)
                decoders[arch].append(decoder)
                print(f"seed {seed} {arch:24s} " + " ".join(f"{key}={row[key]:.3f}" for key in SUMMARY_KEYS),
                      flush=True)
    results = summarise(rows, {arch: decoder_consistency(d) for arch, d in decoders.items()})
    print(format_table(results))
    print("\nGraph from the factorised code (edge_*) against plain co-firing (*_plain); "
          "m_* = on edges whose two ends have a latent:")
    print(format_table(results, GRAPH_KEYS, consistency=False))
    report = {"config": {**asdict(cfg), "k": k, "train_seeds": seeds, "archs": archs},
              "results": results}
    if as_json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
