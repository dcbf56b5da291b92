"""Drawing the part-whole world: layouts -> layered 16x16 scenes and one ground-truth mask per concept.

A scene is a stack of **layers, one per concept** (as in a layered drawing document): layer ``c`` is
1 where concept ``c`` lies and 0 elsewhere, so a part's pixels are also on its region's and its
whole's layers.  A concept's *mask* is where it lies: the 8x8 box for a whole, the rectangle for a
region, the 2x2 block for a part.  Images are ``float32`` ``[B, 22, 16, 16]`` in ``[0, 1]``; the
denoiser works in ``[-1, 1]`` (:func:`to_model` / :func:`from_model`).

:func:`composite` flattens a layered scene into the RGB picture a person looks at: white
background, then every concept's palette colour painted in concept order (wholes, regions, parts)
where its layer reads on (> 0.5).

Why layers and not RGB: in an RGB scene the 22 concepts share 3 colour channels, so their
directions at the denoiser's last 16x16 block come out nearly collinear (max |cos| 0.91-0.95,
``benchmarks/results/part_world.md``); with a layer each, the linear probes' graph reaches edge
F1 0.97 at the same hook and the denoiser reads back 1.00.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.worlds.denoiser_training import image_batch
from sae_causal_plugin.worlds.part_world.concepts import (
    BOX,
    CONCEPT_INDEX,
    CONCEPTS,
    N_CONCEPTS,
    PART,
    PART_AREAS,
    REGION_RECTS,
    SIZE,
    WHOLES,
    Layout,
    check_layout,
    sample_layout,
)

CHANNELS = N_CONCEPTS
#: a layer reads "on" above this value (:func:`composite`, :mod:`.detectors`)
ON = 0.5
BACKGROUND = (1.0, 1.0, 1.0)
#: concept -> RGB in [0, 1], for :func:`composite` (any two differ by 0.5 in some channel)
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


def render(layout: Layout) -> Float[Tensor, "b c h w"]:
    """The layered scenes of ``layout``, ``[B, 22, 16, 16]`` in ``{0, 1}``: each concept's mask on its layer."""
    return concept_masks(layout).float()


def composite(images: Tensor) -> Float[Tensor, "b 3 h w"]:
    """Layered scenes ``[B, 22, H, W]`` (or one ``[22, H, W]``) -> RGB pictures ``[B, 3, H, W]`` in ``[0, 1]``."""
    on = image_batch(images, CHANNELS) > ON
    index = torch.full((on.shape[0], on.shape[2], on.shape[3]), len(CONCEPTS), dtype=torch.long)
    for i in range(len(CONCEPTS)):  # concept order is painting order: wholes, regions, parts
        index[on[:, i]] = i
    return PALETTE_TENSOR[index].permute(0, 3, 1, 2).contiguous()


def sample_scenes(n: int, *, seed: int = 0) -> tuple[Float[Tensor, "n c h w"], Layout]:
    """``n`` scenes from the world's sampling rule: ``(images, layout)``."""
    layout = sample_layout(n, torch.Generator().manual_seed(seed))
    return render(layout), layout


def scene_noise(n: int, generator: torch.Generator | None = None) -> Float[Tensor, "n c h w"]:
    """Standard Gaussian starting noise for ``n`` layered scenes, ``[n, 22, 16, 16]``."""
    return torch.randn(n, CHANNELS, SIZE, SIZE, generator=generator)


def to_model(images: Tensor) -> Tensor:
    """``[0, 1]`` images -> the denoiser's ``[-1, 1]`` space."""
    return images * 2.0 - 1.0


def from_model(x: Tensor) -> Tensor:
    """Denoiser space ``[-1, 1]`` -> ``[0, 1]`` images (clipped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


__all__ = ["BACKGROUND", "CHANNELS", "ON", "PALETTE", "PALETTE_TENSOR", "composite", "concept_masks", "from_model", "render",
           "sample_scenes", "scene_noise", "to_model"]
