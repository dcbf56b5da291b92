"""The diffusion world's experiment: concept graph across timesteps and concept steering.

:func:`run_experiment` (a :class:`DiffusionWorldConfig` in, a :class:`DiffusionWorldResult` out) on
the shipped diffusion-world denoiser:

1. **Activations.**  Scenes drawn from the world's sampling rule (each present concept with a
   random conditioning strength) are forward-noised to three timesteps (default 901 / 501 / 101,
   noisiest = most abstract; one noise draw per image shared by the timesteps) and the
   denoiser's ``mid_block.attentions.0.hook_delta`` (8x8 tokens, 32 channels: the residual
   update where the concept token enters the UNet, its only entry) is cached through the
   adapter's :func:`~sae_causal_plugin.diffusion.noised_activations`.  By default the SAEs see
   *image-level* activations, the mean over the 64 tokens (``pool=False`` trains on tokens).
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
   * ``off_target_preserved``: fraction of the *steered* samples whose other seven concepts all read
     the same as in the unsteered image.

   A concept without an assigned latent counts as failed on all its samples in ``steer_success``; it
   is not steered, so it has no off-target figure: it is left out of ``off_target_preserved`` and
   listed in ``concepts_without_latent``.  For each concept
   with children, ``n_samples`` scenes containing it and all its descendants are generated with
   the concept ablated with ``include_descendants=True`` (descendants taken from the *recovered*
   concept graph): ``ablation_success`` = fraction where the concept is gone.

Targets (:data:`TARGETS`): edge F1 >= 0.80, steering >= 0.90 / >= 0.90, ablation >= 0.95.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from sae_lens import SAE, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor

from sae_causal_plugin._quiet import quiet_saelens
from sae_causal_plugin.diffusion import DiffusionActivationSource, hook_denoiser, noised_activations
from sae_causal_plugin.diffusion.activations import cached_epochs
from sae_causal_plugin.graph import ConceptGraph, recover_timestep_graph
from sae_causal_plugin.graph.layered import parse_node
from sae_causal_plugin.saes import HierarchicalBatchTopKTrainingSAE, HierarchicalBatchTopKTrainingSAEConfig
from sae_causal_plugin.worlds.diffusion_world import timestep_graph as tg
from sae_causal_plugin.worlds.diffusion_world.concepts import (
    CONCEPT_INDEX,
    CONCEPTS,
    LEVELS,
    all_classes,
    children,
    class_probabilities,
    descendants,
    sample_strengths,
    true_edges,
)
from sae_causal_plugin.worlds.diffusion_world.detectors import detect_concepts
from sae_causal_plugin.worlds.diffusion_world.model import HOOK, DiffusionWorldPipeline, load_pretrained
from sae_causal_plugin.worlds.diffusion_world.scenes import sample_scenes, to_model
from sae_causal_plugin.worlds.diffusion_world.steering import ImageLevelSAE, concept_steering
from sae_causal_plugin._rng import keeps_global_rng

TARGETS = {"edge_f1": 0.80, "steer_success": 0.90, "off_target_preserved": 0.90,
           "ablation_success": 0.95}

#: ``log(message)``: where progress lines go (``None``: nowhere).
Log = Callable[[str], None] | None
#: ``{concept: {timestep: [latent, ...]}}``
ConceptLatents = dict[str, dict[int, list[int]]]


@dataclass
class DiffusionWorldConfig:
    """Everything :func:`run_experiment` needs; the bench's options are built from these fields."""

    seed: int = 0
    """seed of the scenes, the noise, the SAEs and the steering draws"""
    weights: str | None = None
    """denoiser directory (default: the shipped weights)"""
    hook: str | None = None
    """hook point (default: the world's HOOK)"""
    timesteps: tuple[int, ...] = field(default=(901, 501, 101), metadata={"min_items": 2})
    """denoising timesteps, one SAE each (at least two)"""
    train_images: int = field(default=4096, metadata={"positive": True})
    """training scenes"""
    eval_images: int = field(default=2048, metadata={"positive": True})
    """held-out scenes for the graph and the latent naming"""
    pool: bool = field(default=True, metadata={"option": "--tokens",
                                               "help": "train SAEs on tokens, not image means"})
    """SAEs on image-level (token-mean) activations; False: on tokens"""
    d_sae: int = field(default=8, metadata={"positive": True})
    """SAE width (the default is the number of true concepts)"""
    k: float | None = None
    """SAE k (default: the true mean L0)"""
    sae_steps: int = field(default=2000, metadata={"positive": True})
    """SAE training steps"""
    sae_batch: int = field(default=256, metadata={"positive": True})
    """SAE training batch (activations)"""
    sae_lr: float = 3e-3
    """SAE learning rate (cosine-annealed to a tenth)"""
    min_f1: float = 0.8
    """a latent is assigned to a concept when its firing F1 reaches this"""
    n_samples: int = field(default=32, metadata={"positive": True})
    """generations per concept and test"""
    num_inference_steps: int = field(default=20, metadata={"positive": True})
    """DDIM steps of every steered generation"""
    batch_images: int = field(default=256, metadata={"positive": True})
    """scenes per activation batch"""
    threads: int = 1
    """torch CPU threads (the bench sets them; 0 leaves them)"""
    graph: dict[str, Any] = field(default_factory=dict)
    """thresholds of recover_timestep_graph"""
    sae_options: dict[str, Any] = field(default_factory=dict)
    """more HierarchicalBatchTopKTrainingSAEConfig fields"""


