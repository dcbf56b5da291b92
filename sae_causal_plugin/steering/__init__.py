"""Concept steering with SAEs: pure arithmetic in :mod:`.core`, model glue elsewhere.

:class:`Steering` (:mod:`.base`) holds what every model shares: the argument checks, the hook and
the ``with`` block.  Its subclasses are language-model steering (TransformerLens
``HookedTransformer`` / SAELens ``HookedSAETransformer``) in :mod:`.language` and diffusion
steering in :mod:`sae_causal_plugin.diffusion.steering`; both edit with :func:`steer_activations`.
"""

from sae_causal_plugin.steering.base import Steering
from sae_causal_plugin.steering.core import (
    STEERING_MODES,
    HasDescendants,
    SteeringMode,
    as_latent_list,
    decoder_directions,
    expand_latents,
    steer_activations,
)
from sae_causal_plugin.steering.language import (
    LanguageSteering,
    generate,
    mean_token_nll,
    next_token_probs,
    resolve_hook_name,
)

__all__ = [
    "STEERING_MODES",
    "HasDescendants",
    "LanguageSteering",
    "Steering",
    "SteeringMode",
    "as_latent_list",
    "decoder_directions",
    "expand_latents",
    "generate",
    "mean_token_nll",
    "next_token_probs",
    "resolve_hook_name",
    "steer_activations",
]
