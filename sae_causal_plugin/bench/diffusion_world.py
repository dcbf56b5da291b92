"""Benchmark: concept graph across timesteps and concept steering in the diffusion toy world.

``python -m sae_causal_plugin.bench diffusion-world [--seed 0] [--json]``

On the shipped diffusion-world denoiser (:mod:`sae_causal_plugin.worlds.diffusion_world`):

1. **Activations.**  Scenes drawn from the world's sampling rule (each present concept with a
   random conditioning strength) are forward-noised to three timesteps (default 901 / 501 / 101,
   noisiest = most abstract; one noise draw per image shared by the timesteps) and the
   denoiser's ``mid_block.attentions.0.hook_delta`` (8x8 tokens, 32 channels: the residual
   update where the concept token enters the UNet, its only entry) is cached through the
   adapter's :func:`~sae_causal_plugin.diffusion.noised_activations`.  By default the SAEs see
   *image-level* activations, the mean over the 64 tokens (``--tokens`` trains on tokens).
2. **SAEs.**  One ``HierarchicalBatchTopKTrainingSAEConfig`` SAE per timestep, trained by SAELens's
   ``SAETrainer`` on a :class:`~sae_causal_plugin.diffusion.DiffusionActivationSource`, then saved
   and reloaded as a stock SAELens inference SAE.  As in the synthetic-hierarchy benchmark, the
   width defaults to the number of true concepts (8) and ``k`` to the world's true mean L0
   (2.125 concepts per scene).
3. **Timestep graph.**  On held-out scenes, image-level firing of every latent, the layered
   child -> parent graph between adjacent timesteps, latent -> concept assignment by F1 against
   the detector-read concepts, and edge F1 of the collapsed graph against the true hierarchy
   (rules: :mod:`sae_causal_plugin.worlds.diffusion_world.timestep_graph`).
4. **Steering** (:func:`~sae_causal_plugin.worlds.diffusion_world.steering.concept_steering`: every
   per-timestep SAE edits its own window of the 20-step DDIM schedule; the concept's latents are
   those assigned to it in step 3).  Image-level SAEs are wrapped in
   :class:`~sae_causal_plugin.worlds.diffusion_world.steering.ImageLevelSAE`: the code of the
   image mean is edited and the change is added to every token alike.  For each part / detail concept ``c``
   (not the two objects, whose parts would be left floating), ``n_samples`` scenes that contain
   ``c`` but none of its descendants are generated twice from the same noise, without and with
   ``c``'s latents ablated:

   * ``steer_success``: fraction of samples whose detector-read ``c`` changed (present -> absent);
   * ``off_target_preserved``: fraction of samples whose other seven concepts all read the same
     as in the unsteered image.

   A concept without an assigned latent counts as failed on all its samples.  For each concept
   with children, ``n_samples`` scenes containing it and all its descendants are generated with
   the concept ablated with ``include_descendants=True`` (descendants taken from the *recovered*
   concept graph): ``ablation_success`` = fraction where the concept is gone.

With ``--json`` the last line printed is one JSON object with ``edge_f1``, ``steer_success``,
``off_target_preserved``, ``ablation_success``, ``n_samples`` (steered generations in total),
``seconds`` and details.  Targets: edge F1 >= 0.80, steering >= 0.90 / >= 0.90, ablation >= 0.95.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from unittest import mock

import torch
from torch import Tensor

TARGETS = {"edge_f1": 0.80, "steer_success": 0.90, "off_target_preserved": 0.90,
           "ablation_success": 0.95}


@dataclass
class Config:
    seed: int = 0
    weights: str | None = None  # directory of the denoiser; None = the shipped assets
    hook: str | None = None  # None = the world's HOOK
    timesteps: tuple[int, ...] = (901, 501, 101)
    train_images: int = 4096
    eval_images: int = 2048
    pool: bool = True  # SAEs on image-level (token-mean) activations; False: on tokens
    d_sae: int = 8  # the number of true concepts
    k: float | None = None  # None: the world's true mean L0
    sae_steps: int = 2000
    sae_batch: int = 256
    sae_lr: float = 3e-3
    min_f1: float = 0.8
    n_samples: int = 32
    num_inference_steps: int = 20
    batch_images: int = 256
    threads: int = 1
    graph: dict[str, Any] = field(default_factory=dict)
    sae_options: dict[str, Any] = field(default_factory=dict)  # more SAE config fields


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- 1. activations ------------------------------------------------------------------------------
@torch.no_grad()
def collect_activations(
    pipe: Any, images: Tensor, labels: Tensor, timesteps: tuple[int, ...], seed: int,
    hook: str, batch_images: int = 256,
) -> dict[int, Tensor]:
    """``{t: [n_images * tokens, channels]}`` of ``hook`` for clean scenes noised to each ``t``."""
    from sae_causal_plugin.diffusion import hook_denoiser, noised_activations
    from sae_causal_plugin.worlds.diffusion_world import sample_strengths, to_model

    strengths = sample_strengths(labels, torch.Generator().manual_seed(seed))
    batches = (
        {"latents": to_model(images[s : s + batch_images]),
         "encoder_hidden_states": pipe.encode_labels(strengths[s : s + batch_images])}
        for s in range(0, images.shape[0], batch_images)
    )
    chunks = noised_activations(hook_denoiser(pipe.unet), pipe.scheduler, batches, hook,
                                list(timesteps), seed=seed)
    parts: dict[int, list[Tensor]] = {t: [] for t in timesteps}
    for chunk in chunks:
        for t in timesteps:
            parts[t].append(chunk[hook, t])
    return {t: torch.cat(v) for t, v in parts.items()}


def pool_images(acts: Tensor, n_images: int) -> Tensor:
    """Image-level activations: the mean over each image's tokens, ``[n_images, channels]``."""
    return acts.reshape(n_images, -1, acts.shape[-1]).mean(1)


