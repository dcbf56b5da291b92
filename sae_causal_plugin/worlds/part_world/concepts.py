"""The part-whole world's concepts: a three-level DAG of spatial parts composed into wholes.

22 concepts on three levels (0 = the coarsest, the wholes)::

    level 0 (whole)   face              house                 car                tree
    level 1 (region)  upper_face        roof      wall        cabin   chassis    crown      trunk
                      lower_face
    level 2 (part)    eyes (upper)      chimney   door        window  wheels     apples     hollow
                      mouth (lower)     nest      window      (cabin) lights     nest
                                        (roof)    (wall)                         (crown)

Edges point child -> parent (part -> region -> whole), the direction of selection.  Two parts are
shared: ``window`` lies in a house's ``wall`` or a car's ``cabin``, and ``nest`` in a house's
``roof`` or a tree's ``crown``, so the graph is a DAG, not a tree.

**Geometry.**  A whole is an 8x8 box on the 16x16 canvas, its top-left corner drawn from
:data:`ORIGINS` x :data:`ORIGINS`.  Each region is a fixed rectangle inside its whole's box
(:data:`REGION_RECTS`, rows and columns relative to the box, half-open).  Each part is a 2x2 block
placed at one of the non-overlapping 2x2 positions ("slots", every second row and column) of a
sub-rectangle of its host region (:data:`PART_AREAS`), drawn uniformly, so parts move with their
whole and within their region from scene to scene.
Sibling parts have disjoint areas.

**Sampling** (:func:`sample_layout`): one whole per scene (uniform), each of its regions present
with probability :data:`P_REGION`, each part of a present region with probability :data:`P_PART`.
A child is present only with a parent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

SIZE = 16
BOX = 8
#: rows / columns a whole's box may start at.
ORIGINS: tuple[int, ...] = (0, 4, 8)
P_REGION = 0.8
P_PART = 0.5

WHOLES: tuple[str, ...] = ("face", "house", "car", "tree")
#: region -> (whole, (row0, row1, col0, col1) relative to the whole's box)
REGION_RECTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "upper_face": ("face", (1, 4, 1, 7)),
    "lower_face": ("face", (4, 7, 1, 7)),
    "roof": ("house", (0, 3, 0, 8)),
    "wall": ("house", (3, 8, 1, 7)),
    "cabin": ("car", (1, 4, 2, 6)),
    "chassis": ("car", (4, 7, 0, 8)),
    "crown": ("tree", (0, 4, 1, 7)),
    "trunk": ("tree", (4, 8, 3, 5)),
}
#: part -> {host region: (row0, row1, col0, col1) of the area its 2x2 block lies in, box-relative}
PART_AREAS: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "eyes": {"upper_face": (1, 4, 1, 7)},
    "mouth": {"lower_face": (4, 7, 2, 6)},
    "chimney": {"roof": (0, 3, 0, 3)},
    "nest": {"roof": (0, 3, 4, 8), "crown": (0, 3, 4, 7)},
    "door": {"wall": (5, 8, 1, 4)},
    "window": {"wall": (3, 6, 4, 7), "cabin": (1, 4, 2, 6)},
    "wheels": {"chassis": (5, 7, 0, 4)},
    "lights": {"chassis": (4, 6, 5, 8)},
    "apples": {"crown": (1, 4, 1, 4)},
    "hollow": {"trunk": (5, 8, 3, 5)},
}
PART = 2  # side of a part's block

CONCEPTS: tuple[str, ...] = WHOLES + tuple(REGION_RECTS) + tuple(PART_AREAS)
N_CONCEPTS = len(CONCEPTS)
CONCEPT_INDEX: dict[str, int] = {c: i for i, c in enumerate(CONCEPTS)}
#: concept -> parents (coarser concepts it is a part of)
PARENTS: dict[str, tuple[str, ...]] = {
    **{w: () for w in WHOLES},
    **{r: (w,) for r, (w, _) in REGION_RECTS.items()},
    **{p: tuple(hosts) for p, hosts in PART_AREAS.items()},
}


def level(concept: str) -> int:
    """0 for wholes, 1 for regions, 2 for parts."""
    if concept in WHOLES:
        return 0
    if concept in REGION_RECTS:
        return 1
    if concept in PART_AREAS:
        return 2
    raise ValueError(f"unknown concept {concept!r}; known: {list(CONCEPTS)}")


LEVELS: tuple[tuple[str, ...], ...] = tuple(tuple(c for c in CONCEPTS if level(c) == lv) for lv in range(3))


def true_edges() -> set[tuple[str, str]]:
    """The part-whole DAG as ``(child, parent)`` pairs."""
    return {(c, p) for c, ps in PARENTS.items() for p in ps}


def descendants(concept: str) -> set[str]:
    """Every concept below ``concept`` (its parts, their parts, ...)."""
    out: set[str] = set()
    frontier = [concept]
    while frontier:
        node = frontier.pop()
        for c, ps in PARENTS.items():
            if node in ps and c not in out:
                out.add(c)
                frontier.append(c)
    return out


def slots(part: str, host: str) -> list[tuple[int, int]]:
    """Box-relative top-left corners the part's 2x2 block can take in ``host``: every second row and
    column of its area, so two places never overlap (a denoiser unsure between overlapping places
    draws a smeared part between them)."""
    r0, r1, c0, c1 = PART_AREAS[part][host]
    return [(r, c) for r in range(r0, r1 - PART + 1, PART) for c in range(c0, c1 - PART + 1, PART)]


@dataclass
class Layout:
    """What a batch of scenes holds and where.

    * ``labels``: ``[B, N_CONCEPTS]`` bool, the present concepts;
    * ``origin``: ``[B, 2]`` the whole's box top-left (row, col) on the canvas;
    * ``offset``: ``[B, N_CONCEPTS, 2]`` each present part's block top-left, box-relative
      (``-1`` for regions, wholes and absent parts).
    """

    labels: Bool[Tensor, "b c"]
    origin: Int[Tensor, "b 2"]
    offset: Int[Tensor, "b c 2"]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: slice | Tensor) -> "Layout":
        return Layout(self.labels[index], self.origin[index], self.offset[index])


def host_of(labels: Bool[Tensor, "b c"], part: str) -> list[str | None]:
    """Per scene, the present region that holds ``part`` (``None`` where none does)."""
    hosts = list(PART_AREAS[part])
    out: list[str | None] = []
    for row in labels.tolist():
        present = [h for h in hosts if row[CONCEPT_INDEX[h]]]
        out.append(present[0] if present else None)
    return out


def check_layout(layout: Layout) -> Layout:
    """``layout`` if it is one the world can draw, else a ``ValueError`` saying what is wrong."""
    lab = layout.labels
    if lab.ndim != 2 or lab.shape[1] != N_CONCEPTS or lab.dtype != torch.bool:
        raise ValueError(f"labels must be bool [B, {N_CONCEPTS}], got {lab.dtype} {tuple(lab.shape)}")
    b = lab.shape[0]
    if tuple(layout.origin.shape) != (b, 2) or tuple(layout.offset.shape) != (b, N_CONCEPTS, 2):
        raise ValueError(f"origin must be [{b}, 2] and offset [{b}, {N_CONCEPTS}, 2], got "
                         f"{tuple(layout.origin.shape)} and {tuple(layout.offset.shape)}")
    if bool((lab[:, : len(WHOLES)].sum(1) != 1).any()):
        raise ValueError("every scene holds exactly one whole (face, house, car or tree)")
    for c, ps in PARENTS.items():
        if ps:
            has_parent = lab[:, [CONCEPT_INDEX[p] for p in ps]].any(1)
            if bool((lab[:, CONCEPT_INDEX[c]] & ~has_parent).any()):
                raise ValueError(f"{c!r} is present without any of its parents {list(ps)}")
    return layout


def sample_layout(n: int, generator: torch.Generator | None = None) -> Layout:
    """``n`` scenes from the world's sampling rule (see the module docstring)."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    lab = torch.zeros(n, N_CONCEPTS, dtype=torch.bool)
    whole = torch.randint(0, len(WHOLES), (n,), generator=generator)
    lab[torch.arange(n), whole] = True
    for region, (w, _) in REGION_RECTS.items():
        lab[:, CONCEPT_INDEX[region]] = lab[:, CONCEPT_INDEX[w]] & (torch.rand(n, generator=generator) < P_REGION)
    offset = torch.full((n, N_CONCEPTS, 2), -1, dtype=torch.long)
    draws = torch.rand(n, len(PART_AREAS), generator=generator)
    picks = torch.rand(n, len(PART_AREAS), generator=generator)
    for j, part in enumerate(PART_AREAS):
        i = CONCEPT_INDEX[part]
        for b, host in enumerate(host_of(lab, part)):
            if host is None or draws[b, j] >= P_PART:
                continue
            options = slots(part, host)
            lab[b, i] = True
            offset[b, i] = torch.tensor(options[int(picks[b, j] * len(options))])
    choices = torch.tensor(ORIGINS)
    origin = choices[torch.randint(0, len(ORIGINS), (n, 2), generator=generator)]
    return Layout(lab, origin, offset)


__all__ = [
    "BOX", "CONCEPTS", "CONCEPT_INDEX", "LEVELS", "Layout", "N_CONCEPTS", "ORIGINS", "PARENTS", "PART_AREAS",
    "P_PART", "P_REGION", "REGION_RECTS", "SIZE", "WHOLES", "check_layout", "descendants", "host_of", "level",
    "sample_layout", "slots", "true_edges",
]
