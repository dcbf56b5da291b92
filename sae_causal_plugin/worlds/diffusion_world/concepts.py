"""The concept hierarchy of the diffusion toy world and its label vectors.

Eight binary concepts on three levels (0 = most abstract)::

    level 0 (object)   house                        tree
    level 1 (part)     chimney      window          apples
    level 2 (detail)   smoke        flowers         basket

Edges point child -> parent (finer concept -> the coarser concept it composes), the direction of
selection: ``chimney -> house``, ``window -> house``, ``apples -> tree``, ``smoke -> chimney``,
``flowers -> window`` (a flower box under the window), ``basket -> apples`` (a basket of picked
apples under the tree).  A child is present only with its parent.

Every scene holds exactly one object (``house`` xor ``tree``, probability 1/2 each); a part is
present with probability 1/2 given its object, a detail with probability 1/2 given its part.
That gives :data:`N_CLASSES` = 12 valid label vectors ("classes"): 9 houses and 3 trees.

Every part and detail is drawn on pixels of its own (no concept recolours another one's pixels):
colour attributes drawn on their part's pixels were tried first, and per-token SAEs at the
denoiser's 8x8 mid block then merged each attribute into its part (feature absorption), which
this world is not meant to test.

A *label vector* is a ``bool`` / ``0-1`` tensor of length :data:`N_CONCEPTS` in the order of
:data:`CONCEPTS`; a batch is ``[B, N_CONCEPTS]``.  A *strength vector* is a float label vector
whose non-zero entries are the conditioning strengths of the present concepts
(:func:`sample_strengths`); wherever a label vector is expected, non-zero means present.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor

#: concept names, in label-vector order.
CONCEPTS: tuple[str, ...] = (
    "house",
    "tree",
    "chimney",
    "window",
    "apples",
    "smoke",
    "flowers",
    "basket",
)
N_CONCEPTS = len(CONCEPTS)
CONCEPT_INDEX: dict[str, int] = {c: i for i, c in enumerate(CONCEPTS)}

#: child -> parent (finer -> coarser).
PARENT: dict[str, str | None] = {
    "house": None,
    "tree": None,
    "chimney": "house",
    "window": "house",
    "apples": "tree",
    "smoke": "chimney",
    "flowers": "window",
    "basket": "apples",
}

#: human-readable meaning of each concept (what the renderer draws, what the detector reads).
DESCRIPTION: dict[str, str] = {
    "house": "a house: cream wall below a purple triangular roof",
    "tree": "a tree: maroon trunk below a round green crown",
    "chimney": "a black chimney standing on the roof (house part)",
    "window": "a navy 2x2 window at the top of the wall (house part)",
    "apples": "two red 2x2 apples in the crown (tree part)",
    "smoke": "grey 2x2 smoke above the chimney (chimney detail)",
    "flowers": "a magenta 2x2 flower box under the window (window detail)",
    "basket": "an orange 2x2 basket of apples on the ground by the trunk (apples detail)",
}

LabelLike = Union[Tensor, Sequence[bool], Sequence[int], Mapping[str, bool], Iterable[str]]


def level(concept: str) -> int:
    """Level of a concept: 0 for objects, 1 for parts, 2 for details."""
    check_concept(concept)
    depth, parent = 0, PARENT[concept]
    while parent is not None:
        depth, parent = depth + 1, PARENT[parent]
    return depth


N_LEVELS = 3


def check_concept(concept: Any) -> str:
    """``concept`` if it is a known concept name; ``ValueError`` otherwise."""
    if not isinstance(concept, str) or concept not in CONCEPT_INDEX:
        raise ValueError(
            f"unknown concept {concept!r}; the diffusion world's concepts are {list(CONCEPTS)}"
        )
    return concept


def children(concept: str) -> list[str]:
    """Direct finer concepts of ``concept``."""
    check_concept(concept)
    return [c for c in CONCEPTS if PARENT[c] == concept]


def descendants(concept: str) -> list[str]:
    """All finer concepts below ``concept``, in label order."""
    check_concept(concept)
    out = []
    for c in CONCEPTS:
        p = PARENT[c]
        while p is not None:
            if p == concept:
                out.append(c)
                break
            p = PARENT[p]
    return out


def ancestors(concept: str) -> list[str]:
    """All coarser concepts above ``concept``, nearest first."""
    check_concept(concept)
    out, p = [], PARENT[concept]
    while p is not None:
        out.append(p)
        p = PARENT[p]
    return out


def true_graph() -> Any:
    """The true hierarchy as a :class:`~sae_causal_plugin.graph.ConceptGraph`.

    Node ids are the concept names, with attributes ``level`` and ``label``; edges point
    child -> parent.
    """
    from sae_causal_plugin.graph import ConceptGraph

    g = ConceptGraph()
    for c in CONCEPTS:
        g.add_concept(c, level=LEVELS[c], label=c)
    for c in CONCEPTS:
        if PARENT[c] is not None:
            g.add_edge(c, PARENT[c])
    return g


def true_edges() -> set[tuple[str, str]]:
    """The true ``(child, parent)`` edges."""
    return {(c, p) for c, p in PARENT.items() if p is not None}


def labels(spec: LabelLike) -> Tensor:
    """A ``bool`` label vector ``[N_CONCEPTS]`` from names, a name->bool mapping or a vector.

    ``labels(["house", "window"])`` and ``labels({"house": True, "window": True})`` are the
    same; unknown names raise ``ValueError``.  The result is not checked for consistency (see
    :func:`check_labels`).
    """
    if isinstance(spec, Tensor):
        t = spec.detach().to("cpu")
        if t.shape[-1:] != (N_CONCEPTS,):
            raise ValueError(
                f"label tensors must end in {N_CONCEPTS} concepts {list(CONCEPTS)}, "
                f"got shape {tuple(t.shape)}"
            )
        return t.bool() if t.dtype == torch.bool else t != 0
    if isinstance(spec, Mapping):
        out = torch.zeros(N_CONCEPTS, dtype=torch.bool)
        for name, on in spec.items():
            out[CONCEPT_INDEX[check_concept(name)]] = bool(on)
        return out
    if isinstance(spec, str):
        spec = [spec]
    items = list(spec)
    if items and all(isinstance(v, str) for v in items):
        out = torch.zeros(N_CONCEPTS, dtype=torch.bool)
        for name in items:
            out[CONCEPT_INDEX[check_concept(name)]] = True
        return out
    if len(items) != N_CONCEPTS:
        raise ValueError(
            f"a label list needs concept names or {N_CONCEPTS} flags {list(CONCEPTS)}, got {items!r}"
        )
    return torch.tensor([bool(v) for v in items], dtype=torch.bool)


def names(label: Tensor) -> list[str]:
    """Names of the concepts present in one label vector."""
    lab = labels(label)
    if lab.ndim != 1:
        raise ValueError(f"names() takes one label vector, got shape {tuple(lab.shape)}")
    return [c for c, on in zip(CONCEPTS, lab.tolist()) if on]


def is_valid(label: Tensor) -> Tensor:
    """Per row: exactly one object, and every present child has its parent present."""
    lab = labels(label)
    ok = lab[..., CONCEPT_INDEX["house"]] ^ lab[..., CONCEPT_INDEX["tree"]]
    for c, p in PARENT.items():
        if p is not None:
            ok = ok & (~lab[..., CONCEPT_INDEX[c]] | lab[..., CONCEPT_INDEX[p]])
    return ok


def check_labels(label: LabelLike) -> Tensor:
    """The label tensor, or ``ValueError`` naming the first inconsistent row."""
    lab = labels(label)
    ok = is_valid(lab)
    if not bool(ok.all()):
        bad = lab.reshape(-1, N_CONCEPTS)[~ok.reshape(-1)][0]
        raise ValueError(
            f"inconsistent concepts {names(bad)}: a scene has exactly one of house/tree and a "
            "child concept only with its parent "
            + ", ".join(f"{c}->{p}" for c, p in PARENT.items() if p is not None)
        )
    return lab


def all_classes() -> Tensor:
    """The :data:`N_CLASSES` valid label vectors ``[N_CLASSES, N_CONCEPTS]`` (class order)."""
    rows = []
    for bits in itertools.product([False, True], repeat=N_CONCEPTS):
        lab = torch.tensor(bits)
        if bool(is_valid(lab)):
            rows.append(lab)
    rows.sort(key=lambda r: [int(not r[0])] + [int(v) for v in r[1:].tolist()])
    return torch.stack(rows)


def class_probabilities() -> Tensor:
    """Probability of each class of :func:`all_classes` under the world's sampling rule."""
    classes = all_classes()
    probs = torch.full((classes.shape[0],), 0.5, dtype=torch.float64)
    for c, p in PARENT.items():
        if p is not None:
            probs = probs * torch.where(classes[:, CONCEPT_INDEX[p]], 0.5, 1.0)
    return probs