# --- 2. SAEs ---------------------------------------------------------------------------------------
def _epochs(data: Tensor, key: Any, chunk: int, gen: torch.Generator) -> Iterator[dict[Any, Tensor]]:
    while True:
        perm = torch.randperm(data.shape[0], generator=gen)
        for s in range(0, data.shape[0], chunk):
            yield {key: data[perm[s : s + chunk]]}


def true_mean_l0() -> float:
    """Expected number of concepts per scene under the world's sampling rule (2.125)."""
    from sae_causal_plugin.worlds.diffusion_world import all_classes
    from sae_causal_plugin.worlds.diffusion_world.concepts import class_probabilities

    return float((class_probabilities() * all_classes().sum(1).double()).sum())


def train_sae(acts: Tensor, cfg: Config, seed: int, hook: str, timestep: int) -> Any:
    """A hierarchical BatchTopK SAE trained by ``SAETrainer``, returned as a SAELens inference SAE."""
    from sae_lens import SAE, LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from sae_causal_plugin import HierarchicalBatchTopKTrainingSAE, HierarchicalBatchTopKTrainingSAEConfig
    from sae_causal_plugin.diffusion import DiffusionActivationSource

    torch.manual_seed(seed)
    sae = HierarchicalBatchTopKTrainingSAE(
        HierarchicalBatchTopKTrainingSAEConfig(
            d_in=int(acts.shape[1]), d_sae=cfg.d_sae, k=cfg.k if cfg.k else true_mean_l0(),
            **cfg.sae_options
        )
    )
    gen = torch.Generator().manual_seed(seed)
    source = DiffusionActivationSource(
        _epochs(acts, (hook, timestep), 16 * cfg.sae_batch, gen), batch_size=cfg.sae_batch,
        mix_fraction=0.5,
    )
    source.check_sae(sae)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.sae_steps * cfg.sae_batch,
        train_batch_size_samples=cfg.sae_batch, lr=cfg.sae_lr, lr_end=cfg.sae_lr / 10,
        lr_scheduler_name="cosineannealing", device="cpu",
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=10,
        dead_feature_window=200, feature_sampling_window=500,
    )
    import sae_lens.training.sae_trainer as trainer_module

    quiet = functools.partial(trainer_module.tqdm, disable=True)  # no progress bar per SAE
    with mock.patch.object(trainer_module, "tqdm", quiet):
        SAETrainer(trainer_cfg, sae, source).fit()
    with tempfile.TemporaryDirectory() as d:
        sae.save_inference_model(d)
        inference = SAE.load_from_disk(d)
    return inference.eval()


# --- 3. graph --------------------------------------------------------------------------------------
def concept_latents(assignment: dict[str, tuple[str, float]]) -> dict[str, dict[int, list[int]]]:
    """``{concept: {timestep: [latent, ...]}}`` from a latent -> concept assignment."""
    from sae_causal_plugin.graph.layered import parse_node

    out: dict[str, dict[int, list[int]]] = {}
    for node, (concept, _) in sorted(assignment.items()):
        t, i = parse_node(node)
        out.setdefault(concept, {}).setdefault(t, []).append(i)
    return out


