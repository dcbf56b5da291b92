"""The part world's demo run (``sae-causal demo --world part``): the experiment, the picture the paper
shows (the recovered graph with each node's mean heat map), and before / after grids of the three
steering kinds, as a :class:`~sae_causal_plugin.worlds.run.WorldRun` for the report.

Figures are those of :func:`~.experiment.run_experiment` with its defaults (the benchmark's
settings).  The pictures are written into a scratch folder inside ``out_dir``
(``WorldRun.scratch_dir``), which the report copies.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.heatmaps import draw_heatmap_graph
from sae_causal_plugin.graph.layered import name_matched_latents
from sae_causal_plugin.worlds.denoiser_training import sample_grid, save_png
from sae_causal_plugin.worlds.part_world.concepts import CONCEPTS, level, true_edges
from sae_causal_plugin.worlds.part_world.experiment import PartWorldConfig, run_experiment
from sae_causal_plugin.worlds.part_world.scenes import composite
from sae_causal_plugin.worlds.run import SteeringExample, WorldRun, check_world_options

HEADLINE = ("edge_f1", "edge_precision", "edge_recall", "heatmap_iou", "probe_edge_f1", "part_removal_success",
            "off_target_preserved", "part_addition_success", "whole_removal_success", "n_samples", "seconds")
TITLES = {"removal": "remove the part {c}", "addition": "add the part {c} (part @ host region)",
          "whole": "remove the whole {c} with its recovered descendants"}


def true_graph() -> ConceptGraph:
    """The part world's true part-whole DAG (child -> parent), levels 0 = wholes."""
    g = ConceptGraph()
    for c in CONCEPTS:
        g.add_concept(c, level=level(c))
    for child, parent in sorted(true_edges()):
        g.add_edge(child, parent)
    return g


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_part_world(seed: int = 0, *, out_dir: Path | None = None, progress: bool = True, n_show: int = 8,
                   **options: Any) -> WorldRun:
    """Experiment, heat-map graph picture and three steering grids; ``options``: fields of ``PartWorldConfig``."""
    check_world_options(PartWorldConfig, options, n_show)
    cfg = PartWorldConfig(**{**options, "seed": seed})
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".part_world_", dir=None if out_dir is None else out_dir)).resolve()
    examples: list[dict[str, Any]] = []
    result = run_experiment(cfg, _stderr if progress else None, examples=examples if cfg.steer else None)
    figures = result.as_dict()
    metrics = {k: figures[k] for k in HEADLINE}
    metrics.update(per_concept_iou=figures["per_concept_iou"], concepts_without_latent=figures["concepts_without_latent"],
                   probe=figures["probe"], config=figures["config"])
    learned = name_matched_latents(result.latent_graph, result.assignment, level)
    labels = {n: f"{c} ({n})" for n, (c, _) in result.assignment.items()}
    pictures: list[tuple[str, Path]] = []
    if result.latent_graph.edges:
        path = scratch / "heatmap_graph.png"
        draw_heatmap_graph(result.latent_graph, result.heatmaps, path, labels=labels,
                           title=f"part world, seed {seed}: recovered graph, each node's mean heat map")
        pictures.append(("The recovered graph as the paper draws it: one row per timestep (noisiest, coarsest "
                         "first), each latent's mean heat map over the held-out scenes it fires in, its name "
                         "(matched concept) above and its parents below.", path))
    steering = []
    for ex in examples:
        stem = f"{ex['kind']}_{ex['concept'].replace('@', '_at_')}"
        before, after = scratch / f"{stem}_before.png", scratch / f"{stem}_after.png"
        save_png(sample_grid(composite(ex["before"]), ncol=n_show), str(before), scale=6)
        save_png(sample_grid(composite(ex["after"]), ncol=n_show), str(after), scale=6)
        ok = sum(ex["succeeded"])
        steering.append(SteeringExample(title=TITLES[ex["kind"]].format(c=ex["concept"]), before=before, after=after,
                                        note=f"{ok} of {len(ex['succeeded'])} shown samples read back as intended",
                                        succeeded=ok == len(ex["succeeded"])))
    description = (
        f"Part-whole diffusion world (16x16 scenes of one layer per concept, {len(CONCEPTS)} concepts on 3 levels, a DAG of "
        f"{len(true_edges())} part -> whole edges), seed {seed}: one per-token SAE per timestep "
        f"{list(cfg.timesteps)} at {cfg.hook}, the spatial timestep graph on {cfg.eval_images} held-out scenes; "
        f"a latent is named by the concept whose true mask its active tokens overlap best (IoU >= {cfg.min_iou}). "
        "probe_edge_f1 is the same graph with supervised linear probes in place of the SAEs (the ceiling of the "
        "reading point and the graph rules).")
    return WorldRun(world="part", learned_graph=learned, true_graph=true_graph(), metrics=metrics,
                    steering_examples=steering, description=description, figures=pictures, scratch_dir=scratch)


__all__ = ["run_part_world", "true_graph"]
