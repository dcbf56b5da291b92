"""Concept steering with SAEs: pure arithmetic in :mod:`.core`, model glue elsewhere.

Diffusion steering lives in :mod:`sae_causal_plugin.diffusion.steering`; it and any
language-model steering share :func:`steer_activations`.
"""

from sae_causal_plugin.steering.core import (
    STEERING_MODES,
    HasDescendants,
    SteeringMode,
    as_latent_list,
    decoder_directions,
    expand_latents,
    steer_activations,
)

__all__ = [
    "STEERING_MODES",
    "HasDescendants",
    "SteeringMode",
    "as_latent_list",
    "decoder_directions",
    "expand_latents",
    "steer_activations",
]
