"""Drawing the part-whole world: layouts -> 16x16 RGB scenes and one ground-truth mask per concept.

Every concept has a palette colour of its own, with channels in ``{0, 0.5, 1}`` (any two differ by
0.5 in some channel, so :mod:`.detectors` reads each pixel with a tolerance of 0.25).  Painting
order: white background, the whole's 8x8 box in the whole's colour, its present regions, their
present parts.  A concept's *mask* is where it lies, its own pixels and those of the parts drawn
on it: the box for a whole, the rectangle for a region, the 2x2 block for a part.  Images are
``float32`` ``[B, 3, 16, 16]`` in ``[0, 1]``; the denoiser works in ``[-1, 1]``
(:func:`to_model` / :func:`from_model`).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.worlds.part_world.concepts import (
    BOX,
    CONCEPT_INDEX,
    CONCEPTS,
    PART,
    PART_AREAS,
    REGION_RECTS,
    SIZE,
    WHOLES,
    Layout,
    check_layout,
    sample_layout,
)

CHANNELS = 3
BACKGROUND = (1.0, 1.0, 1.0)
#: concept -> RGB in [0, 1]
PALETTE: dict[str, tuple[float, float, float]] = {
    "face": (1.0, 0.5, 0.5), "house": (1.0, 1.0, 0.5), "car": (0.5, 0.5, 1.0), "tree": (0.5, 1.0, 0.5),
    "upper_face": (1.0, 0.5, 0.0), "lower_face": (1.0, 0.0, 0.5), "roof": (0.5, 0.0, 0.0),
    "wall": (1.0, 1.0, 0.0), "cabin": (0.0, 0.5, 1.0), "chassis": (0.0, 0.0, 1.0), "crown": (0.0, 0.5, 0.0),
    "trunk": (0.5, 0.5, 0.0), "eyes": (0.0, 0.0, 0.0), "mouth": (1.0, 0.0, 0.0), "chimney": (0.5, 0.5, 0.5),
    "nest": (0.5, 0.0, 0.5), "door": (0.0, 0.5, 0.5), "window": (0.0, 0.0, 0.5), "wheels": (0.5, 0.0, 1.0),
    "lights": (0.0, 1.0, 1.0), "apples": (1.0, 0.0, 1.0), "hollow": (0.5, 1.0, 0.0),
}
#: palette colours in concept order, the background last: ``[N_CONCEPTS + 1, 3]``
PALETTE_TENSOR = torch.tensor([PALETTE[c] for c in CONCEPTS] + [BACKGROUND])


def _rects(r0: Tensor, r1: Tensor, c0: Tensor, c1: Tensor) -> Bool[Tensor, "b h w"]:
    idx = torch.arange(SIZE)
    rows = (idx[None] >= r0[:, None]) & (idx[None] < r1[:, None])
    cols = (idx[None] >= c0[:, None]) & (idx[None] < c1[:, None])
    return rows[:, :, None] & cols[:, None, :]


def concept_masks(layout: Layout) -> Bool[Tensor, "b c h w"]:
    """Where every present concept lies (see the module docstring); absent concepts are empty."""
    check_layout(layout)
    lab, o = layout.labels, layout.origin
    n = len(layout)
    masks = torch.zeros(n, len(CONCEPTS), SIZE, SIZE, dtype=torch.bool)
    for w in WHOLES:
        masks[:, CONCEPT_INDEX[w]] = _rects(o[:, 0], o[:, 0] + BOX, o[:, 1], o[:, 1] + BOX)
    for region, (_, (r0, r1, c0, c1)) in REGION_RECTS.items():
        masks[:, CONCEPT_INDEX[region]] = _rects(o[:, 0] + r0, o[:, 0] + r1, o[:, 1] + c0, o[:, 1] + c1)
    for part in PART_AREAS:
        i = CONCEPT_INDEX[part]
        top = o + layout.offset[:, i]
        masks[:, i] = _rects(top[:, 0], top[:, 0] + PART, top[:, 1], top[:, 1] + PART)
    return masks & lab[:, :, None, None]


def render(layout: Layout) -> Float[Tensor, "b 3 h w"]:
    """The scenes of ``layout``, ``[B, 3, 16, 16]`` in ``[0, 1]``."""
    masks = concept_masks(layout)
    index = torch.full((len(layout), SIZE, SIZE), len(CONCEPTS), dtype=torch.long)
    for i in range(len(CONCEPTS)):  # concept order is painting order: wholes, regions, parts
        index[masks[:, i]] = i
    return PALETTE_TENSOR[index].permute(0, 3, 1, 2).contiguous()


def sample_scenes(n: int, *, seed: int = 0) -> tuple[Float[Tensor, "n 3 h w"], Layout]:
    """``n`` scenes from the world's sampling rule: ``(images, layout)``."""
    layout = sample_layout(n, torch.Generator().manual_seed(seed))
    return render(layout), layout


def to_model(images: Tensor) -> Tensor:
    """``[0, 1]`` images -> the denoiser's ``[-1, 1]`` space."""
    return images * 2.0 - 1.0


def from_model(x: Tensor) -> Tensor:
    """Denoiser space ``[-1, 1]`` -> ``[0, 1]`` images (clipped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


__all__ = ["BACKGROUND", "CHANNELS", "PALETTE", "PALETTE_TENSOR", "concept_masks", "from_model", "render",
           "sample_scenes", "to_model"]
