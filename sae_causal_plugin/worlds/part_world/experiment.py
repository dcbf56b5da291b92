"""The part-whole world's experiment: per-token SAEs at three timesteps and their spatial concept graph.

:func:`run_experiment` (a :class:`PartWorldConfig` in, a :class:`PartWorldResult` out):

1. **Activations.**  Scenes from the world's sampling rule (a conditioning strength ``U[0.6, 1]``
   per present concept) are forward-noised to three timesteps (default 901 / 501 / 101, noisiest =
   coarsest level; one noise draw per image shared by the timesteps), and the tokens of a 16x16
   cross-attention block (default :data:`HOOK`) are cached through the adapter's
   :func:`~sae_causal_plugin.diffusion.noised_activations`: one row per token.
2. **SAEs.**  One SAE per timestep, trained by SAELens's ``SAETrainer`` on a
   :class:`~sae_causal_plugin.diffusion.DiffusionActivationSource` of the tokens, then saved and
   reloaded as a stock SAELens inference SAE.  ``architecture="hierarchical"``: our
   ``HierarchicalBatchTopKTrainingSAE``; ``"batchtopk"``: SAELens's ``BatchTopKTrainingSAE``
   (the baseline, through the same code).
3. **Graph.**  On held-out scenes, which latent fires on which token; the spatial timestep graph
   (:func:`~sae_causal_plugin.graph.spatial.recover_spatial_timestep_graph`: token lift, spatial
   containment, minimal parent sets; adjacent timesteps).  Each latent is named by the concept
   whose true mask its active tokens overlap best (intersection over union, pooled over images;
   named when the IoU reaches ``min_iou``), and the latent edges are collapsed onto concept
   names and scored against the true part-whole DAG (edge F1).  ``heatmap_iou`` is the mean over
   the 22 concepts of the best latent's IoU (0 for a concept no latent overlaps).
   ``concept_linearity`` reports, per timestep, how linearly the true concepts sit in the tokens
   (least-squares concept directions: R^2, max |cos|, condition number), apart from any dictionary.
4. **Steering** (``steer=True``): part removal, part addition at a chosen place and whole-with-parts
   removal through the latents named after each concept, each timestep's SAE on its own window
   of the 20-step schedule (:mod:`sae_causal_plugin.worlds.part_world.steering_eval`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin._quiet import quiet_saelens
from sae_causal_plugin.diffusion import hook_denoiser, noised_activations
from sae_causal_plugin.diffusion.token_graph import (
    TokenSAESpec, explained_variance, graph_heatmaps, token_codes, token_firing, train_token_sae,
)
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.concept_directions import concept_directions
from sae_causal_plugin.graph.layered import parse_node
from sae_causal_plugin.graph.spatial import recover_spatial_timestep_graph
from sae_causal_plugin.worlds.part_world.concepts import CONCEPTS, SIZE, Layout, true_edges
from sae_causal_plugin.worlds.part_world.probe import probe_firing
from sae_causal_plugin.worlds.part_world.model import PartWorldPipeline, load_pretrained
from sae_causal_plugin.worlds.part_world.scenes import concept_masks, sample_scenes, to_model
from sae_causal_plugin.worlds.part_world.steering_eval import steering_eval
from sae_causal_plugin.worlds.part_world.train import sample_strengths

#: the default reading point: the output of the last 16x16 cross-attention block (the linear-probe ceiling,
#: :mod:`.probe`, is edge F1 0.87 there against 0.76 at ``up_blocks.1.attentions.0.hook_delta``).
HOOK = "up_blocks.1.attentions.1.hook_out"
TARGETS = {"edge_f1": 0.85, "heatmap_iou": 0.70}
Log = Callable[[str], None] | None


@dataclass
class PartWorldConfig:
    """Everything :func:`run_experiment` needs."""

    seed: int = 0
    """seed of the scenes, the noise and the SAEs"""
    weights: str | None = None
    """denoiser directory (default: the shipped weights)"""
    hook: str = HOOK
    """hook point the SAEs read (tokens of a 16x16 block)"""
    timesteps: tuple[int, ...] = field(default=(901, 501, 101), metadata={"min_items": 2})
    """denoising timesteps, one SAE each, noisiest first"""
    architecture: Literal["hierarchical", "batchtopk"] = "hierarchical"
    """our hierarchical BatchTopK SAE, or SAELens's BatchTopK (the baseline)"""
    train_images: int = field(default=1024, metadata={"positive": True})
    """training scenes (256 tokens each)"""
    eval_images: int = field(default=512, metadata={"positive": True})
    """held-out scenes for the graph and the naming"""
    d_sae: int = field(default=32, metadata={"positive": True})
    """SAE width per timestep"""
    k: float = 2.0
    """BatchTopK k (mean active latents per token)"""
    sae_steps: int = field(default=1500, metadata={"positive": True})
    """SAE training steps"""
    sae_batch: int = field(default=512, metadata={"positive": True})
    """SAE training batch (tokens)"""
    sae_lr: float = 3e-3
    """SAE learning rate (cosine-annealed to a tenth)"""
    min_iou: float = 0.5
    """a latent is named after a concept when its token IoU with the concept's mask reaches this"""
    probe: bool = field(default=True, metadata={"option": "--no-probe", "help": "skip the probe ceiling"})
    """also score the graph with linear concept probes in place of the SAEs (the supervised ceiling)"""
    probe_steps: int = field(default=600, metadata={"positive": True})
    """Adam steps of each level's probe fit"""
    steer: bool = field(default=True, metadata={"option": "--no-steer", "help": "skip the steering tests"})
    """run the steering tests (step 4)"""
    n_samples: int = field(default=24, metadata={"positive": True})
    """generations per steering test and concept"""
    steer_windows: Literal["nearest", "all"] = "nearest"
    """steps each timestep's SAE edits: those nearest its timestep, or all"""
    add_scale: float = 1.0
    """part addition: multiple of each latent's mean firing activation"""
    num_inference_steps: int = field(default=20, metadata={"positive": True})
    """DDIM steps of every steered generation"""
    batch_images: int = field(default=128, metadata={"positive": True})
    """scenes per activation batch"""
    threads: int = 1
    """torch CPU threads (the bench sets them; 0 leaves them)"""
    graph: dict[str, Any] = field(default_factory=dict)
    """thresholds of recover_spatial_timestep_graph"""
    sae_options: dict[str, Any] = field(default_factory=dict)
    """more SAE config fields"""