def sample_labels(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` label vectors drawn from the world's hierarchical sampling rule ``[n, N_CONCEPTS]``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    u = torch.rand(n, N_CONCEPTS, generator=generator)
    lab = torch.zeros(n, N_CONCEPTS, dtype=torch.bool)
    house = u[:, CONCEPT_INDEX["house"]] < 0.5
    lab[:, CONCEPT_INDEX["house"]] = house
    lab[:, CONCEPT_INDEX["tree"]] = ~house
    for c in CONCEPTS:  # parents come before children in CONCEPTS
        p = PARENT[c]
        if p is not None:
            lab[:, CONCEPT_INDEX[c]] = lab[:, CONCEPT_INDEX[p]] & (u[:, CONCEPT_INDEX[c]] < 0.5)
    return lab


#: range of the conditioning strength of a present concept (see :func:`sample_strengths`).
STRENGTH_RANGE = (0.6, 1.0)
#: strength used for present concepts given as names or booleans.
DEFAULT_STRENGTH = 0.8


def sample_strengths(
    label: LabelLike, generator: torch.Generator | None = None,
    low: float = STRENGTH_RANGE[0], high: float = STRENGTH_RANGE[1],
) -> Tensor:
    """Float strength vectors: every present concept gets its own strength ~ U[low, high].

    The denoiser is trained and probed with these, so each concept's direction in activation
    space varies on its own, image by image, instead of the scenes collapsing onto 12 points.
    """
    lab = labels(label)
    u = torch.rand(lab.shape, generator=generator)
    return torch.where(lab, low + (high - low) * u, torch.zeros(()))


def as_strengths(label: LabelLike, default: float = DEFAULT_STRENGTH) -> Tensor:
    """Float strengths: float tensors as given, names / booleans / 0-1 ints at ``default``."""
    if isinstance(label, Tensor) and label.is_floating_point():
        lab = labels(label)  # shape check
        if bool((label.detach().cpu() < 0).any()):
            raise ValueError("concept strengths must be >= 0")
        return label.detach().to("cpu", torch.float32)
    return labels(label).float() * default


def class_index(label: LabelLike) -> Tensor:
    """Index into :func:`all_classes` of each (valid) label vector."""
    lab = check_labels(label)
    classes = all_classes()
    flat = lab.reshape(-1, N_CONCEPTS)
    idx = (flat[:, None, :] == classes[None]).all(-1).float().argmax(-1)
    return idx.reshape(lab.shape[:-1])


#: level of every concept (0 = object, 1 = part, 2 = detail).
LEVELS: dict[str, int] = {c: level(c) for c in CONCEPTS}
N_CLASSES = int(all_classes().shape[0])

__all__ = [
    "CONCEPTS",
    "CONCEPT_INDEX",
    "DESCRIPTION",
    "LEVELS",
    "N_CLASSES",
    "N_CONCEPTS",
    "N_LEVELS",
    "DEFAULT_STRENGTH",
    "PARENT",
    "STRENGTH_RANGE",
    "all_classes",
    "as_strengths",
    "ancestors",
    "check_concept",
    "check_labels",
    "children",
    "class_index",
    "class_probabilities",
    "descendants",
    "is_valid",
    "labels",
    "level",
    "names",
    "sample_labels",
    "sample_strengths",
    "true_edges",
    "true_graph",
]