@dataclass
class DiffusionWorldResult:
    """Figures, details and what the run built (for callers that go on from there, e.g. the demo)."""

    config: DiffusionWorldConfig
    edge_f1: float
    steer_success: float
    off_target_preserved: float
    ablation_success: float
    n_samples: int
    """steered generations in total"""
    seconds: float
    edge_precision: float
    edge_recall: float
    recovered_concept_edges: list[tuple[str, str]]
    missing_edges: list[tuple[str, str]]
    wrong_edges: list[tuple[str, str]]
    n_latent_edges: int
    n_unassigned_edges: int
    best_f1: dict[str, dict[int, float]]
    """best firing F1 of any latent per concept and timestep (rounded to 3 places)"""
    sae: dict[int, dict[str, float]]
    """``explained_variance`` and ``l0`` of each timestep's SAE on the held-out activations"""
    steering: dict[str, Any]
    """what :func:`steering_eval` returns: totals, ``per_concept`` and ``ablation`` rows"""
    pipe: DiffusionWorldPipeline = field(repr=False)
    hook: str = field(repr=False)
    saes: dict[int, SAE] = field(repr=False)
    steer_saes: dict[int, SAE | ImageLevelSAE] = field(repr=False)
    """the SAEs as steering uses them (image-level SAEs wrapped in ImageLevelSAE)"""
    latents: ConceptLatents = field(repr=False)
    latent_graph: ConceptGraph = field(repr=False)
    """the recovered graph on latents ``"t{timestep}:{latent}"``"""
    assignment: dict[str, tuple[str, float]] = field(repr=False)
    """``{latent node: (concept, F1)}``"""
    concept_graph: ConceptGraph = field(repr=False)
    """the recovered graph collapsed onto concept names"""

    @property
    def met(self) -> dict[str, bool]:
        return {k: getattr(self, k) >= v for k, v in TARGETS.items()}

    def as_dict(self) -> dict[str, Any]:
        """The figures and details as plain JSON types (the bench's ``--json`` line)."""
        return {
            "edge_f1": self.edge_f1,
            "steer_success": self.steer_success,
            "off_target_preserved": self.off_target_preserved,
            "ablation_success": self.ablation_success,
            "n_samples": self.n_samples,
            "seconds": self.seconds,
            "edge_precision": self.edge_precision,
            "edge_recall": self.edge_recall,
            "recovered_concept_edges": [list(e) for e in self.recovered_concept_edges],
            "missing_edges": [list(e) for e in self.missing_edges],
            "wrong_edges": [list(e) for e in self.wrong_edges],
            "n_latent_edges": self.n_latent_edges,
            "n_unassigned_edges": self.n_unassigned_edges,
            "best_f1": {c: {str(t): f for t, f in v.items()} for c, v in self.best_f1.items()},
            "sae": {str(t): v for t, v in self.sae.items()},
            "steering": self.steering,
            "targets": TARGETS,
            "met": self.met,
            "config": {**asdict(self.config), "k": self.config.k if self.config.k else true_mean_l0()},
        }


# --- 1. activations ------------------------------------------------------------------------------
@torch.no_grad()
def collect_activations(
    pipe: DiffusionWorldPipeline, images: Float[Tensor, "n 3 h w"], labels: Bool[Tensor, "n concepts"],
    timesteps: tuple[int, ...], seed: int, hook: str, batch_images: int = 256,
) -> dict[int, Float[Tensor, "rows channels"]]:
    """``{t: [n_images * tokens, channels]}`` of ``hook`` for clean scenes noised to each ``t``."""
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


def pool_images(acts: Float[Tensor, "rows channels"], n_images: int) -> Float[Tensor, "n_images channels"]:
    """Image-level activations: the mean over each image's tokens, ``[n_images, channels]``."""
    return acts.reshape(n_images, -1, acts.shape[-1]).mean(1)


# --- 2. SAEs ---------------------------------------------------------------------------------------
def true_mean_l0() -> float:
    """Expected number of concepts per scene under the world's sampling rule (2.125)."""
    return float((class_probabilities() * all_classes().sum(1).double()).sum())


