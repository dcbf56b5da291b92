"""Per-token SAEs at several timesteps of a diffusers pipeline, and their spatial concept graph.

The paper's diffusion workflow for any text-to-image pipeline (SD v1.4 with :data:`~.sd14.SD14`,
or the tiny SD-shaped pipeline of :func:`~.sd14.tiny_sd14_pipeline` in the tests):

1. :func:`generated_tokens`: generate from prompts once and cache the tokens of the chosen hooks at
   chosen timesteps (conditional CFG rows), ``{(hook, t): [n_images * h * w, channels]}``.
2. :func:`train_token_sae`: one SAE per timestep, trained by SAELens's ``SAETrainer`` on a
   :class:`~.activations.DiffusionActivationSource`, returned as a stock SAELens inference SAE.
3. :func:`token_concept_graph`: per hook, the held-out firing of every SAE, the spatial timestep graph
   (:func:`~sae_causal_plugin.graph.spatial.recover_spatial_timestep_graph`) and each node's mean
   heat map over the images it fires in.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from sae_lens import SAE, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor

from sae_causal_plugin._quiet import quiet_saelens
from sae_causal_plugin._rng import keeps_global_rng
from sae_causal_plugin.diffusion.activations import DiffusionActivationSource, cached_epochs
from sae_causal_plugin.diffusion.hooked import to_tokens
from sae_causal_plugin.diffusion.pipeline import HookedDiffusionPipeline, StepWindow
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import node_id
from sae_causal_plugin.graph.spatial import recover_spatial_timestep_graph
from sae_causal_plugin.saes import HierarchicalBatchTopKTrainingSAE, HierarchicalBatchTopKTrainingSAEConfig


@dataclass
class TokenSAESpec:
    """How each timestep's per-token SAE is trained."""

    architecture: Literal["hierarchical", "batchtopk"] = "hierarchical"
    d_sae: int = 32
    k: float = 2.0
    steps: int = 1500
    batch: int = 512
    lr: float = 3e-3
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ("hierarchical", "batchtopk"):
            raise ValueError(f"architecture must be 'hierarchical' or 'batchtopk', got {self.architecture!r}")
        for name in ("d_sae", "steps", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.k <= self.d_sae:
            raise ValueError(f"k must lie in (0, d_sae={self.d_sae}], got {self.k}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def nearest_schedule_timesteps(scheduler: Any, num_inference_steps: int, wanted: Sequence[int]) -> list[int]:
    """The timesteps of the ``num_inference_steps`` schedule nearest to ``wanted`` (899 -> 901, ...).

    ``ValueError`` for a wanted timestep outside ``[0, num_train_timesteps)``; the scheduler is not changed.
    """
    n_train = int(scheduler.config.num_train_timesteps)
    bad = [t for t in wanted if not 0 <= int(t) < n_train]
    if bad:
        raise ValueError(f"timesteps {bad} lie outside the scheduler's range [0, {n_train - 1}]")
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(num_inference_steps)
    schedule = [int(t) for t in probe.timesteps]
    chosen = [min(schedule, key=lambda s: (abs(s - int(t)), s)) for t in wanted]
    if len(set(chosen)) < len(chosen):
        raise ValueError(f"timesteps {list(wanted)} fall on the same steps {chosen} of a {num_inference_steps}-step "
                         "schedule; use more num_inference_steps or timesteps further apart")
    return chosen


def check_finite(acts: Tensor, where: str) -> None:
    """``ValueError`` when cached activations hold NaN or Inf (before any SAE sees them)."""
    bad = int((~torch.isfinite(acts)).any(-1).sum())
    if bad:
        raise ValueError(f"the cached activations of {where} hold NaN/Inf in {bad} of {acts.shape[0]} rows; "
                         "check the model's dtype (float16 overflows) or drop those generations")


@keeps_global_rng
def train_token_sae(acts: Float[Tensor, "rows d_in"], key: tuple[str, int], spec: TokenSAESpec, seed: int = 0) -> Any:
    """One SAE trained by ``SAETrainer`` on the tokens of ``key = (hook, timestep)``; a SAELens inference SAE."""
    check_finite(acts, f"{key[0]} at t={key[1]}")
    torch.manual_seed(seed)
    common = dict(d_in=int(acts.shape[1]), d_sae=spec.d_sae, k=spec.k, **spec.options)
    if spec.architecture == "hierarchical":
        sae = HierarchicalBatchTopKTrainingSAE(HierarchicalBatchTopKTrainingSAEConfig(**common))
    else:
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**common))
    source = DiffusionActivationSource(cached_epochs(acts, key, 16 * spec.batch, torch.Generator().manual_seed(seed)),
                                       batch_size=spec.batch, mix_fraction=0.5)
    source.check_sae(sae)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=spec.steps * spec.batch, train_batch_size_samples=spec.batch,
        lr=spec.lr, lr_end=spec.lr / 10, lr_scheduler_name="cosineannealing", device=str(acts.device),
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=10,
        dead_feature_window=200, feature_sampling_window=500)
    with quiet_saelens():
        SAETrainer(trainer_cfg, sae, source).fit()
    with tempfile.TemporaryDirectory() as d:
        sae.save_inference_model(d)
        return SAE.load_from_disk(d, device=str(acts.device)).eval()


