"""Steer a diffusion-world concept through per-timestep SAEs, each on its own window of steps.

:func:`concept_steering` is :func:`sae_causal_plugin.diffusion.timestep_steering.concept_steering`
with this world's hook (:data:`.model.HOOK`) and schedule (20 steps) as defaults and its concept
names checked; the rest of this docstring describes what it does.

With one SAE per timestep (levels = timesteps), an SAE is used on the denoising steps whose
timestep is nearest to its own: :func:`timestep_windows` splits ``[0, num_train_timesteps]`` at the
midpoints between the SAE timesteps.  :func:`concept_steering` enters one
:class:`~sae_causal_plugin.diffusion.DiffusionSteering` per SAE that has latents of the concept,
so every step of the schedule is edited by the SAE trained nearest to it.

``include_descendants=True`` also edits the concept's descendants in a concept graph (nodes =
concept names, edges child -> parent, e.g. a recovered graph collapsed onto concepts or
:func:`.concepts.true_graph`): the graph is instantiated on each SAE's latents
(:func:`latent_graph`) and handed to ``DiffusionSteering(include_descendants=True, graph=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin.diffusion import DiffusionSteering
from sae_causal_plugin.diffusion import timestep_steering
from sae_causal_plugin.diffusion.timestep_steering import (
    ConceptLatents,
    ConceptSteeringOptions,
    latent_graph,
    timestep_windows,
)
from sae_causal_plugin.steering.core import SteeringMode
from sae_causal_plugin.worlds.diffusion_world.concepts import check_concept
from sae_causal_plugin.worlds.diffusion_world.model import DEFAULT_STEPS, HOOK


class ImageLevelSAE:
    """An SAE trained on image-level (token-mean) activations, used on every token of an image.

    ``encode`` takes the rows of a feature map in ``to_tokens`` order (each image's
    ``tokens_per_image`` rows together), encodes each image's mean and repeats that code on the
    image's rows.  Error-preserving steering through it therefore moves every token of an image by
    the same ``W_dec[S] (z'_S - z_S)``, i.e. it edits the image mean the SAE was trained on, where a
    per-token encoding would see activations the SAE never saw.  Everything else (``cfg``,
    ``W_dec``, ``decode``, ...) is the wrapped SAE's.
    """

    def __init__(self, sae: Any, tokens_per_image: int):
        if tokens_per_image < 1:
            raise ValueError(f"tokens_per_image must be >= 1, got {tokens_per_image}")
        self.sae = sae
        self.tokens_per_image = int(tokens_per_image)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["sae"], name)

    def encode(self, rows: Tensor) -> Tensor:
        n = self.tokens_per_image
        if rows.ndim != 2 or rows.shape[0] % n:
            raise ValueError(
                f"ImageLevelSAE.encode needs [n_images * {n}, d_in] rows, got {tuple(rows.shape)}"
            )
        code = self.sae.encode(rows.reshape(-1, n, rows.shape[-1]).mean(1))
        return torch.repeat_interleave(code, n, dim=0)


@contextmanager
def concept_steering(
    pipe: Any,
    saes: Any,
    concept_latents: ConceptLatents,
    concept: str,
    mode: SteeringMode = "ablate",
    value: float | Sequence[float] | Tensor | None = None,
    options: ConceptSteeringOptions | None = None,
    **overrides: Any,
) -> Iterator[list[DiffusionSteering]]:
    """:func:`sae_causal_plugin.diffusion.timestep_steering.concept_steering` on this world
    (default ``hook=HOOK``, ``num_inference_steps=20``; ``concept`` must be a world concept)."""
    check_concept(concept)
    opts = options or ConceptSteeringOptions(hook=HOOK, num_inference_steps=DEFAULT_STEPS)
    with timestep_steering.concept_steering(pipe, saes, concept_latents, concept, mode, value, opts,
                                            **overrides) as entered:
        yield entered


__all__ = ["ConceptLatents", "ConceptSteeringOptions", "ImageLevelSAE", "concept_steering", "latent_graph",
           "timestep_windows"]
