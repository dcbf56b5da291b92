"""``sae-causal demo``: the main job on a shipped toy world, ending in an HTML report."""

from __future__ import annotations

import argparse
import importlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_causal_plugin.cli.errors import UserError

#: world name -> (package, function) of its end-to-end run, ``run(seed, *, out_dir, progress) -> WorldRun``;
#: the function is looked up in the package and in its ``run`` / ``demo`` submodules.
WORLD_RUNS = {
    "language": ("sae_causal_plugin.worlds.language_world", "run_language_world"),
    "diffusion": ("sae_causal_plugin.worlds.diffusion_world", "run_diffusion_world"),
    "part": ("sae_causal_plugin.worlds.part_world", "run_part_world"),
}
_SUBMODULES = ("", ".run", ".demo")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train hierarchical SAEs on a shipped toy world, recover its concept graph, steer, write a report",
        description=(
            "The main job, offline: on the shipped language-model toy world (a tiny HookedTransformer "
            "trained on a synthetic language with a known category -> subcategory -> item taxonomy) "
            "train hierarchical SAEs through SAELens, recover the concept graph, score it against the "
            "true taxonomy, steer generation with a concept, and write a report folder with index.html, "
            "concept_graph.png, concept_graph.json and metrics.json. --world diffusion does the same on "
            "the diffusion toy world, --world part on the part-whole diffusion world (per-token SAEs, the "
            "graph with each node's heat map, part / whole steering grids)."
        ),
    )
    p.add_argument("--out", default="report", metavar="DIR",
                   help="report folder (default: ./report); its report files are replaced, others kept")
    p.add_argument("--seed", type=int, default=0, help="seed of the SAE training and data draws (default 0)")
    p.add_argument("--world", choices=sorted(WORLD_RUNS), default="language",
                   help="which toy world (default: language)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def world_runner(world: str) -> Callable[..., Any]:
    """The ``run_*_world`` function of ``world`` (``UserError`` when it does not exist yet)."""
    package, function = WORLD_RUNS[world]
    for suffix in _SUBMODULES:
        try:
            module = importlib.import_module(package + suffix)
        except ModuleNotFoundError as err:
            if err.name is not None and not (package + suffix).startswith(err.name):
                raise  # a missing dependency inside the world is a real error, not "not available"
            continue
        runner = getattr(module, function, None)
        if callable(runner):
            return runner
    raise UserError(f"the {world} world demo is not available yet")


def run(args: argparse.Namespace) -> int:
    from sae_causal_plugin._files import check_target_dir, removed_on_error
    from sae_causal_plugin.report import write_report

    check_target_dir(args.out, what="report folder")
    runner = world_runner(args.world)
    start = time.perf_counter()
    with removed_on_error(args.out):  # a failed run leaves no SAE folder or image behind
        world_run = runner(args.seed, out_dir=Path(args.out), progress=not args.no_progress)
        world_run.metrics.setdefault("seconds", time.perf_counter() - start)
        command = f"sae-causal demo --world {args.world} --seed {args.seed} --out {args.out}"
        index = write_report(world_run, args.out, command=command)
        if world_run.scratch_dir is not None:  # the report holds copies of its images now
            shutil.rmtree(world_run.scratch_dir, ignore_errors=True)
    print(summary(world_run.metrics, args.world))
    print(f"report written to {index.resolve()} ({time.perf_counter() - start:.0f} s in all)")
    hint = steer_hint(world_run, index.parent)
    if hint:
        print(f"steer it yourself: {hint}")
    return 0


def steer_hint(world_run: Any, out_dir: Any) -> str:
    """A ready ``sae-causal steer`` command that visibly steers: the concept, prompt and value the run
    measured (``metrics["steer_hint"]``, language world), with the SAE at ``metrics["hook_name"]`` (or
    the only SAE); ``""`` when the run has none."""
    hint = world_run.metrics.get("steer_hint") or {}
    sae_dir = world_run.sae_dirs.get(world_run.metrics.get("hook_name"))
    if sae_dir is None and len(world_run.sae_dirs) == 1:
        sae_dir = next(iter(world_run.sae_dirs.values()))
    if sae_dir is None or not hint:
        return ""
    command = (f"sae-causal steer --sae {sae_dir} --graph {out_dir / 'concept_graph.json'} "
               f"--concept {hint['concept']} --mode add --value {hint['value']:g} --prompt '{hint['prompt']}' "
               "--max-new-tokens 12")
    return command if hint.get("visible") else f"{command}  (no tried value made the continuation name a {hint['concept']} item)"


def summary(metrics: dict[str, Any], world: str) -> str:
    """The headline figures as aligned ``key  value  (target, reached)`` lines."""
    from sae_causal_plugin.report import targets_for
    from sae_causal_plugin.report.html import format_value

    from sae_causal_plugin.report.html import is_scalar

    targets = targets_for(world)
    scalars = {k: v for k, v in metrics.items() if is_scalar(v)}
    keys = [k for k in targets if k in scalars] + sorted(k for k in scalars if k not in targets)
    width = max((len(k) for k in keys), default=0)
    lines = []
    for key in keys:
        target = targets.get(key)
        value = format_value(metrics[key], bool(target and target.percent))
        verdict = ""
        if target is not None:
            met = target.met(metrics[key])
            verdict = f"  (target {target.describe()}: {'reached' if met else 'not reached'})"
        lines.append(f"  {key:<{width}}  {value}{verdict}")
    return "\n".join(lines)