@dataclass
class PartWorldResult:
    config: PartWorldConfig
    edge_f1: float
    edge_precision: float
    edge_recall: float
    heatmap_iou: float
    per_concept_iou: dict[str, float]
    concepts_without_latent: list[str]
    recovered_concept_edges: list[tuple[str, str]]
    missing_edges: list[tuple[str, str]]
    wrong_edges: list[tuple[str, str]]
    sae: dict[int, dict[str, float]]
    probe: dict[str, Any]
    """the supervised ceiling (:mod:`.probe`): edge F1 / precision / recall and heat-map IoU of linear
    concept probes through the same graph rules (empty without ``probe``)"""
    steering: dict[str, Any]
    """what steering_eval returns (empty without steering)"""
    concept_linearity: dict[int, dict[str, Any]]
    """per timestep, how linearly the true concepts sit in the hook's tokens (:func:`concept_linearity`)"""
    seconds: float
    latent_graph: ConceptGraph = field(repr=False)
    assignment: dict[str, tuple[str, float]] = field(repr=False)
    saes: dict[int, Any] = field(repr=False)
    heatmaps: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """every graph node's mean heat map ``[16, 16]`` over the held-out scenes it fires in"""

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("latent_graph", "assignment", "saes", "config", "heatmaps")}
        out["sae"] = {str(t): v for t, v in self.sae.items()}
        out["concept_linearity"] = {str(t): v for t, v in self.concept_linearity.items()}
        out["config"] = asdict(self.config)
        out["probe_edge_f1"] = self.probe.get("edge_f1")
        out["n_latent_edges"] = len(self.latent_graph.edges)
        out["assignment"] = {n: [c, round(v, 3)] for n, (c, v) in sorted(self.assignment.items())}
        for key in ("part_removal_success", "off_target_preserved", "part_addition_success",
                    "whole_removal_success", "n_samples", "outside_changed"):
            out[key] = self.steering.get(key)
        return out


