"""Rule-based detectors of the part-whole world: every concept and where it is, read off an image.

1. **Pixel colours.**  A pixel takes the palette colour (:data:`.scenes.PALETTE_TENSOR`) nearest
   to it in the max-channel distance, if that distance is below :data:`TOLERANCE` = 0.25;
   otherwise it is *unknown*.  Each concept has a colour of its own.
2. **Presence.**  A concept is present when at least :data:`MIN_PIXELS` of its level's minimum
   pixels have its colour: 5 for a whole (at least 10 drawn), 3 for a region (at least 4 drawn
   uncovered) and 3 for a part (4 drawn).
3. **Where.**  :func:`detected_masks` gives each present concept's pixels of its colour, together
   with those of the concepts drawn on it (its descendants), the detector's view of a concept mask
   (exact on drawn scenes).

Concepts are read independently: a detector never assumes the hierarchy.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_causal_plugin.worlds.denoiser_training import image_batch

from sae_causal_plugin.worlds.part_world.concepts import CONCEPT_INDEX, CONCEPTS, descendants, level
from sae_causal_plugin.worlds.part_world.scenes import CHANNELS, PALETTE_TENSOR

TOLERANCE = 0.25
#: level -> minimum pixels of the concept's colour
MIN_PIXELS = {0: 5, 1: 3, 2: 3}
_THRESHOLDS = torch.tensor([MIN_PIXELS[level(c)] for c in CONCEPTS])


def _as_batch(images: Tensor) -> Tensor:
    return image_batch(images, CHANNELS)


def classify_pixels(images: Tensor) -> Int[Tensor, "b h w"]:
    """Concept index of every pixel's colour, ``len(CONCEPTS)`` for the background, ``-1`` unknown."""
    x = _as_batch(images)
    dist = (x[:, None] - PALETTE_TENSOR[None, :, :, None, None]).abs().amax(dim=2)
    best, idx = dist.min(dim=1)
    return torch.where(best < TOLERANCE, idx, torch.full_like(idx, -1))


def detect_concepts(images: Tensor) -> Bool[Tensor, "b c"]:
    """The concepts present in each image, ``[B, N_CONCEPTS]`` in the order of ``CONCEPTS``."""
    cls = classify_pixels(images)
    counts = torch.stack([(cls == i).sum((1, 2)) for i in range(len(CONCEPTS))], 1)
    return counts >= _THRESHOLDS


def detected_masks(images: Tensor) -> Bool[Tensor, "b c h w"]:
    """Each present concept's pixels and those of its descendants' colours (rule 3)."""
    cls = classify_pixels(images)
    own = torch.stack([cls == i for i in range(len(CONCEPTS))], 1)
    out = own.clone()
    for c in CONCEPTS:
        for d in descendants(c):
            out[:, CONCEPT_INDEX[c]] |= own[:, CONCEPT_INDEX[d]]
    return out & detect_concepts(images)[:, :, None, None]


def unknown_fraction(images: Tensor) -> Float[Tensor, " b"]:
    """Fraction of pixels that match no palette colour, per image (an image-quality gauge)."""
    return (classify_pixels(images) < 0).float().mean(dim=(1, 2))


__all__ = ["MIN_PIXELS", "TOLERANCE", "classify_pixels", "detect_concepts", "detected_masks", "unknown_fraction"]
