"""Benchmark: the part-whole diffusion world (per-token SAEs at three timesteps, the spatial concept
graph, spatial steering).

``python -m sae_causal_plugin.bench part-world [--seed 0] [--architecture batchtopk] [--json]``

A thin command line over :func:`sae_causal_plugin.worlds.part_world.experiment.run_experiment`
(every option is a field of its ``PartWorldConfig``), on the shipped part-world denoiser.  With
``--json`` the last line printed is one JSON object with ``edge_f1``, ``heatmap_iou``,
``part_removal_success``, ``off_target_preserved``, ``part_addition_success``,
``whole_removal_success``, ``n_samples`` and ``seconds``, plus details.  Targets (issue 11):
edge F1 >= 0.85, heat-map IoU >= 0.70, part removal >= 0.95 with others kept >= 0.90, part
addition >= 0.90, whole removal >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, isolated_run
from sae_causal_plugin.worlds.part_world import experiment
from sae_causal_plugin.worlds.part_world.experiment import PartWorldConfig, run_experiment

TARGETS = {"edge_f1": 0.85, "heatmap_iou": 0.70, "part_removal_success": 0.95, "off_target_preserved": 0.90,
           "part_addition_success": 0.90, "whole_removal_success": 0.95}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> tuple[PartWorldConfig, bool]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench part-world",
                                description=f"{__doc__}\n{experiment.__doc__}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, PartWorldConfig)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    return config_from_args(p, a, PartWorldConfig), a.json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, as_json = parse_args(argv)
    with isolated_run(cfg.threads):
        result = run_experiment(cfg, log=_log).as_dict()
    for key, target in TARGETS.items():
        value = result.get(key)
        shown = "skipped" if value is None else f"{value:.3f}"
        verdict = "" if value is None else ("met" if value >= target else "NOT met")
        print(f"{key:22s} {shown:>7s}   target >= {target:.2f}  {verdict}")
    probe = result["probe_edge_f1"]  # the reading point and the graph rules, apart from the dictionary
    print(f"{'probe_edge_f1':22s} {'skipped' if probe is None else f'{probe:.3f}':>7s}   (linear probes, the ceiling)")
    for t, lin in result["concept_linearity"].items():
        print(f"concepts at t={t:<5s} R^2 {lin['r2']:.3f}  max |cos| {lin['max_abs_cos']:.3f}  "
              f"condition {lin['condition']:.1f}")
    print(f"{'n_samples':22s} {result['n_samples']}\n{'seconds':22s} {result['seconds']}")
    if as_json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