@torch.no_grad()
def collect_tokens(pipe: PartWorldPipeline, images: Tensor, labels: Tensor, timesteps: tuple[int, ...], seed: int,
                   hook: str, batch_images: int = 128) -> dict[int, Float[Tensor, "rows channels"]]:
    """``{t: [n_images * 256, channels]}``: the hook's tokens for clean scenes noised to each ``t``."""
    strengths = sample_strengths(labels, torch.Generator().manual_seed(seed))
    batches = ({"latents": to_model(images[s : s + batch_images]),
                "encoder_hidden_states": pipe.encode_labels(strengths[s : s + batch_images])}
               for s in range(0, images.shape[0], batch_images))
    chunks = noised_activations(hook_denoiser(pipe.unet), pipe.scheduler, batches, hook, list(timesteps), seed=seed)
    parts: dict[int, list[Tensor]] = {t: [] for t in timesteps}
    for chunk in chunks:
        for t in timesteps:
            parts[t].append(chunk[hook, t])
    return {t: torch.cat(v) for t, v in parts.items()}


def sae_spec(cfg: PartWorldConfig) -> TokenSAESpec:
    """The config's SAE fields as the generic per-token SAE spec."""
    return TokenSAESpec(architecture=cfg.architecture, d_sae=cfg.d_sae, k=cfg.k, steps=cfg.sae_steps,
                        batch=cfg.sae_batch, lr=cfg.sae_lr, options=dict(cfg.sae_options))


def latent_concept_iou(fired: Bool[Tensor, "n tokens d"], masks: Bool[Tensor, "n tokens c"]) -> Float[Tensor, "d c"]:
    """Token IoU of every latent's active tokens with every concept's mask, pooled over images."""
    f = fired.flatten(0, 1).float()
    m = masks.flatten(0, 1).float()
    inter = (f.T @ m).double()
    union = f.sum(0).double()[:, None] + m.sum(0).double()[None] - inter
    return inter / union.clamp(min=1)


