"""``run_diffusion_world``: the whole idea on the shipped diffusion-world denoiser, end to end.

Runs the world's experiment (:func:`~sae_causal_plugin.worlds.diffusion_world.experiment.run_experiment`:
one SAE per timestep 901 / 501 / 101, the layered child -> parent graph across timesteps, latent ->
concept matching, edge F1 against the true hierarchy, steering by ablation; the ``diffusion-world``
benchmark prints its figures), then draws two steering examples as before / after image grids
generated from the same noise:

* ablating the parent concept that the run removes best, together with its descendants in the
  recovered graph;
* adding the part / detail concept whose latents match it best (mean F1): its latents are clamped
  to their mean value where they fire, on scenes that hold its parent but not the concept.

The demo uses fewer steered generations per concept than the benchmark (``n_samples`` 16 instead
of 32) so that it stays within a few minutes on two CPU cores; every other setting is the
benchmark's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from sae_causal_plugin.graph import name_matched_latents, summarise_latents
from sae_causal_plugin.graph.layered import node_id
from sae_causal_plugin.graph.matching import firing_f1
from sae_causal_plugin.worlds.diffusion_world.concepts import (
    CONCEPT_INDEX,
    CONCEPTS,
    LEVELS,
    PARENT,
    all_classes,
    children,
    names,
    true_graph,
)
from sae_causal_plugin.worlds.diffusion_world.detectors import detect_concepts
from sae_causal_plugin.worlds.diffusion_world.experiment import (
    DiffusionWorldConfig,
    DiffusionWorldResult,
    collect_activations,
    pool_images,
    run_experiment,
    scenes_with,
)
from sae_causal_plugin.worlds.diffusion_world.scenes import render, sample_scenes
from sae_causal_plugin.worlds.diffusion_world.steering import concept_steering
from sae_causal_plugin.worlds.run import LatentEntry, SteeringExample, WorldRun, check_world_options

#: demo settings that differ from the experiment's :class:`~.experiment.DiffusionWorldConfig`.
DEFAULTS: dict[str, Any] = dict(n_samples=16)
#: images per steering example grid.
N_SHOW = 6
#: headline figures copied from the experiment result as they are.
HEADLINE = ("edge_f1", "steer_success", "off_target_preserved", "ablation_success", "n_samples",
            "seconds", "edge_precision", "edge_recall", "n_latent_edges", "n_unassigned_edges",
            "recovered_concept_edges", "missing_edges", "wrong_edges", "best_f1", "sae")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_diffusion_world(
    seed: int = 0,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
    n_show: int = N_SHOW,
    **options: Any,
) -> WorldRun:
    """Experiment, named timestep graph and two steering grids; see the module docstring.

    ``options`` override the fields of :class:`~.experiment.DiffusionWorldConfig` (e.g. ``train_images``,
    ``eval_images``, ``sae_steps``, ``n_samples``) on top of :data:`DEFAULTS`.  The grids are
    written as PNG files, with the latent browser's heat maps, into a new scratch folder inside
    ``out_dir`` (in the system's temporary folder when ``out_dir`` is ``None``), returned as
    ``WorldRun.scratch_dir``.  With ``progress`` the experiment's progress lines go to stderr.
    """
    check_world_options(DiffusionWorldConfig, options, n_show)
    cfg = DiffusionWorldConfig(**{**DEFAULTS, **options, "seed": seed})
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".diffusion_world_", dir=None if out_dir is None else out_dir)).resolve()
    image_dir = scratch / "steering_grids"
    image_dir.mkdir()

    log = _stderr if progress else None
    result = run_experiment(cfg, log)
    examples = _steering_examples(result, image_dir, n_show, log)
    figures = result.as_dict()
    metrics = {k: figures[k] for k in HEADLINE}
    metrics["steering_per_concept"] = figures["steering"]["per_concept"]
    metrics["ablation_per_concept"] = {c: {k: v for k, v in row.items() if k != "recovered_descendants"}
                                       for c, row in figures["steering"]["ablation"].items()}
    metrics["n_steered_samples"] = figures["steering"]["n_steered_samples"]
    metrics["concepts_without_latent"] = figures["steering"]["concepts_without_latent"]
    metrics["config"] = figures["config"]
    description = (
        f"Diffusion toy world (16x16 scenes, 8 concepts), seed {seed}: one SAE per denoising timestep "
        f"{list(cfg.timesteps)} on {cfg.train_images} training scenes ({cfg.sae_steps} SAE steps), graph "
        f"and latent naming on {cfg.eval_images} held-out scenes; a latent is named by the concept whose "
        f"presence its firing predicts with F1 >= {cfg.min_f1}.  Steering figures use {cfg.n_samples} "
        f"generations per concept and test (the benchmark uses 32), {cfg.num_inference_steps} DDIM steps."
    )
    learned = name_matched_latents(result.latent_graph, result.assignment, LEVELS.__getitem__)
    latents, concept_firing = _latent_browser(result, learned, scratch / "latent_maps", seed)
    return WorldRun(world="diffusion", learned_graph=learned, true_graph=true_graph(), metrics=metrics,
                    steering_examples=examples, description=description, latents=latents,
                    concept_firing=concept_firing, scratch_dir=scratch)


#: fresh scenes the latent browser reads (top images, heat maps, the concepts x latents F1).
N_BROWSE = 256


@torch.no_grad()
def _latent_browser(result: DiffusionWorldResult, learned: Any, image_dir: Path, seed: int,
                    top_k: int = 3) -> tuple[list[LatentEntry], dict[str, dict[str, float]]]:
    """Every latent of every timestep's SAE with its ``top_k`` top-activating scenes, each drawn beside
    the latent's per-token activation as a heat map over it; and the F1 of every (concept, latent)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    images, labels = sample_scenes(N_BROWSE, seed=1000 * seed + 5)
    timesteps = tuple(sorted(result.saes, reverse=True))
    acts = collect_activations(result.pipe, images, labels, timesteps, 1000 * seed + 6, result.hook)
    present = detect_concepts(images)
    entries: list[LatentEntry] = []
    concept_firing: dict[str, dict[str, float]] = {c: {} for c in CONCEPTS}
    for t in timesteps:
        sae = result.saes[t]
        per_token = sae.encode(acts[t]).reshape(N_BROWSE, -1, sae.cfg.d_sae)
        codes = sae.encode(pool_images(acts[t], N_BROWSE)) if result.config.pool else per_token.amax(1)
        nodes = [node_id(t, i, prefix="t") for i in range(sae.cfg.d_sae)]
        for summary in summarise_latents(codes, sae.W_dec, learned, result.assignment, top_k=top_k, nodes=nodes):
            node = nodes[summary.latent]
            name = learned.node_label(node) if node in learned else node
            paths = [_heat_map(images[row], per_token[row, :, summary.latent],
                               image_dir / f"t{t}_latent{summary.latent}_{i}.png")
                     for i, row in enumerate(summary.top_rows)]
            entries.append(LatentEntry(summary=summary, contexts=paths, name=name))
        f1 = firing_f1(codes > 0, present)
        for j, c in enumerate(CONCEPTS):
            concept_firing[c].update({f"t{t}:{i}": round(float(f1[i, j]), 3) for i in range(f1.shape[0])})
    return entries, concept_firing


def _heat_map(image: Float[Tensor, "3 h w"], tokens: Float[Tensor, " n_tokens"], path: Path, scale: int = 4) -> Path:
    """The scene and, beside it, the scene tinted red where the latent's per-token activation is high."""
    side = int(round(tokens.numel() ** 0.5))
    if side * side != tokens.numel():
        raise ValueError(f"the hook's {tokens.numel()} tokens per image are not a square grid: read a spatial hook")
    heat = tokens.clamp(min=0).reshape(1, 1, side, side)
    heat = heat / heat.max() if heat.max() > 0 else heat
    heat = torch.nn.functional.interpolate(heat, size=image.shape[-2:], mode="nearest")[0]
    red = torch.tensor([1.0, 0.1, 0.1])[:, None, None]
    tinted = image * (1 - 0.7 * heat) + red * 0.7 * heat
    return save_grid(torch.stack([image, tinted]), path, scale=scale)


def _steering_examples(result: DiffusionWorldResult, image_dir: Path, n_show: int,
                       log: Any = None) -> list[SteeringExample]:
    """Ablate the best-removed parent with its descendants; add the best-matched part / detail."""
    steer, latents = result.steering, result.latents
    parents = sorted((c for c in CONCEPTS if children(c)), key=lambda c: -steer["ablation"][c]["ablation_success"])
    examples = []
    for concept in parents:
        try:
            examples.append(_ablation_example(concept, result, image_dir, n_show))
            break
        except ValueError as err:  # neither the concept nor its recovered descendants have a latent
            if log is not None:
                log(f"  no ablation example for {concept}: {err}")
    f1 = {c: [f for c2, f in result.assignment.values() if c2 == c] for c in CONCEPTS}
    addable = [c for c in CONCEPTS if LEVELS[c] > 0 and any(latents.get(c, {}).values())]
    if addable:
        best = max(addable, key=lambda c: sum(f1[c]) / len(f1[c]))
        examples.append(_addition_example(best, result, image_dir, n_show))
    return examples


def _ablation_example(concept: str, result: DiffusionWorldResult, image_dir: Path, n_show: int) -> SteeringExample:
    """Ablate ``concept`` with its recovered descendants on scenes that hold all of them."""
    graph = result.concept_graph
    gen = torch.Generator().manual_seed(result.config.seed + 11)
    labels = scenes_with(concept, True, n_show, gen)
    descendants = sorted(graph.descendants(concept))
    what = (f"{concept} with its recovered descendants ({', '.join(descendants)})" if descendants
            else f"{concept} (no recovered descendants)")
    return _example(f"ablate {what}", f"ablate_{concept}_with_descendants", concept, False, labels, result,
                    image_dir, dict(mode="ablate", include_descendants=True, concept_graph=graph),
                    f"Ablating {what} in every timestep's SAE")


def _addition_example(concept: str, result: DiffusionWorldResult, image_dir: Path, n_show: int) -> SteeringExample:
    """Clamp ``concept``'s latents to their mean firing value on scenes with its parent but without it."""
    gen = torch.Generator().manual_seed(result.config.seed + 12)
    classes = all_classes()
    pool = classes[classes[:, CONCEPT_INDEX[PARENT[concept]]] & ~classes[:, CONCEPT_INDEX[concept]]]
    labels = pool[torch.randint(0, pool.shape[0], (n_show,), generator=gen)]
    value = firing_value(concept, result, result.config.seed)
    return _example(f"add {concept}: clamp its latents to {value:.2f}", f"add_{concept}", concept, True, labels,
                    result, image_dir,
                    dict(mode="clamp", value=value),
                    f"Clamping {concept}'s latents to {value:.2f} (their mean value where they fire on scenes "
                    f"with {concept}) in every timestep's SAE, on scenes with {PARENT[concept]} but no {concept}")


@torch.no_grad()
def firing_value(concept: str, result: DiffusionWorldResult, seed: int, n_scenes: int = 64) -> float:
    """Mean value of ``concept``'s latents where they fire, on rendered scenes holding ``concept``."""
    pipe, saes, latents, hook = result.pipe, result.saes, result.latents, result.hook
    gen = torch.Generator().manual_seed(seed + 13)
    labels = scenes_with(concept, False, n_scenes // 2, gen)
    if children(concept):
        labels = torch.cat([labels, scenes_with(concept, True, n_scenes - labels.shape[0], gen)])
    images = render(labels, generator=gen)
    timesteps = tuple(sorted(latents[concept]))
    acts = collect_activations(pipe, images, labels, timesteps, seed + 14, hook)
    values = []
    for t in timesteps:
        code = saes[t].encode(pool_images(acts[t], labels.shape[0]))[:, latents[concept][t]]
        values.append(code[code > 0])
    fired = torch.cat(values)
    if fired.numel() == 0:
        raise ValueError(f"the latents of {concept!r} never fire on scenes that hold it")
    return float(fired.mean())


@torch.no_grad()
def _example(title: str, stem: str, concept: str, wanted: bool, labels: Tensor, result: DiffusionWorldResult,
             image_dir: Path, steering: dict[str, Any], what: str) -> SteeringExample:
    """Generate ``labels`` from the same noise without and with the steering; before / after grids."""
    pipe, steps = result.pipe, result.config.num_inference_steps
    noise = torch.randn(labels.shape[0], 3, 16, 16, generator=torch.Generator().manual_seed(result.config.seed + 15))
    before = pipe(labels, num_inference_steps=steps, latents=noise)
    with concept_steering(pipe, result.steer_saes, result.latents, concept, hook=result.hook,
                          num_inference_steps=steps, **steering):
        after = pipe(labels, num_inference_steps=steps, latents=noise)
    paths = [image_dir / f"{stem}_{side}.png" for side in ("before", "after")]
    for images, path in zip((before, after), paths):
        save_grid(images, path)
    read_before, read_after = detect_concepts(before), detect_concepts(after)
    table = [{"image": i + 1, "before": ", ".join(names(b)), "after": ", ".join(names(a))}
             for i, (b, a) in enumerate(zip(read_before, read_after))]
    hits = int((read_after[:, CONCEPT_INDEX[concept]] == wanted).sum())
    edited = {concept, *(steering["concept_graph"].descendants(concept) if steering.get("include_descendants") else ())}
    others = [CONCEPT_INDEX[c] for c in CONCEPTS if c not in edited]
    kept = int((read_after[:, others] == read_before[:, others]).all(1).sum())
    note = (f"{what} (same noise before and after): {concept} is {'present' if wanted else 'gone'} in {hits} of "
            f"{len(table)} images and every concept not edited unchanged in {kept}, read by the detectors "
            "(table: concepts read off each image).")
    # a success edits the concept in most images and leaves the others alone in most
    succeeded = 2 * hits > len(table) and 2 * kept > len(table)
    return SteeringExample(title=title, before=paths[0], after=paths[1], note=note, table=table, succeeded=succeeded)


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


__all__ = ["DEFAULTS", "firing_value", "run_diffusion_world", "save_grid"]
