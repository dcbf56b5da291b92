"""Rule-based detectors: read every concept of the diffusion world off an image.

Rules (documented, exact on drawn images):

1. **Pixel colours.**  A pixel takes the palette colour (:data:`.scenes.PALETTE`) nearest to it in
   the max-channel distance, if that distance is below :data:`TOLERANCE` = 0.25; otherwise it is
   *unknown*.  Palette colours are at least 0.5 apart, so the colour of a pixel is unambiguous.
2. **Concepts** from the counts of pixels per colour (:data:`RULES`, each threshold is about half
   of the pixels the renderer draws for that part):

   * ``house``:   wall >= 20 and roof >= 12 pixels (drawn: 36-40 and 27-28)
   * ``tree``:    crown >= 20 and trunk >= 3 (drawn: 36-44 and 6)
   * ``chimney``: black >= 4 (drawn: 8)
   * ``smoke``:   grey >= 2 (drawn: 4)
   * ``window``:  navy >= 2 (drawn: 4)
   * ``flowers``: magenta >= 2 (drawn: 4)
   * ``apples``:  red >= 4 (drawn: 8)
   * ``basket``:  orange >= 2 (drawn: 4)

Concepts are read independently: a detector never assumes the hierarchy, so an image with smoke
but no chimney reads as exactly that.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sae_causal_plugin.worlds.denoiser_training import image_batch

from sae_causal_plugin.worlds.diffusion_world.concepts import CONCEPTS, N_CONCEPTS
from sae_causal_plugin.worlds.diffusion_world.scenes import CHANNELS, COLOURS, PALETTE_TENSOR

TOLERANCE = 0.25

#: concept -> (palette colours whose pixels count, minimum count)
RULES: dict[str, tuple[tuple[str, ...], int]] = {
    "chimney": (("chimney",), 4),
    "smoke": (("smoke",), 2),
    "window": (("window",), 2),
    "flowers": (("flowers",), 2),
    "apples": (("apples",), 4),
    "basket": (("basket",), 2),
}
#: objects need two colours each: concept -> ((colour, minimum), (colour, minimum))
OBJECT_RULES: dict[str, tuple[tuple[str, int], ...]] = {
    "house": (("wall", 20), ("roof", 12)),
    "tree": (("crown", 20), ("trunk", 3)),
}


def _as_batch(images: Tensor) -> Tensor:
    return image_batch(images, CHANNELS)


def classify_pixels(images: Tensor) -> Tensor:
    """Palette index of every pixel (``-1`` = unknown): ``[B, H, W]`` int64 (see rule 1)."""
    x = _as_batch(images)
    dist = (x[:, None] - PALETTE_TENSOR[None, :, :, None, None]).abs().amax(dim=2)  # [B, P, H, W]
    best, idx = dist.min(dim=1)
    return torch.where(best < TOLERANCE, idx, torch.full_like(idx, -1))


def colour_counts(images: Tensor) -> dict[str, Tensor]:
    """Number of pixels of each palette colour, per image: ``{colour: [B]}``."""
    cls = classify_pixels(images)
    return {c: (cls == i).sum(dim=(1, 2)) for i, c in enumerate(COLOURS)}


def detect_concepts(images: Tensor) -> Tensor:
    """The concepts present in each image: ``bool`` ``[B, 8]`` in the order of ``CONCEPTS``.

    ``images`` are ``[B, 3, H, W]`` (or one ``[3, H, W]``) in ``[0, 1]``; use
    :func:`.scenes.from_model` on denoiser outputs first.
    """
    counts = colour_counts(images)
    n = next(iter(counts.values())).shape[0]
    out = torch.zeros(n, N_CONCEPTS, dtype=torch.bool)
    for i, concept in enumerate(CONCEPTS):
        if concept in OBJECT_RULES:
            ok = torch.ones(n, dtype=torch.bool)
            for colour, minimum in OBJECT_RULES[concept]:
                ok &= counts[colour] >= minimum
        else:
            colours, minimum = RULES[concept]
            ok = sum(counts[c] for c in colours) >= minimum
        out[:, i] = ok
    return out


def unknown_fraction(images: Tensor) -> Tensor:
    """Fraction of pixels that match no palette colour, per image ``[B]`` (an image-quality gauge)."""
    return (classify_pixels(images) < 0).float().mean(dim=(1, 2))


__all__ = [
    "OBJECT_RULES",
    "RULES",
    "TOLERANCE",
    "classify_pixels",
    "colour_counts",
    "detect_concepts",
    "unknown_fraction",
]