def recovered_concept_graph(concept_edges: list[tuple[str, str]]) -> Any:
    """The recovered graph collapsed onto concept names (edges closing a cycle are skipped)."""
    from sae_causal_plugin.graph import ConceptGraph
    from sae_causal_plugin.worlds.diffusion_world import CONCEPTS

    g = ConceptGraph()
    for c in CONCEPTS:
        g.add_concept(c)
    for a, b in concept_edges:
        try:
            g.add_edge(a, b)
        except ValueError:
            pass
    return g


# --- 4. steering ---------------------------------------------------------------------------------
def _scenes_with(concept: str, with_descendants: bool, n: int, gen: torch.Generator) -> Tensor:
    """``n`` valid label vectors containing ``concept``; its descendants all present or all absent."""
    from sae_causal_plugin.worlds.diffusion_world import CONCEPT_INDEX, all_classes, descendants

    classes = all_classes()
    ok = classes[:, CONCEPT_INDEX[concept]].clone()
    for d in descendants(concept):
        ok &= classes[:, CONCEPT_INDEX[d]] if with_descendants else ~classes[:, CONCEPT_INDEX[d]]
    pool = classes[ok]
    return pool[torch.randint(0, pool.shape[0], (n,), generator=gen)]


@torch.no_grad()
def _generate(pipe: Any, labels: Tensor, noise: Tensor, cfg: Config) -> Tensor:
    from sae_causal_plugin.worlds.diffusion_world import detect_concepts

    return detect_concepts(pipe(labels, num_inference_steps=cfg.num_inference_steps, latents=noise))


def steering_eval(pipe: Any, saes: dict[int, Any], latents: dict[str, dict[int, list[int]]],
                  graph: Any, cfg: Config, hook: str) -> dict[str, Any]:
    """Steering (switch a concept off) and ablation with descendants; see the module docstring."""
    from sae_causal_plugin.worlds.diffusion_world import CONCEPT_INDEX, CONCEPTS, LEVELS, children
    from sae_causal_plugin.worlds.diffusion_world.steering import concept_steering

    gen = torch.Generator().manual_seed(cfg.seed + 7)
    per: dict[str, Any] = {}
    changed = kept = total = 0
    for c in [c for c in CONCEPTS if LEVELS[c] > 0]:
        labels = _scenes_with(c, False, cfg.n_samples, gen)
        noise = torch.randn(cfg.n_samples, 3, 16, 16, generator=gen)
        base = _generate(pipe, labels, noise, cfg)
        if not any(latents.get(c, {}).values()):
            per[c] = {"steer_success": 0.0, "off_target_preserved": 0.0, "note": "no latent"}
            total += cfg.n_samples
            continue
        with concept_steering(pipe, saes, latents, c, "ablate", hook=hook,
                              num_inference_steps=cfg.num_inference_steps):
            steered = _generate(pipe, labels, noise, cfg)
        j = CONCEPT_INDEX[c]
        others = [i for i in range(len(CONCEPTS)) if i != j]
        ch = steered[:, j] != base[:, j]
        kp = (steered[:, others] == base[:, others]).all(1)
        per[c] = {"steer_success": float(ch.float().mean()), "off_target_preserved": float(kp.float().mean()),
                  "base_present": float(base[:, j].float().mean())}
        changed += int(ch.sum())
        kept += int(kp.sum())
        total += cfg.n_samples
        _log(f"  steer {c:8s} changed {per[c]['steer_success']:.2f}  others kept {per[c]['off_target_preserved']:.2f}")
    abl: dict[str, Any] = {}
    removed = abl_total = 0
    for c in [c for c in CONCEPTS if children(c)]:
        labels = _scenes_with(c, True, cfg.n_samples, gen)
        noise = torch.randn(cfg.n_samples, 3, 16, 16, generator=gen)
        j = CONCEPT_INDEX[c]
        try:
            with concept_steering(pipe, saes, latents, c, "ablate", hook=hook, include_descendants=True,
                                  concept_graph=graph, num_inference_steps=cfg.num_inference_steps):
                steered = _generate(pipe, labels, noise, cfg)
            gone = ~steered[:, j]
            desc = [CONCEPT_INDEX[d] for d in graph.descendants(c)]
            desc_gone = float((~steered[:, desc]).all(1).float().mean()) if desc else None
        except ValueError as err:  # no latent for the concept
            gone, desc_gone = torch.zeros(cfg.n_samples, dtype=torch.bool), None
            _log(f"  ablate {c}: {err}")
        abl[c] = {"ablation_success": float(gone.float().mean()), "descendants_removed": desc_gone,
                  "recovered_descendants": sorted(graph.descendants(c))}
        removed += int(gone.sum())
        abl_total += cfg.n_samples
        _log(f"  ablate {c:8s} (+{abl[c]['recovered_descendants']}) removed {abl[c]['ablation_success']:.2f}")
    return {
        "steer_success": changed / total if total else 0.0,
        "off_target_preserved": kept / total if total else 0.0,
        "ablation_success": removed / abl_total if abl_total else 0.0,
        "n_steer_samples": total,
        "n_ablation_samples": abl_total,
        "per_concept": per,
        "ablation": abl,
    }


