"""Rule-based detectors of the part-whole world: every concept and where it is, read off a layered scene.

1. **Layer pixels.**  A pixel is on concept ``c``'s layer when the layer's value there exceeds
   :data:`.scenes.ON` = 0.5 (drawn scenes hold exactly 0 or 1).
2. **Presence.**  A concept is present when at least :data:`MIN_PIXELS` of its layer's pixels are
   on: 5 for a whole (64 drawn), 3 for a region (at least 8 drawn) and 3 for a part (4 drawn).
3. **Where.**  :func:`detected_masks` gives each present concept's on pixels, the detector's view
   of a concept mask (exact on drawn scenes).

Concepts are read independently: a detector never assumes the hierarchy.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.worlds.denoiser_training import image_batch

from sae_causal_plugin.worlds.part_world.concepts import CONCEPTS, level
from sae_causal_plugin.worlds.part_world.scenes import CHANNELS, ON

#: level -> minimum on pixels of the concept's layer
MIN_PIXELS = {0: 5, 1: 3, 2: 3}
#: a layer value within this distance of 0.5 is *unclear* (:func:`unknown_fraction`)
UNCLEAR = 0.25
_THRESHOLDS = torch.tensor([MIN_PIXELS[level(c)] for c in CONCEPTS])


def layer_pixels(images: Tensor) -> Bool[Tensor, "b c h w"]:
    """Which pixel is on which concept's layer (rule 1)."""
    return image_batch(images, CHANNELS) > ON


def _present(on: Bool[Tensor, "b c h w"]) -> Bool[Tensor, "b c"]:
    return on.sum((2, 3)) >= _THRESHOLDS


def detect_concepts(images: Tensor) -> Bool[Tensor, "b c"]:
    """The concepts present in each image, ``[B, N_CONCEPTS]`` in the order of ``CONCEPTS`` (rule 2)."""
    return _present(layer_pixels(images))


def detected_masks(images: Tensor) -> Bool[Tensor, "b c h w"]:
    """Each present concept's on pixels (rule 3)."""
    on = layer_pixels(images)
    return on & _present(on)[:, :, None, None]


def unknown_fraction(images: Tensor) -> Float[Tensor, " b"]:
    """Fraction of layer values that read neither on nor off (within :data:`UNCLEAR` of 0.5), per
    image (an image-quality gauge)."""
    return ((image_batch(images, CHANNELS) - ON).abs() < UNCLEAR).float().mean(dim=(1, 2, 3))


__all__ = ["MIN_PIXELS", "UNCLEAR", "detect_concepts", "detected_masks", "layer_pixels", "unknown_fraction"]
