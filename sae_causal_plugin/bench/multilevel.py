"""Benchmark: jointly trained multi-level SAEs vs independent SAEs, on a known selection DAG.

One :class:`~sae_causal_plugin.synthetic.HierarchicalSelectionModel` per seed; on the same paired
data and the same budget (samples, width = true concept count, BatchTopK L0 = true mean L0 per
level, learning rate, data-based initialisation, dead-latent resampling, annealed TopK budget)
and the same graph recovery (:func:`recover_layered_graph` with its documented defaults, on the
co-activations of the evaluation samples):

* ``ours``: SAEs trained jointly with the cross-level terms (:class:`CrossLevelConfig`: learned
  selection map with fit, hinge and L1, and read-outs of the other levels' codes);
* ``baseline``: independent SAEs (the same loop, cross-level terms off).

The learned selection maps are *not* used as a candidate filter in the graph recovery: they are
noisy-OR fits, which give each component of an AND concept a small weight, so filtering on them
drops AND edges; with one recovery for both methods the comparison isolates the training terms.

Reported per method: per-level MCC (SAELens ``mean_correlation_coefficient``), edge precision /
recall / F1 and structural Hamming distance against the true graph (latents renamed to the
concepts they match), the diagnosis that keeps the two causes apart (``layered_diagnosis``:
concepts with a latent, merged latents and true edges lost, for the dictionary; missed and
wrong edges between matched latents, for the graph step), edge Jaccard between two training seeds, and seconds (one training run
plus its graph recovery). ``--seeds 0 1 2`` adds mean and sd. ``--sweep`` varies the noise and
the share of multi-parent concepts, prints a table and writes a PNG.

Worlds (``--preset``, :data:`PRESETS`): three levels, multi-parent DAGs (any two concepts of a
level share at most one component), observation noise 0.1 and leakage 0.1 between adjacent
levels, ``d_l = 2 n_l``. ``a`` (default): ``[8, 16, 24]``, OR of three components; ``b``:
``[8, 12, 16]``, AND of two at the middle level, OR of two on top; ``c``: ``[6, 12, 20]``,
thresholded weighted sums of three. ``hard-leak`` / ``hard-noise`` / ``hard-merge``: ``a`` with
leakage 0.6 / noise 1.6 / two pairs of coarsest concepts made to co-occur (``merged_pairs``). Training: 1M samples per SAE in batches of 512, the TopK
budget annealed from twice the final k over the first half (both methods). One seed trains four
multi-level runs (two methods x two training seeds).

Run ``python -m sae_causal_plugin.bench multilevel --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run

METHODS = ("ours", "baseline")
SCALAR_KEYS = ("edge_precision", "edge_recall", "edge_f1", "shd", "seed_jaccard", "seconds")
SECOND_SEED_OFFSET = 10_000


def default_sizes(levels: int) -> list[int]:
    """Default concepts per level: ``8, 16, 24, ...`` (coarsest first)."""
    return [8 * (level + 1) for level in range(levels)]


#: Named worlds: all three levels, multi-parent DAGs (``max_overlap=1``), noise and leakage on.
#: ``a`` (the default): OR of three components at both coarse levels, rare finest concepts.
#: ``b``: AND of two components at the middle level, OR on top, frequent finest concepts.
#: ``c``: thresholded weighted sums (about two of three components) at both coarse levels.
#: ``hard-leak`` / ``hard-noise``: ``a`` with leakage 0.6 / noise 1.6, where independent SAEs break.
#: ``hard-merge``: ``a`` with two pairs of coarsest concepts that almost always co-occur, parts differing.
PRESETS: dict[str, dict[str, Any]] = {
    "a": dict(concepts_per_level=[8, 16, 24], parents=3, composition="or", max_prob=0.08, min_prob=0.02,
              noise=0.1, leakage=0.1),
    "b": dict(concepts_per_level=[8, 12, 16], parents=2, composition=["or", "and"], max_prob=0.5, min_prob=0.2,
              noise=0.1, leakage=0.1),
    "c": dict(concepts_per_level=[6, 12, 20], parents=3, composition="threshold", max_prob=0.4, min_prob=0.2,
              noise=0.1, leakage=0.1),
}
# Preset ``a`` where independent SAEs lose the graph (the measured sweep): leakage 0.6, noise 1.6.
PRESETS["hard-leak"] = {**PRESETS["a"], "leakage": 0.6}
PRESETS["hard-noise"] = {**PRESETS["a"], "noise": 1.6}
# Preset ``a`` where two pairs of coarsest concepts almost always co-occur (their parts differ).
PRESETS["hard-merge"] = {**PRESETS["a"], "merged_pairs": 2}


@dataclass
class BenchConfig:
    """One benchmark world and training budget (defaults: preset ``a``)."""

    seed: int = 0
    """one seed (default 0)"""
    preset: str = "a"
    """named world; the world options below override its values"""
    levels: int = 3
    """number of levels (>= 2; default: the preset's, 3)"""
    concepts_per_level: list[int] = field(default_factory=lambda: default_sizes(3))
    """concepts per level, coarsest first (default: the preset's, or 8, 16, 24, ... for --levels)"""
    parents: int = 3
    """finer concepts composing each coarse concept (default: the preset's)"""
    max_overlap: int | None = 1
    """most components two concepts of one level share (-1: no limit)"""
    composition: str | list[str] = "or"
    """or, and or threshold; or a comma list, one per coarse level (coarsest first; default: the preset's)"""
    noise: float = 0.1
    """observation noise norm"""
    leakage: float = 0.1
    """leakage between adjacent levels"""
    merged_pairs: int = 0
    """pairs of coarsest concepts made to co-occur (HierarchicalSelectionConfig.merged_pairs)"""
    merge_rate: float = 0.95
    """how often the absent concept of a pair is switched on"""
    hidden_mult: float = 2.0
    """d_l = hidden_mult * n_l"""
    max_prob: float = 0.08
    """firing probability of the commonest finest concept (default: the preset's)"""
    min_prob: float = 0.02
    """firing probability of the rarest finest concept (default: the preset's)"""
    samples: int = 1_000_000
    """training samples per SAE"""
    batch_size: int = 512
    lr: float = 1e-2
    eval_samples: int = 50_000
    init_samples: int = 20_000
    """samples for the SAEs' data-based initialisation"""
    k_start_mult: float = 2.0
    """TopK budget at the start, times the final k, annealed (both methods; 1 = off)"""
    explain_levels: str = "all"
    """which levels the cross-level term explains from (CrossLevelConfig.explain_levels)"""
    device: str = device_field()
    """where the world draws samples and the SAEs train (cpu, cuda or cuda:N; draws differ by device)"""

    def validate(self) -> None:
        if self.levels < 2:
            raise ValueError(f"--levels must be at least 2, got {self.levels}.")
        if len(self.concepts_per_level) != self.levels:
            raise ValueError(
                f"--concepts-per-level lists {len(self.concepts_per_level)} counts but --levels is {self.levels}; "
                "give one count per level, coarsest first."
            )
        for name in ("samples", "batch_size", "eval_samples", "init_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.hidden_mult <= 0:
            raise ValueError(f"--hidden-mult must be positive, got {self.hidden_mult}.")
        from sae_causal_plugin.multilevel import CrossLevelConfig

        try:
            CrossLevelConfig(k_start_mult=self.k_start_mult, explain_levels=self.explain_levels).validate()
        except ValueError as err:
            raise ValueError(f"--{str(err).replace('_', '-')}") from None

    def world_config(self):
        from sae_causal_plugin.synthetic import HierarchicalSelectionConfig

        return HierarchicalSelectionConfig(
            concepts_per_level=list(self.concepts_per_level), parents=self.parents, max_overlap=self.max_overlap,
            composition=self.composition,
            hidden_dims=[max(1, round(self.hidden_mult * n)) for n in self.concepts_per_level],
            noise=self.noise, leakage=self.leakage, max_prob=self.max_prob, min_prob=self.min_prob,
            merged_pairs=self.merged_pairs, merge_rate=self.merge_rate)


def train_method(method: str, model, cfg: BenchConfig, train_seed: int, l0: list[float], eval_acts):
    """Train one method's per-level SAEs and recover its graph; returns (saes, graph, seconds)."""
    from sae_lens import BatchTopKTrainingSAEConfig

    from sae_causal_plugin.multilevel import CrossLevelConfig, make_level_saes, recover_layered_graph, train_level_saes

    shared = CrossLevelConfig(k_start_mult=cfg.k_start_mult, explain_levels=cfg.explain_levels)
    cross = shared if method == "ours" else shared.independent()
    torch.manual_seed(train_seed)
    level_cfgs = [BatchTopKTrainingSAEConfig(d_in=d, d_sae=n, k=max(k, 0.05), device=cfg.device)
                  for d, n, k in zip(model.cfg.dims(), model.cfg.concepts_per_level, l0)]
    saes = make_level_saes(level_cfgs, cross)
    start = time.perf_counter()
    train_level_saes(saes, model.batches(cfg.batch_size, seed=train_seed * 7919 + 1), total_samples=cfg.samples,
                     batch_size=cfg.batch_size, lr=cfg.lr, seed=train_seed, progress=False, device=cfg.device,
                     init_rows=model.sample(cfg.init_samples, seed=train_seed * 7919 + 2).activations)
    for sae in saes:
        sae.eval()
    graph = recover_layered_graph(saes, eval_acts)
    return saes, graph, time.perf_counter() - start


def run_seed(cfg: BenchConfig, seed: int, methods: tuple[str, ...], jaccard: bool = True) -> list[dict[str, Any]]:
    """Every method on the world of ``seed``: scores of training seed ``seed`` (+ a second one)."""
    from sae_causal_plugin.multilevel import edge_jaccard, edge_scores, layered_diagnosis, level_mcc, match_latents
    from sae_causal_plugin.synthetic import HierarchicalSelectionModel

    model = HierarchicalSelectionModel(cfg.world_config(), seed=seed, device=cfg.device)
    evaluation = model.sample(cfg.eval_samples, seed=seed * 7919 + 3)
    l0 = [float(c.float().sum(-1).mean()) for c in evaluation.concepts]
    truth = model.true_graph()
    rows = []
    for method in methods:
        saes, graph, seconds = train_method(method, model, cfg, seed, l0, evaluation.activations)
        decoders = [sae.W_dec.detach() for sae in saes]
        matchings = [match_latents(w, fv) for w, fv in zip(decoders, model.feature_vectors)]
        row = {"method": method, "seed": seed,
               "level_mcc": [level_mcc(w, fv) for w, fv in zip(decoders, model.feature_vectors)],
               **{k: v for k, v in edge_scores(graph, truth, matchings).items()}, "seconds": seconds,
               "seed_jaccard": None,
               "diagnosis": layered_diagnosis(graph, truth, matchings, decoders, model.feature_vectors),
               "multi_parent_share": [model.multi_parent_share(level) for level in range(1, model.n_levels)]}
        if jaccard:
            saes_b, graph_b, _ = train_method(method, model, cfg, seed + SECOND_SEED_OFFSET, l0, evaluation.activations)
            row["seed_jaccard"] = edge_jaccard(graph, graph_b, decoders, [s.W_dec.detach() for s in saes_b])
        rows.append(row)
        print(f"seed {seed} {method:9s} mcc={[round(m, 3) for m in row['level_mcc']]} "
              + " ".join(f"{k}={row[k]:.3f}" for k in SCALAR_KEYS if row[k] is not None), flush=True)
        d = row["diagnosis"]
        print(f"  dictionary: concepts with a latent {d['concepts_with_latent']} of {d['concepts']}, merged latents "
              f"{d['merged_latents']}, true edges lost {d['edges_lost_to_dictionary']}; graph step: missed "
              f"{d['graph_missed']}, wrong {d['graph_wrong']}", flush=True)
    return rows


#: diagnosis entries averaged over seeds (layered_diagnosis: the dictionary's and the graph step's errors)
DIAGNOSIS_KEYS = ("concepts_with_latent", "merged_latents", "edges_lost_to_dictionary", "recovered_unmatched",
                  "graph_missed", "graph_wrong")


def _mean_of(values: list[Any]) -> Any:
    """Mean of numbers, or element-wise mean of equal-length lists."""
    if isinstance(values[0], list):
        return [statistics.fmean(v) for v in zip(*values)]
    return statistics.fmean(values)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per method: means over seeds, ``<key>_sd`` beside each."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        result: dict[str, Any] = {"method": method, "seeds": [r["seed"] for r in mine]}
        per_level = list(zip(*[r["level_mcc"] for r in mine]))
        result["level_mcc"] = [_mean_sd(list(v))[0] for v in per_level]
        result["level_mcc_sd"] = [_mean_sd(list(v))[1] for v in per_level]
        for key in SCALAR_KEYS:
            values = [float(r[key]) for r in mine if r[key] is not None]
            result[key], result[f"{key}_sd"] = _mean_sd(values) if values else (None, None)
        if all("diagnosis" in r for r in mine):
            result["diagnosis"] = {key: _mean_of([r["diagnosis"][key] for r in mine]) for key in DIAGNOSIS_KEYS}
        out.append(result)
    return out


def format_table(results: list[dict[str, Any]]) -> str:
    def cell(v: Any, sd: Any) -> str:
        return "-" if v is None else f"{v:.3f} ± {sd:.3f}"

    header = f"{'method':10s}{'level_mcc':>28s}" + "".join(f"{k:>18s}" for k in SCALAR_KEYS)
    lines = [header, "-" * len(header)]
    for r in results:
        mcc = " ".join(f"{m:.3f}" for m in r["level_mcc"])
        lines.append(f"{r['method']:10s}{mcc:>28s}" + "".join(f"{cell(r[k], r[f'{k}_sd']):>18s}" for k in SCALAR_KEYS))
    return "\n".join(lines)


NOISE_LEVELS = (0.0, 0.4, 0.8, 1.6, 3.2)
LEAKAGE_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8)


def sweep(cfg: BenchConfig, seeds: list[int], methods: tuple[str, ...], out_png: str) -> list[dict[str, Any]]:
    """Edge F1 against noise (:data:`NOISE_LEVELS`), against leakage (:data:`LEAKAGE_LEVELS` and
    the default), and against the share of multi-parent concepts:
    the finest level's size runs from ``n_{L-1} * parents`` (each finest concept composes one
    coarser concept, share 0 there) down to half of that (share 1), the other levels as in ``cfg``;
    the x value is the mean share over levels ``1..L``."""
    points: list[tuple[str, float, BenchConfig]] = []
    for noise in NOISE_LEVELS:
        points.append(("noise", noise, replace(cfg, noise=noise)))
    for leakage in LEAKAGE_LEVELS:
        points.append(("leakage", leakage, replace(cfg, leakage=leakage)))
    slots = cfg.concepts_per_level[-2] * cfg.parents
    for n_fine in sorted({slots, round(slots * 2 / 3), round(slots / 2)}, reverse=True):
        points.append(("multi_parent", -1.0, replace(cfg, concepts_per_level=[*cfg.concepts_per_level[:-1], n_fine])))
    table = []
    done: dict[str, list[dict[str, Any]]] = {}  # a world on several axes is trained once
    for axis, value, point_cfg in points:
        key = repr(point_cfg)
        if key not in done:
            done[key] = [r for seed in seeds for r in run_seed(point_cfg, seed, methods, jaccard=False)]
        rows = done[key]
        for res in summarise(rows):
            x = value if axis != "multi_parent" else statistics.fmean(statistics.fmean(r["multi_parent_share"]) for r in rows)
            table.append({"axis": axis, "x": x, "method": res["method"], "edge_f1": res["edge_f1"],
                          "edge_f1_sd": res["edge_f1_sd"], "level_mcc": res["level_mcc"],
                          "concepts_per_level": point_cfg.concepts_per_level})
    print(f"{'axis':14s}{'x':>8s}{'method':>10s}{'edge_f1':>18s}{'level_mcc':>24s}")
    for t in table:
        print(f"{t['axis']:14s}{t['x']:>8.2f}{t['method']:>10s}{t['edge_f1']:>11.3f} ± {t['edge_f1_sd']:.3f}"
              f"{' '.join(f'{m:.3f}' for m in t['level_mcc']):>24s}")
    plot_sweep(table, out_png)
    print(f"wrote {out_png}")
    return table


def plot_sweep(table: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, axis, label in ((axes[0], "noise", "observation noise (norm)"),
                            (axes[1], "multi_parent", "share of multi-parent concepts"),
                            (axes[2], "leakage", "leakage between adjacent levels")):
        for method in dict.fromkeys(t["method"] for t in table):
            pts = sorted((t["x"], t["edge_f1"], t["edge_f1_sd"]) for t in table
                         if t["axis"] == axis and t["method"] == method)
            if pts:
                xs, ys, sds = zip(*pts)
                ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=method)
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("edge F1")
    axes[0].legend()
    fig.suptitle("multi-level graph recovery: joint (ours) vs independent SAEs (baseline)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_composition(text: str) -> str | list[str]:
    """``"or"`` or a comma list with one rule per coarse level, coarsest first (``"or,and"``)."""
    names = [t.strip() for t in text.split(",")]
    return names[0] if len(names) == 1 else names


#: fields whose option, when not given, takes the preset's value (``seed``: the first of ``--seeds``, or 0).
PRESET_FIELDS = ("concepts_per_level", "parents", "composition", "max_prob", "min_prob", "noise", "leakage",
                 "merged_pairs")


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, list[int], tuple[str, ...], argparse.Namespace]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench multilevel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    not_given = replace(BenchConfig(), seed=None, levels=None, **dict.fromkeys(PRESET_FIELDS))
    actions = add_dataclass_options(p, BenchConfig, not_given, parsers={"composition": parse_composition})
    actions["preset"].choices = sorted(PRESETS)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds; mean ± sd")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--sweep", action="store_true", help="edge F1 vs noise (0-3.2), leakage (0-0.8) and multi-parent share, + PNG")
    p.add_argument("--plot", default="multilevel_sweep.png", help="where --sweep writes its PNG")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    given = config_from_args(p, a, BenchConfig)
    defaults = BenchConfig()
    world = {**{name: getattr(defaults, name) for name in PRESET_FIELDS}, **PRESETS[given.preset]}
    if given.levels is not None and given.concepts_per_level is None and given.levels != len(world["concepts_per_level"]):
        world["concepts_per_level"] = default_sizes(given.levels)
    world.update({name: getattr(given, name) for name in PRESET_FIELDS if getattr(given, name) is not None})
    levels = given.levels if given.levels is not None else len(world["concepts_per_level"])
    max_overlap = None if given.max_overlap is not None and given.max_overlap < 0 else given.max_overlap
    cfg = replace(given, levels=levels, max_overlap=max_overlap, **world)
    cfg.validate()
    cfg.world_config()  # ValueError now for a bad composition, parents or sizes
    seeds = a.seeds if a.seeds is not None else [given.seed if given.seed is not None else 0]
    cfg.seed = seeds[0]
    return cfg, seeds, tuple(a.methods), a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, seeds, methods, args = parse_args(argv)
    config = {**asdict(cfg), "seeds": seeds, "methods": list(methods), "threads": args.threads}
    with isolated_run(args.threads):
        if args.sweep:
            table = sweep(cfg, seeds, methods, args.plot)
            report = {"config": {**config, "sweep": True, "plot": args.plot}, "results": table}
        else:
            rows = [r for seed in seeds for r in run_seed(cfg, seed, methods)]
            results = summarise(rows)
            print(format_table(results))
            for result in results:
                result["runs"] = [r for r in rows if r["method"] == result["method"]]
            report = {"config": config, "results": results}
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
