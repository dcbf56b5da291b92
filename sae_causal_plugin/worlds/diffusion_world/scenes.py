"""The image generator of the diffusion toy world: label vectors -> 16x16 RGB scenes.

Every colour of the palette has channels in ``{0, 0.5, 1}``, so any two palette colours differ by
at least 0.5 in some channel and the detectors (:mod:`.detectors`) can read each pixel with a
tolerance of 0.25.  Images are ``float32`` ``[B, 3, 16, 16]`` in ``[0, 1]``; the denoiser works in
``[-1, 1]`` (:func:`to_model` / :func:`from_model`).

Layout (rows top to bottom): sky over rows 0-12, grass over rows 13-15, one object standing on
the grass, shifted horizontally by ``dx`` drawn from :data:`SHIFTS` = (-2, 0, 2) (the only
variation inside a class besides optional pixel noise).

Every small part (chimney, smoke, window, apples) covers whole 2x2 cells of the even pixel grid,
and shifts are even, so at the denoiser's 8x8 mid block a part always falls on whole tokens.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from sae_causal_plugin.worlds.diffusion_world.concepts import (
    CONCEPT_INDEX,
    LabelLike,
    all_classes,
    check_labels,
    class_index,
    sample_labels,
)

SIZE = 16
CHANNELS = 3

#: palette name -> RGB in [0, 1]
PALETTE: dict[str, tuple[float, float, float]] = {
    "sky": (0.5, 0.5, 1.0),
    "grass": (0.5, 1.0, 0.5),
    "wall": (1.0, 1.0, 0.5),
    "roof": (0.5, 0.0, 0.5),
    "chimney": (0.0, 0.0, 0.0),
    "smoke": (0.5, 0.5, 0.5),
    "window": (0.0, 0.0, 0.5),
    "flowers": (1.0, 0.0, 1.0),
    "trunk": (0.5, 0.0, 0.0),
    "crown": (0.0, 0.5, 0.0),
    "apples": (1.0, 0.0, 0.0),
    "basket": (1.0, 0.5, 0.0),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
PALETTE_TENSOR = torch.tensor([PALETTE[c] for c in COLOURS], dtype=torch.float32)

GRASS_ROW = 13
#: horizontal offsets a scene is drawn at (even, so parts stay on the 2x2 token grid).
SHIFTS: tuple[int, ...] = (-2, 0, 2)


def _cells(rows: range | list[int], cols: range | list[int]) -> list[tuple[int, int]]:
    return [(r, c) for r in rows for c in cols]


def _roof() -> list[tuple[int, int]]:
    return [(4 + i, c) for i in range(4) for c in range(6 - i, 10 + i)]


def _crown() -> list[tuple[int, int]]:
    corners = {(3, 4), (3, 5), (3, 10), (3, 11), (4, 4), (4, 11),
               (9, 4), (9, 5), (9, 10), (9, 11), (8, 4), (8, 11)}
    return [rc for rc in _cells(range(3, 10), range(4, 12)) if rc not in corners]


#: pixel sets of every drawn part at horizontal offset 0, as (row, col).
SHAPES: dict[str, list[tuple[int, int]]] = {
    "wall": _cells(range(8, 13), range(4, 12)),
    "roof": _roof(),
    "chimney": _cells(range(2, 6), range(10, 12)),
    "smoke": _cells(range(0, 2), range(10, 12)),
    "window": _cells(range(8, 10), range(6, 8)),
    "flowers": _cells(range(10, 12), range(6, 8)),
    "trunk": _cells(range(10, 13), range(7, 9)),
    "crown": _crown(),
    "apples": _cells(range(4, 6), range(6, 8)) + _cells(range(6, 8), range(10, 12)),
    "basket": _cells(range(11, 13), range(10, 12)),
}


def _paint(img: Tensor, part: str, colour: str, dx: int) -> None:
    rgb = PALETTE_TENSOR[COLOURS.index(colour)]
    for r, c in SHAPES[part]:
        img[:, r, c + dx] = rgb


def render_one(label: Tensor, dx: int = 0) -> Tensor:
    """Draw one scene ``[3, 16, 16]`` for a valid label vector at horizontal offset ``dx``."""
    lab = check_labels(label)
    if lab.ndim != 1:
        raise ValueError(f"render_one takes one label vector, got shape {tuple(lab.shape)}")
    if not -2 <= dx <= 2:
        raise ValueError(f"dx must lie in [-2, 2] so the scene fits the 16x16 canvas, got {dx}")
    on = {c: bool(lab[i]) for c, i in CONCEPT_INDEX.items()}
    img = torch.empty(CHANNELS, SIZE, SIZE)
    img[:, :GRASS_ROW] = PALETTE_TENSOR[COLOURS.index("sky")][:, None, None]
    img[:, GRASS_ROW:] = PALETTE_TENSOR[COLOURS.index("grass")][:, None, None]
    if on["house"]:
        _paint(img, "wall", "wall", dx)
        _paint(img, "roof", "roof", dx)
        if on["chimney"]:
            _paint(img, "chimney", "chimney", dx)
        if on["smoke"]:
            _paint(img, "smoke", "smoke", dx)
        if on["window"]:
            _paint(img, "window", "window", dx)
        if on["flowers"]:
            _paint(img, "flowers", "flowers", dx)
    if on["tree"]:
        _paint(img, "trunk", "trunk", dx)
        _paint(img, "crown", "crown", dx)
        if on["apples"]:
            _paint(img, "apples", "apples", dx)
        if on["basket"]:
            _paint(img, "basket", "basket", dx)
    return img


@functools.lru_cache(maxsize=1)
def _prototypes() -> Tensor:
    """Every class drawn at every offset: ``[N_CLASSES, 5, 3, 16, 16]`` (offsets -2..2)."""
    return torch.stack(
        [torch.stack([render_one(lab, dx) for dx in range(-2, 3)]) for lab in all_classes()]
    )


def render(
    labels: LabelLike,
    *,
    shifts: tuple[int, ...] = SHIFTS,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    dx: Tensor | int | None = None,
) -> Tensor:
    """Draw a batch of scenes ``[B, 3, 16, 16]`` in ``[0, 1]`` from label vectors ``[B, 8]``.

    Args:
        labels: valid label vectors (see :mod:`.concepts`); one vector gives a batch of one.
        shifts: objects are shifted by a ``dx`` drawn uniformly from these offsets (in [-2, 2]).
        noise: standard deviation of Gaussian pixel noise (clipped to ``[0, 1]``).
        generator: random source of the shifts and the noise.
        dx: explicit shifts (int or ``[B]``) instead of random ones.
    """
    lab = check_labels(labels)
    if lab.ndim == 1:
        lab = lab[None]
    n = lab.shape[0]
    choices = torch.as_tensor(list(shifts), dtype=torch.long)
    if choices.ndim != 1 or not len(choices) or bool((choices.abs() > 2).any()):
        raise ValueError(f"shifts must be a non-empty list of offsets in [-2, 2], got {shifts!r}")
    if dx is None:
        offsets = choices[torch.randint(0, len(choices), (n,), generator=generator)]
    else:
        offsets = torch.as_tensor(dx, dtype=torch.long)
        offsets = offsets.expand(n).clone() if offsets.ndim == 0 else offsets
    if offsets.shape != (n,) or bool((offsets.abs() > 2).any()):
        raise ValueError(f"dx must be an int or {n} ints in [-2, 2], got {dx!r}")
    imgs = _prototypes()[class_index(lab), offsets + 2]
    if noise > 0:
        imgs = (imgs + noise * torch.randn(imgs.shape, generator=generator)).clamp(0, 1)
    return imgs


def sample_scenes(
    n: int, *, seed: int = 0, shifts: tuple[int, ...] = SHIFTS, noise: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``n`` scenes from the world's sampling rule: ``(images [n, 3, 16, 16], labels [n, 8])``."""
    g = torch.Generator().manual_seed(seed)
    lab = sample_labels(n, g)
    return render(lab, shifts=shifts, noise=noise, generator=g), lab


def to_model(images: Tensor) -> Tensor:
    """``[0, 1]`` images -> the denoiser's ``[-1, 1]`` space."""
    return images * 2.0 - 1.0


def from_model(x: Tensor) -> Tensor:
    """Denoiser space ``[-1, 1]`` -> ``[0, 1]`` images (clipped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


__all__ = [
    "CHANNELS",
    "COLOURS",
    "PALETTE",
    "PALETTE_TENSOR",
    "SHAPES",
    "SHIFTS",
    "SIZE",
    "from_model",
    "render",
    "render_one",
    "sample_scenes",
    "to_model",
]
