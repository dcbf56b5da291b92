"""Benchmark: concept graph across timesteps and concept steering in the diffusion toy world.

``python -m sae_causal_plugin.bench diffusion-world [--seed 0] [--json]``

A thin command line over the world's experiment,
:func:`sae_causal_plugin.worlds.diffusion_world.experiment.run_experiment` (every option below is a
field of its ``DiffusionWorldConfig``), on the shipped diffusion-world denoiser
(steps: the experiment module's docstring, also printed by ``--help``).

With ``--json`` the last line printed is one JSON object with ``edge_f1``, ``steer_success``,
``off_target_preserved``, ``ablation_success``, ``n_samples`` (steered generations in total),
``seconds`` and details.  Targets: edge F1 >= 0.80, steering >= 0.90 / >= 0.90, ablation >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, isolated_run
from sae_causal_plugin.worlds.diffusion_world import experiment
from sae_causal_plugin.worlds.diffusion_world.experiment import TARGETS, DiffusionWorldConfig, run_experiment


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> tuple[DiffusionWorldConfig, bool]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench diffusion-world",
                                description=f"{__doc__}\n{experiment.__doc__}", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, DiffusionWorldConfig)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    return config_from_args(p, a, DiffusionWorldConfig), a.json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, as_json = parse_args(argv)
    with isolated_run(cfg.threads):
        result = run_experiment(cfg, log=_log).as_dict()
    for key in ("edge_f1", "steer_success", "off_target_preserved", "ablation_success"):
        print(f"{key:22s} {result[key]:.3f}   target >= {TARGETS[key]:.2f}  "
              f"{'met' if result['met'][key] else 'NOT met'}")
    print(f"{'n_samples':22s} {result['n_samples']}\n{'seconds':22s} {result['seconds']}")
    if as_json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