# --- driver --------------------------------------------------------------------------------------
def run(cfg: Config, artefacts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark; with ``artefacts`` (a dict) it is also filled with what the run built
    (``pipe``, ``hook``, ``saes``, ``steer_saes``, ``latents``, ``latent_graph``, ``assignment``,
    ``concept_graph``) for callers that go on from there, e.g. the demo."""
    from sae_causal_plugin.worlds.diffusion_world import (
        CONCEPTS,
        HOOK,
        detect_concepts,
        load_pretrained,
        sample_scenes,
        true_edges,
    )
    from sae_causal_plugin.graph import recover_timestep_graph
    from sae_causal_plugin.worlds.diffusion_world import timestep_graph as tg

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    pipe = load_pretrained(cfg.weights)
    hook = cfg.hook or HOOK
    ts = tuple(sorted(cfg.timesteps, reverse=True))
    imgs_tr, lab_tr = sample_scenes(cfg.train_images, seed=1000 * cfg.seed + 1)
    imgs_ev, lab_ev = sample_scenes(cfg.eval_images, seed=1000 * cfg.seed + 2)
    acts_tr = collect_activations(pipe, imgs_tr, lab_tr, ts, 1000 * cfg.seed + 3, hook, cfg.batch_images)
    acts_ev = collect_activations(pipe, imgs_ev, lab_ev, ts, 1000 * cfg.seed + 4, hook, cfg.batch_images)
    if cfg.pool:
        acts_tr = {t: pool_images(a, cfg.train_images) for t, a in acts_tr.items()}
        acts_ev = {t: pool_images(a, cfg.eval_images) for t, a in acts_ev.items()}
    tokens = acts_ev[ts[0]].shape[0] // cfg.eval_images
    _log(f"activations: {acts_tr[ts[0]].shape[0]} train / {acts_ev[ts[0]].shape[0]} eval tokens per "
         f"timestep, d_in={acts_tr[ts[0]].shape[1]}  ({time.perf_counter() - start:.0f}s)")

    saes: dict[int, Any] = {}
    sae_stats: dict[int, dict[str, float]] = {}
    for i, t in enumerate(ts):
        saes[t] = train_sae(acts_tr[t], cfg, 1000 * cfg.seed + 10 + i, hook, t)
        with torch.no_grad():
            x = acts_ev[t]
            z = saes[t].encode(x)
            ev = 1 - (saes[t].decode(z) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            sae_stats[t] = {"explained_variance": float(ev), "l0": float((z != 0).sum(1).float().mean())}
        _log(f"SAE t={t}: EV {sae_stats[t]['explained_variance']:.3f}  L0 {sae_stats[t]['l0']:.2f}  "
             f"({time.perf_counter() - start:.0f}s)")

    concepts = detect_concepts(imgs_ev)
    firing = {t: tg.image_firing(saes[t], acts_ev[t], tokens) for t in ts}
    graph = recover_timestep_graph(firing, **cfg.graph)
    assignment = tg.match_latents(firing, concepts, CONCEPTS, min_f1=cfg.min_f1)
    score = tg.score_graph(graph, assignment, true_edges())
    best = tg.best_latents(firing, concepts, CONCEPTS)
    _log(f"timestep graph: {score['n_latent_edges']} latent edges -> concept edges "
         f"{score['concept_edges']}; F1 {score['f1']:.3f} (P {score['precision']:.3f}, R {score['recall']:.3f})")
    latents = concept_latents(assignment)
    cgraph = recovered_concept_graph(score["concept_edges"])
    if cfg.pool:  # image-level SAEs edit the image mean, on every token alike
        from sae_causal_plugin.worlds.diffusion_world.steering import ImageLevelSAE

        hook_tokens = collect_activations(pipe, imgs_ev[:1], lab_ev[:1], ts[:1], 0, hook)[ts[0]].shape[0]
        steer_saes = {t: ImageLevelSAE(s, hook_tokens) for t, s in saes.items()}
    else:
        steer_saes = saes
    steer = steering_eval(pipe, steer_saes, latents, cgraph, cfg, hook)
    seconds = time.perf_counter() - start
    result = {
        "edge_f1": score["f1"],
        "steer_success": steer["steer_success"],
        "off_target_preserved": steer["off_target_preserved"],
        "ablation_success": steer["ablation_success"],
        "n_samples": steer["n_steer_samples"] + steer["n_ablation_samples"],
        "seconds": round(seconds, 1),
        "edge_precision": score["precision"],
        "edge_recall": score["recall"],
        "recovered_concept_edges": [list(e) for e in score["concept_edges"]],
        "missing_edges": [list(e) for e in score["missing"]],
        "wrong_edges": [list(e) for e in score["wrong"]],
        "n_latent_edges": score["n_latent_edges"],
        "n_unassigned_edges": score["n_unassigned_edges"],
        "best_f1": {c: {str(t): round(f, 3) for t, (_, f) in v.items()} for c, v in best.items()},
        "sae": {str(t): v for t, v in sae_stats.items()},
        "steering": steer,
        "targets": TARGETS,
        "met": {},
        "config": {**asdict(cfg), "k": cfg.k if cfg.k else true_mean_l0()},
    }
    result["met"] = {k: result[k] >= v for k, v in TARGETS.items()}
    if artefacts is not None:
        artefacts.update(pipe=pipe, hook=hook, saes=saes, steer_saes=steer_saes, latents=latents,
                         latent_graph=graph, assignment=assignment, concept_graph=cgraph)
    return result


def parse_args(argv: list[str] | None) -> tuple[Config, bool]:
    d = Config()
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench diffusion-world",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--weights", default=None, help="denoiser directory (default: shipped weights)")
    p.add_argument("--hook", default=None, help="hook point (default: the world's HOOK)")
    p.add_argument("--timesteps", type=int, nargs="+", default=list(d.timesteps))
    p.add_argument("--train-images", type=int, default=d.train_images)
    p.add_argument("--eval-images", type=int, default=d.eval_images)
    p.add_argument("--tokens", action="store_true", help="train SAEs on tokens, not image means")
    p.add_argument("--d-sae", type=int, default=d.d_sae)
    p.add_argument("--k", type=float, default=None, help="SAE k (default: the true mean L0)")
    p.add_argument("--sae-steps", type=int, default=d.sae_steps)
    p.add_argument("--min-f1", type=float, default=d.min_f1)
    p.add_argument("--n-samples", type=int, default=d.n_samples, help="generations per concept and test")
    p.add_argument("--num-inference-steps", type=int, default=d.num_inference_steps)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    if len(a.timesteps) < 2:
        p.error("--timesteps needs at least two timesteps")
    for name in ("train_images", "eval_images", "d_sae", "sae_steps", "n_samples", "num_inference_steps"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    cfg = Config(seed=a.seed, weights=a.weights, hook=a.hook, timesteps=tuple(a.timesteps), train_images=a.train_images,
                 eval_images=a.eval_images, pool=not a.tokens, d_sae=a.d_sae, k=a.k, sae_steps=a.sae_steps, min_f1=a.min_f1,
                 n_samples=a.n_samples, num_inference_steps=a.num_inference_steps, threads=a.threads)
    return cfg, a.json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, as_json = parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    result = run(cfg)
    for key in ("edge_f1", "steer_success", "off_target_preserved", "ablation_success"):
        print(f"{key:22s} {result[key]:.3f}   target >= {TARGETS[key]:.2f}  "
              f"{'met' if result['met'][key] else 'NOT met'}")
    print(f"{'n_samples':22s} {result['n_samples']}\n{'seconds':22s} {result['seconds']}")
    if as_json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