@torch.no_grad()
def token_codes(sae: Any, acts: Float[Tensor, "rows d"], rows: int = 65536) -> Float[Tensor, "rows d_sae"]:
    """The SAE's code of every token row, encoded ``rows`` at a time (``ValueError`` on a ``d_in`` mismatch)."""
    d_in = int(sae.cfg.d_in)
    if acts.shape[-1] != d_in:
        raise ValueError(f"the SAE reads d_in={d_in} channels but the activations have {acts.shape[-1]}; "
                         "train or load an SAE for this hook")
    return torch.cat([sae.encode(acts[s : s + rows].to(sae.W_enc.dtype)) for s in range(0, acts.shape[0], rows)])


def token_firing(sae: Any, acts: Float[Tensor, "rows d"], n_images: int, rows: int = 65536
                 ) -> Bool[Tensor, "n tokens d_sae"]:
    """Which latent fires on which token, ``[n_images, tokens, d_sae]``."""
    code = token_codes(sae, acts, rows)
    return (code > 0).view(n_images, -1, code.shape[-1])


def mean_heatmaps(fired: Bool[Tensor, "n tokens d"], grid: tuple[int, int]) -> Float[Tensor, "d h w"]:
    """Each latent's firing map averaged over the images it fires in (zeros for a latent that never fires)."""
    h, w = grid
    if fired.shape[1] != h * w:
        raise ValueError(f"firing has {fired.shape[1]} tokens per image, the grid {grid} has {h * w}")
    f = fired.float()
    images = (f.sum(1) > 0).float()  # [n, d]
    total = torch.einsum("ntd,nd->dt", f, images)
    return (total / images.sum(0).clamp(min=1)[:, None]).view(-1, h, w)


def graph_heatmaps(fired: dict[int, Bool[Tensor, "n tokens d"]], grid: tuple[int, int], graph: ConceptGraph
                   ) -> dict[str, Float[Tensor, "h w"]]:
    """The mean heat map (:func:`mean_heatmaps`) of every latent ``t{timestep}:{j}`` that is a node of ``graph``."""
    maps: dict[str, Tensor] = {}
    for t, f in fired.items():
        m = mean_heatmaps(f, grid)
        maps.update({node_id(t, j, prefix="t"): m[j] for j in range(m.shape[0]) if node_id(t, j, prefix="t") in graph})
    return maps


