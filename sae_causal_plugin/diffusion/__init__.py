"""Diffusion models for SAELens: TransformerLens hook points, per-timestep caches, activation
streams for SAE training, and SAE concept steering.

* :func:`hook_denoiser` / :class:`HookedUNet` / :class:`HookedDiT`: ``HookedRootModule`` views of
  diffusers denoisers with ``<module path>.hook_out`` and ``.hook_delta`` hook points.
* :class:`HookedDiffusionPipeline`: generation with hooks, ``(hook, timestep)`` caches, step
  windows (:class:`StepWindow`) and classifier-free-guidance row selection.
* :class:`DiffusionActivationSource`: ``[batch, d_in]`` batches for ``sae_lens.SAETrainer``
  (forward-noised latents or sampling trajectories; paired across timesteps), with disk shards.
* :class:`DiffusionSteering`: error-preserving SAE concept edits during generation.
* :func:`concept_steering` (:mod:`.timestep_steering`): one concept through per-timestep SAEs, each
  on its own window of steps (:func:`timestep_windows`).
"""

from sae_causal_plugin.diffusion.activations import (
    DiffusionActivationSource,
    ShardedActivationSource,
    check_timesteps,
    noised_activations,
    save_activation_shards,
    trajectory_activations,
)
from sae_causal_plugin.diffusion.hooked import (
    HookedDenoiser,
    HookedDiT,
    HookedUNet,
    HookSite,
    hook_denoiser,
    to_tokens,
)
from sae_causal_plugin.diffusion.pipeline import (
    DiffusionCache,
    GenerationState,
    GenerationTracker,
    HookedDiffusionPipeline,
    StepWindow,
)
from sae_causal_plugin.diffusion.steering import DiffusionSteering, resize_mask
from sae_causal_plugin.diffusion.timestep_steering import ConceptSteeringOptions, concept_steering, timestep_windows

__all__ = [
    "ConceptSteeringOptions",
    "DiffusionActivationSource",
    "DiffusionCache",
    "DiffusionSteering",
    "GenerationState",
    "GenerationTracker",
    "HookSite",
    "HookedDenoiser",
    "HookedDiT",
    "HookedDiffusionPipeline",
    "HookedUNet",
    "ShardedActivationSource",
    "StepWindow",
    "check_timesteps",
    "concept_steering",
    "hook_denoiser",
    "noised_activations",
    "resize_mask",
    "save_activation_shards",
    "timestep_windows",
    "to_tokens",
    "trajectory_activations",
]