def _edge_scores(recovered: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    tp = len(recovered & truth)
    p = tp / len(recovered) if recovered else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def token_masks(layout: Layout) -> Bool[Tensor, "n tokens c"]:
    """The true concept masks as ``[n, 256, 22]`` tokens (row-major, as the hook's tokens)."""
    return concept_masks(layout).flatten(2).transpose(1, 2)


def probe_ceiling(acts: dict[int, Tensor], masks: Bool[Tensor, "n tokens c"], n_train: int,
                  cfg: PartWorldConfig) -> dict[str, Any]:
    """Edge F1 and heat-map IoU with linear concept probes as the dictionary (:mod:`.probe`)."""
    firing, names = probe_firing(acts, masks, n_train, seed=cfg.seed, steps=cfg.probe_steps)
    graph = recover_spatial_timestep_graph(firing, **cfg.graph)
    recovered = {(names[a], names[b]) for a, b in graph.edges if names[a] != names[b]}
    p, r, f1 = _edge_scores(recovered, true_edges())
    held = masks[n_train:]
    own = 0.0  # each probe against its own concept's mask
    for t, f in firing.items():
        cols = [CONCEPTS.index(names[f"t{t}:{j}"]) for j in range(f.shape[-1])]
        own += float(latent_concept_iou(f, held)[:, cols].diagonal().sum())
    return {"edge_f1": f1, "edge_precision": p, "edge_recall": r, "heatmap_iou": own / len(CONCEPTS),
            "wrong_edges": sorted(recovered - true_edges()), "missing_edges": sorted(true_edges() - recovered)}


def concept_linearity(tokens: dict[int, Tensor], masks: Bool[Tensor, "n tokens c"]) -> dict[int, dict[str, Any]]:
    """Per timestep, the least-squares concept directions' figures of ``tokens`` (one row per token of
    ``masks``; :mod:`sae_causal_plugin.graph.concept_directions`: ``r2``, ``max_abs_cos``, ``condition``),
    over the concepts that vary there: how far the reading point itself is from separable concepts."""
    present = masks.flatten(0, 1)
    varies = present.any(0) & ~present.all(0)
    return {t: concept_directions(a, present[:, varies]).figures() for t, a in tokens.items()}


def run_experiment(cfg: PartWorldConfig | None = None, log: Log = None,
                   examples: list[dict[str, Any]] | None = None) -> PartWorldResult:
    """Steps 1-4 of the module docstring; ``examples`` collects steering pictures (``steering_eval``)."""
    cfg = cfg or PartWorldConfig()
    say = log or (lambda _: None)
    start = time.perf_counter()
    if not 0.0 <= cfg.min_iou <= 1.0:
        raise ValueError(f"min_iou must lie in [0, 1], got {cfg.min_iou}")
    pipe = load_pretrained(cfg.weights)
    hook_denoiser(pipe.unet).check_hook_name(cfg.hook)
    n_train, n_eval = cfg.train_images, cfg.eval_images
    images, layout = sample_scenes(n_train + n_eval, seed=cfg.seed)
    say(f"caching {cfg.hook} tokens of {n_train + n_eval} scenes at t = {list(cfg.timesteps)}")
    acts = collect_tokens(pipe, images, layout.labels, cfg.timesteps, cfg.seed, cfg.hook, cfg.batch_images)
    split = n_train * 256
    spec = sae_spec(cfg)
    saes: dict[int, Any] = {}
    sae_stats: dict[int, dict[str, float]] = {}
    fired: dict[int, Tensor] = {}
    values: dict[tuple[int, int], float] = {}
    with quiet_saelens():
        for i, t in enumerate(cfg.timesteps):
            say(f"training the {cfg.architecture} SAE at t={t}")
            saes[t] = train_token_sae(acts[t][:split], (cfg.hook, t), spec, seed=cfg.seed * 100 + i)
            held = acts[t][split:]
            code = token_codes(saes[t], held)
            ev = explained_variance(saes[t], held, code)
            fired[t] = (code > 0).view(n_eval, -1, code.shape[-1])
            mean = code.sum(0) / (code > 0).sum(0).clamp(min=1)
            values.update({(t, j): float(v) for j, v in enumerate(mean.tolist())})
            sae_stats[t] = {"explained_variance": round(ev, 4), "l0": round(float(fired[t].sum(-1).float().mean()), 3)}
    masks = token_masks(layout[n_train:])
    linearity = concept_linearity({t: a[split:] for t, a in acts.items()}, masks)
    graph = recover_spatial_timestep_graph(fired, **cfg.graph)
    heatmaps = graph_heatmaps(fired, (SIZE, SIZE), graph)
    assignment: dict[str, tuple[str, float]] = {}
    best = torch.zeros(len(CONCEPTS), dtype=torch.float64)
    for t in cfg.timesteps:
        iou = latent_concept_iou(fired[t], masks)
        best = torch.maximum(best, iou.max(0).values)
        for j in range(iou.shape[0]):
            c = int(iou[j].argmax())
            if float(iou[j, c]) >= cfg.min_iou:
                assignment[f"t{t}:{j}"] = (CONCEPTS[c], float(iou[j, c]))
    recovered = {(assignment[a][0], assignment[b][0]) for a, b in graph.edges
                 if a in assignment and b in assignment and assignment[a][0] != assignment[b][0]}
    truth = true_edges()
    p, r, f1 = _edge_scores(recovered, truth)
    named = {c for c, _ in assignment.values()}
    ceiling = probe_ceiling(acts, token_masks(layout), n_train, cfg) if cfg.probe else {}
    steering: dict[str, Any] = {}
    if cfg.steer:
        concept_graph = ConceptGraph()
        for c in CONCEPTS:
            concept_graph.add_concept(c)
        for a, b in sorted(recovered):
            try:
                concept_graph.add_edge(a, b)
            except ValueError:
                pass  # would close a cycle
        latents: dict[str, dict[int, list[int]]] = {}
        for node, (concept, _) in sorted(assignment.items()):
            t, j = parse_node(node)
            latents.setdefault(concept, {}).setdefault(t, []).append(j)
        say("steering: part removal, part addition, whole removal")
        steering = steering_eval(pipe, saes, latents, values, concept_graph, hook=cfg.hook, n_samples=cfg.n_samples,
                                 num_inference_steps=cfg.num_inference_steps, add_scale=cfg.add_scale,
                                 seed=cfg.seed + 7, windows=cfg.steer_windows, examples=examples)
    return PartWorldResult(
        config=cfg, edge_f1=f1, edge_precision=p, edge_recall=r, heatmap_iou=float(best.mean()),
        per_concept_iou={c: round(float(best[i]), 3) for i, c in enumerate(CONCEPTS)},
        concepts_without_latent=[c for c in CONCEPTS if c not in named],
        recovered_concept_edges=sorted(recovered), missing_edges=sorted(truth - recovered),
        wrong_edges=sorted(recovered - truth), sae=sae_stats, probe=ceiling, steering=steering, concept_linearity=linearity, seconds=round(time.perf_counter() - start, 1),
        latent_graph=graph, assignment=assignment, saes=saes, heatmaps=heatmaps)


__all__ = ["HOOK", "PartWorldConfig", "PartWorldResult", "TARGETS", "collect_tokens", "concept_linearity", "latent_concept_iou",
           "probe_ceiling", "run_experiment", "sae_spec", "token_codes", "token_firing", "token_masks", "train_token_sae"]