@torch.no_grad()
def explained_variance(sae: Any, acts: Float[Tensor, "rows d"], codes: Tensor | None = None) -> float:
    """Share of the variance of ``acts`` around their mean that the SAE's reconstruction explains
    (``codes``: the rows' codes from :func:`token_codes`, to decode instead of encoding again)."""
    if codes is not None and codes.shape[0] != acts.shape[0]:
        raise ValueError(f"codes has {codes.shape[0]} rows but acts has {acts.shape[0]}; pass the codes of these rows")
    recon = (sae(acts.to(sae.W_enc.dtype)) if codes is None else sae.decode(codes)).to(acts.dtype)
    return 1 - float((acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum().clamp(min=1e-12))


@torch.no_grad()
def generated_tokens(pipeline: HookedDiffusionPipeline, prompts: Sequence[str], hooks: Sequence[str],
                     timesteps: Sequence[int], *, num_inference_steps: int, guidance_scale: float = 7.5, seed: int = 0,
                     batch: int = 4, **pipe_kwargs: Any
                     ) -> tuple[dict[tuple[str, int], Float[Tensor, "rows channels"]], dict[str, tuple[int, int]]]:
    """Generate from ``prompts`` once and cache every hook's tokens (conditional rows) at ``timesteps``.

    Returns ``({(hook, t): [len(prompts) * h * w, channels]}, {hook: (h, w)})``.
    """
    if not prompts:
        raise ValueError("prompts: give at least one prompt")
    if isinstance(hooks, str) or not hooks:
        raise ValueError(f"hooks: give a list of hook names, e.g. [{hooks!r}]")
    for hook in hooks:
        pipeline.denoiser.check_hook_name(hook)
    ts = [int(t) for t in timesteps]
    keys = [(hook, t) for hook in hooks for t in ts]
    parts: dict[tuple[str, int], list[Tensor]] = {key: [] for key in keys}
    grids: dict[str, tuple[int, int]] = {}
    for s in range(0, len(prompts), batch):
        _, cache = pipeline.run_with_cache(
            prompt=list(prompts[s : s + batch]), num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed + s), output_type="latent",
            names_filter=list(hooks), timesteps=StepWindow.at(ts), cfg="cond", **pipe_kwargs)
        missing = sorted({t for hook, t in keys if (hook, t) not in cache})
        if missing:
            raise ValueError(f"generation never reached t={missing}; the schedule's timesteps are "
                             f"{sorted({k[1] for k in cache})}")
        for hook, t in keys:
            x = cache[hook, t]
            if x.ndim != 4:
                raise ValueError(f"{hook} gives {tuple(x.shape)} token sequences, not a (B, C, H, W) feature map; "
                                 "a spatial graph needs a spatial hook")
            grids.setdefault(hook, (int(x.shape[-2]), int(x.shape[-1])))
            parts[hook, t].append(to_tokens(x).float().cpu())
    acts = {key: torch.cat(v) for key, v in parts.items()}
    for (hook, t), a in acts.items():
        check_finite(a, f"{hook} at t={t}")
    return acts, grids


@dataclass
class TokenGraphResult:
    graph: ConceptGraph
    """fine -> coarse latent graph, nodes ``t{timestep}:{latent}``"""
    saes: dict[int, Any]
    heatmaps: dict[str, Float[Tensor, "h w"]]
    """every graph node's mean heat map over the held-out images it fires in"""
    explained_variance: dict[int, float]
    grid: tuple[int, int]


def token_concept_graph(pipeline: HookedDiffusionPipeline, prompts: Sequence[str], heldout: Sequence[str],
                        hooks: Sequence[str], timesteps: Sequence[int], spec: TokenSAESpec, *, num_inference_steps: int,
                        guidance_scale: float = 7.5, seed: int = 0, batch: int = 4, graph: dict[str, Any] | None = None
                        ) -> dict[str, TokenGraphResult]:
    """Steps 1-3 of the module docstring for every hook: SAEs on ``prompts``, graph and heat maps on
    ``heldout``; each prompt set is generated once for all hooks."""
    ts = nearest_schedule_timesteps(pipeline.scheduler, num_inference_steps, timesteps)
    common = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, batch=batch)
    train, grids = generated_tokens(pipeline, prompts, hooks, ts, seed=seed, **common)
    held, _ = generated_tokens(pipeline, heldout, hooks, ts, seed=seed + len(prompts), **common)
    results = {}
    for hook in hooks:
        saes, fired, ev = {}, {}, {}
        for i, t in enumerate(ts):
            saes[t] = train_token_sae(train[hook, t], (hook, t), spec, seed=seed * 100 + i)
            code = token_codes(saes[t], held[hook, t])
            ev[t] = explained_variance(saes[t], held[hook, t], code)
            fired[t] = (code > 0).view(len(heldout), -1, code.shape[-1])
        g = recover_spatial_timestep_graph(fired, **(graph or {}))
        results[hook] = TokenGraphResult(graph=g, saes=saes, heatmaps=graph_heatmaps(fired, grids[hook], g),
                                         explained_variance=ev, grid=grids[hook])
    return results


__all__ = ["TokenGraphResult", "TokenSAESpec", "check_finite", "explained_variance", "generated_tokens",
           "graph_heatmaps", "mean_heatmaps",
           "nearest_schedule_timesteps", "token_codes", "token_concept_graph", "token_firing", "train_token_sae"]
