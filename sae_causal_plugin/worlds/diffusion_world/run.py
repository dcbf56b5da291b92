"""``run_diffusion_world``: the whole idea on the shipped diffusion-world denoiser, end to end.

Runs the ``diffusion-world`` benchmark (:mod:`sae_causal_plugin.bench.diffusion_world`: one SAE
per timestep 901 / 501 / 101, the layered child -> parent graph across timesteps, latent ->
concept matching, edge F1 against the true hierarchy, steering by ablation), then draws two
steering examples as before / after image grids generated from the same noise:

* ablating the parent concept that the run removes best, together with its descendants in the
  recovered graph;
* ablating the single part / detail concept whose steering worked best.

The demo uses fewer steered generations per concept than the benchmark (``n_samples`` 16 instead
of 32) so that it stays within a few minutes on two CPU cores; every other setting is the
benchmark's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from sae_causal_plugin.bench import diffusion_world as bench
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.worlds.diffusion_world.concepts import CONCEPTS, LEVELS, children, names, true_graph
from sae_causal_plugin.worlds.diffusion_world.detectors import detect_concepts
from sae_causal_plugin.worlds.diffusion_world.steering import concept_steering
from sae_causal_plugin.worlds.diffusion_world.timestep_graph import parse_node
from sae_causal_plugin.worlds.run import SteeringExample, WorldRun

#: demo settings that differ from the benchmark's :class:`~sae_causal_plugin.bench.diffusion_world.Config`.
DEFAULTS: dict[str, Any] = dict(n_samples=16)
#: images per steering example grid.
N_SHOW = 6
#: headline figures copied from the benchmark result as they are.
HEADLINE = ("edge_f1", "steer_success", "off_target_preserved", "ablation_success", "n_samples",
            "seconds", "edge_precision", "edge_recall", "n_latent_edges", "n_unassigned_edges",
            "recovered_concept_edges", "missing_edges", "wrong_edges", "best_f1", "sae")


def run_diffusion_world(
    seed: int = 0,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
    n_show: int = N_SHOW,
    **options: Any,
) -> WorldRun:
    """Benchmark, named timestep graph and two steering grids; see the module docstring.

    ``options`` override the benchmark's ``Config`` fields (e.g. ``train_images``,
    ``eval_images``, ``sae_steps``, ``n_samples``) on top of :data:`DEFAULTS`.  The grids are
    written as PNG files to ``out_dir / "steering_grids"`` (a new temporary folder when ``out_dir`` is
    ``None``).
    """
    known = {f.name for f in fields(bench.Config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown options {unknown}; pass fields of bench.diffusion_world.Config: {sorted(known)}")
    if not isinstance(n_show, int) or n_show < 1:
        raise ValueError(f"n_show must be a positive int, got {n_show!r}")
    cfg = bench.Config(**{**DEFAULTS, **options, "seed": seed})
    image_dir = Path(out_dir) / "steering_grids" if out_dir is not None else Path(tempfile.mkdtemp(prefix="diffusion_world_"))
    image_dir.mkdir(parents=True, exist_ok=True)

    artefacts: dict[str, Any] = {}
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    with quiet:
        result = bench.run(cfg, artefacts)
    examples = _steering_examples(result, artefacts, cfg, image_dir, n_show)
    metrics = {k: result[k] for k in HEADLINE}
    metrics["steering_per_concept"] = result["steering"]["per_concept"]
    metrics["ablation_per_concept"] = {c: {k: v for k, v in row.items() if k != "recovered_descendants"}
                                       for c, row in result["steering"]["ablation"].items()}
    metrics["config"] = result["config"]
    description = (
        f"Diffusion toy world (16x16 scenes, 8 concepts), seed {seed}: one SAE per denoising timestep "
        f"{list(cfg.timesteps)} on {cfg.train_images} training scenes ({cfg.sae_steps} SAE steps), graph "
        f"and latent naming on {cfg.eval_images} held-out scenes; a latent is named by the concept whose "
        f"presence its firing predicts with F1 >= {cfg.min_f1}.  Steering figures use {cfg.n_samples} "
        f"generations per concept and test (the benchmark uses 32), {cfg.num_inference_steps} DDIM steps."
    )
    return WorldRun(world="diffusion", learned_graph=named_graph(artefacts["latent_graph"], artefacts["assignment"]),
                    true_graph=true_graph(), metrics=metrics, steering_examples=examples,
                    description=description)


def named_graph(graph: ConceptGraph, assignment: dict[str, tuple[str, float]]) -> ConceptGraph:
    """A copy of the latent timestep graph whose matched nodes carry ``label``/``concept``/``match_f1``."""
    named = ConceptGraph.from_dict(graph.to_dict())
    named.meta = dict(graph.meta)
    for node in named.concepts:
        t, i = parse_node(node)
        attrs = {**named.concept_attrs(node), "timestep": t, "latent": i}
        if node in assignment:
            concept, score = assignment[node]
            attrs.update(label=f"{concept} (#{node})", concept=concept, match_f1=float(score),
                         true_level=LEVELS[concept])
        named.add_concept(node, **attrs)
    return named


def _steering_examples(result: dict[str, Any], artefacts: dict[str, Any], cfg: Any, image_dir: Path,
                       n_show: int) -> list[SteeringExample]:
    """The best-removed parent (with descendants) and the best-steered single concept that can be edited."""
    steer = result["steering"]
    parents = sorted((c for c in CONCEPTS if children(c)), key=lambda c: -steer["ablation"][c]["ablation_success"])
    singles = sorted((c for c, row in steer["per_concept"].items() if "note" not in row),
                     key=lambda c: (-steer["per_concept"][c]["steer_success"],
                                    -steer["per_concept"][c]["off_target_preserved"]))
    examples = []
    for candidates, family in ((parents, True), (singles, False)):
        for concept in candidates:
            try:
                examples.append(_example(concept, family, artefacts, cfg, image_dir, n_show))
                break
            except ValueError as err:  # the concept (and its family) has no latent to edit
                bench._log(f"  no steering example for {concept}: {err}")
    return examples


@torch.no_grad()
def _example(concept: str, with_descendants: bool, artefacts: dict[str, Any], cfg: Any, image_dir: Path,
             n_show: int) -> SteeringExample:
    """Ablate ``concept`` (with its recovered descendants) on ``n_show`` scenes; before / after grids."""
    pipe, graph = artefacts["pipe"], artefacts["concept_graph"]
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    labels = bench._scenes_with(concept, with_descendants, n_show, gen)
    noise = torch.randn(n_show, 3, 16, 16, generator=gen)
    before = pipe(labels, num_inference_steps=cfg.num_inference_steps, latents=noise)
    extra = dict(include_descendants=True, concept_graph=graph) if with_descendants else {}
    with concept_steering(pipe, artefacts["steer_saes"], artefacts["latents"], concept, "ablate",
                          hook=artefacts["hook"], num_inference_steps=cfg.num_inference_steps, **extra):
        after = pipe(labels, num_inference_steps=cfg.num_inference_steps, latents=noise)
    stem = f"ablate_{concept}" + ("_with_descendants" if with_descendants else "")
    paths = [image_dir / f"{stem}_{side}.png" for side in ("before", "after")]
    for images, path in zip((before, after), paths):
        save_grid(images, path)
    read_before, read_after = detect_concepts(before), detect_concepts(after)
    table = [{"image": i + 1, "before": ", ".join(names(b)), "after": ", ".join(names(a))}
             for i, (b, a) in enumerate(zip(read_before, read_after))]
    gone = sum(int(not a[CONCEPTS.index(concept)]) for a in read_after)
    descendants = sorted(graph.descendants(concept)) if with_descendants else []
    what = f"{concept} with its recovered descendants {descendants}" if with_descendants else concept
    note = (f"Ablating {what} in every timestep's SAE (same noise before and after); {concept} is gone in "
            f"{gone} of {n_show} images by the detectors.  Rows of the table: concepts read off each image.")
    return SteeringExample(title=f"ablate {what}", before=paths[0], after=paths[1], note=note, table=table)


def save_grid(images: Float[Tensor, "batch 3 height width"], path: Path, scale: int = 4, gap: int = 2) -> Path:
    """Save ``[0, 1]`` images side by side (nearest-neighbour upscaled by ``scale``) as one PNG."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [batch, 3, height, width], got {tuple(images.shape)}")
    b, _, h, w = images.shape
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    canvas = Image.new("RGB", (b * (w * scale + gap) - gap, h * scale), "white")
    for i in range(b):
        tile = Image.fromarray(pixels[i]).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (i * (w * scale + gap), 0))
    canvas.save(path)
    return path


__all__ = ["DEFAULTS", "named_graph", "run_diffusion_world", "save_grid"]