@keeps_global_rng
def train_sae(acts: Float[Tensor, "rows d_in"], cfg: DiffusionWorldConfig, seed: int, hook: str,
              timestep: int) -> SAE:
    """A hierarchical BatchTopK SAE trained by ``SAETrainer``, returned as a SAELens inference SAE."""
    torch.manual_seed(seed)
    sae = HierarchicalBatchTopKTrainingSAE(
        HierarchicalBatchTopKTrainingSAEConfig(
            d_in=int(acts.shape[1]), d_sae=cfg.d_sae, k=cfg.k if cfg.k else true_mean_l0(),
            **cfg.sae_options
        )
    )
    gen = torch.Generator().manual_seed(seed)
    source = DiffusionActivationSource(
        cached_epochs(acts, (hook, timestep), 16 * cfg.sae_batch, gen), batch_size=cfg.sae_batch,
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
    SAETrainer(trainer_cfg, sae, source).fit()
    with tempfile.TemporaryDirectory() as d:
        sae.save_inference_model(d)
        inference = SAE.load_from_disk(d)
    return inference.eval()


# --- 3. graph --------------------------------------------------------------------------------------
def concept_latents(assignment: dict[str, tuple[str, float]]) -> ConceptLatents:
    """``{concept: {timestep: [latent, ...]}}`` from a latent -> concept assignment."""
    out: ConceptLatents = {}
    for node, (concept, _) in sorted(assignment.items()):
        t, i = parse_node(node)
        out.setdefault(concept, {}).setdefault(t, []).append(i)
    return out


def recovered_concept_graph(concept_edges: list[tuple[str, str]]) -> ConceptGraph:
    """The recovered graph collapsed onto concept names (edges closing a cycle are skipped)."""
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
def scenes_with(concept: str, with_descendants: bool, n: int, gen: torch.Generator) -> Bool[Tensor, "n concepts"]:
    """``n`` valid label vectors containing ``concept``; its descendants all present or all absent."""
    classes = all_classes()
    ok = classes[:, CONCEPT_INDEX[concept]].clone()
    for d in descendants(concept):
        ok &= classes[:, CONCEPT_INDEX[d]] if with_descendants else ~classes[:, CONCEPT_INDEX[d]]
    pool = classes[ok]
    return pool[torch.randint(0, pool.shape[0], (n,), generator=gen)]


@torch.no_grad()
def _generate(pipe: DiffusionWorldPipeline, labels: Tensor, noise: Tensor,
              cfg: DiffusionWorldConfig) -> Bool[Tensor, "n concepts"]:
    return detect_concepts(pipe(labels, num_inference_steps=cfg.num_inference_steps, latents=noise))


def steering_eval(pipe: DiffusionWorldPipeline, saes: dict[int, Any], latents: ConceptLatents,
                  graph: ConceptGraph, cfg: DiffusionWorldConfig, hook: str, log: Log = None) -> dict[str, Any]:
    """Steering (switch a concept off) and ablation with descendants; see the module docstring."""
    say = log or (lambda _: None)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    per: dict[str, Any] = {}
    changed = kept = total = steered_total = 0
    for c in [c for c in CONCEPTS if LEVELS[c] > 0]:
        labels = scenes_with(c, False, cfg.n_samples, gen)
        noise = torch.randn(cfg.n_samples, 3, 16, 16, generator=gen)
        base = _generate(pipe, labels, noise, cfg)
        if not any(latents.get(c, {}).values()):
            per[c] = {"steer_success": 0.0, "off_target_preserved": None, "note": "no latent"}
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
        steered_total += cfg.n_samples
        say(f"  steer {c:8s} changed {per[c]['steer_success']:.2f}  others kept {per[c]['off_target_preserved']:.2f}")
    abl: dict[str, Any] = {}
    removed = abl_total = 0
    for c in [c for c in CONCEPTS if children(c)]:
        labels = scenes_with(c, True, cfg.n_samples, gen)
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
            say(f"  ablate {c}: {err}")
        abl[c] = {"ablation_success": float(gone.float().mean()), "descendants_removed": desc_gone,
                  "recovered_descendants": sorted(graph.descendants(c))}
        removed += int(gone.sum())
        abl_total += cfg.n_samples
        say(f"  ablate {c:8s} (+{abl[c]['recovered_descendants']}) removed {abl[c]['ablation_success']:.2f}")
    return {
        "steer_success": changed / total if total else 0.0,
        "off_target_preserved": kept / steered_total if steered_total else 0.0,
        "ablation_success": removed / abl_total if abl_total else 0.0,
        "n_steer_samples": total,
        "n_steered_samples": steered_total,
        "concepts_without_latent": sorted(c for c, row in per.items() if row.get("note") == "no latent"),
        "n_ablation_samples": abl_total,
        "per_concept": per,
        "ablation": abl,
    }


# --- driver --------------------------------------------------------------------------------------
def run_experiment(cfg: DiffusionWorldConfig, log: Log = None) -> DiffusionWorldResult:
    """The whole experiment (see the module docstring); progress lines go to ``log``.

    The caller's torch RNG state is left as it was (the run seeds its own draws from ``cfg.seed``), and
    SAELens shows no progress bar and only errors during the run (:func:`~sae_causal_plugin._quiet.quiet_saelens`).
    """
    with torch.random.fork_rng(devices=[]), quiet_saelens():
        return _run(cfg, log or (lambda _: None))


def _run(cfg: DiffusionWorldConfig, say: Callable[[str], None]) -> DiffusionWorldResult:
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
    say(f"activations: {acts_tr[ts[0]].shape[0]} train / {acts_ev[ts[0]].shape[0]} eval tokens per "
        f"timestep, d_in={acts_tr[ts[0]].shape[1]}  ({time.perf_counter() - start:.0f}s)")

    saes: dict[int, SAE] = {}
    sae_stats: dict[int, dict[str, float]] = {}
    for i, t in enumerate(ts):
        saes[t] = train_sae(acts_tr[t], cfg, 1000 * cfg.seed + 10 + i, hook, t)
        with torch.no_grad():
            x = acts_ev[t]
            z = saes[t].encode(x)
            ev = 1 - (saes[t].decode(z) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            sae_stats[t] = {"explained_variance": float(ev), "l0": float((z != 0).sum(1).float().mean())}
        say(f"SAE t={t}: EV {sae_stats[t]['explained_variance']:.3f}  L0 {sae_stats[t]['l0']:.2f}  "
            f"({time.perf_counter() - start:.0f}s)")

    concepts = detect_concepts(imgs_ev)
    firing = {t: tg.image_firing(saes[t], acts_ev[t], tokens) for t in ts}
    graph = recover_timestep_graph(firing, **cfg.graph)
    assignment = tg.match_latents(firing, concepts, CONCEPTS, min_f1=cfg.min_f1)
    score = tg.score_graph(graph, assignment, true_edges())
    best = tg.best_latents(firing, concepts, CONCEPTS)
    say(f"timestep graph: {score['n_latent_edges']} latent edges -> concept edges "
        f"{score['concept_edges']}; F1 {score['f1']:.3f} (P {score['precision']:.3f}, R {score['recall']:.3f})")
    latents = concept_latents(assignment)
    cgraph = recovered_concept_graph(score["concept_edges"])
    steer_saes: dict[int, SAE | ImageLevelSAE]
    if cfg.pool:  # image-level SAEs edit the image mean, on every token alike
        hook_tokens = collect_activations(pipe, imgs_ev[:1], lab_ev[:1], ts[:1], 0, hook)[ts[0]].shape[0]
        steer_saes = {t: ImageLevelSAE(s, hook_tokens) for t, s in saes.items()}
    else:
        steer_saes = dict(saes)  # the same SAEs
    steer = steering_eval(pipe, steer_saes, latents, cgraph, cfg, hook, say)
    seconds = time.perf_counter() - start
    return DiffusionWorldResult(
        config=cfg,
        edge_f1=score["f1"],
        steer_success=steer["steer_success"],
        off_target_preserved=steer["off_target_preserved"],
        ablation_success=steer["ablation_success"],
        n_samples=steer["n_steer_samples"] + steer["n_ablation_samples"],
        seconds=round(seconds, 1),
        edge_precision=score["precision"],
        edge_recall=score["recall"],
        recovered_concept_edges=[tuple(e) for e in score["concept_edges"]],
        missing_edges=[tuple(e) for e in score["missing"]],
        wrong_edges=[tuple(e) for e in score["wrong"]],
        n_latent_edges=score["n_latent_edges"],
        n_unassigned_edges=score["n_unassigned_edges"],
        best_f1={c: {t: round(f, 3) for t, (_, f) in v.items()} for c, v in best.items()},
        sae=sae_stats,
        steering=steer,
        pipe=pipe, hook=hook, saes=saes, steer_saes=steer_saes, latents=latents, latent_graph=graph,
        assignment=assignment, concept_graph=cgraph,
    )


__all__ = [
    "TARGETS",
    "DiffusionWorldConfig",
    "DiffusionWorldResult",
    "collect_activations",
    "concept_latents",
    "pool_images",
    "recovered_concept_graph",
    "run_experiment",
    "scenes_with",
    "steering_eval",
    "train_sae",
    "true_mean_l0",
]
