"""Configuration of the :class:`~sae_causal_plugin.synthetic.HierarchicalSelectionModel`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sae_causal_plugin.synthetic.compositions import COMPOSITIONS

NONLINEARITIES = ("none", "tanh")


@dataclass
class HierarchicalSelectionConfig:
    """Sizes, composition rule and observation model of a multi-level selection world.

    Terminology. Levels run ``0..L`` with 0 the most abstract. Each concept ``j`` of level
    ``l < L`` is a deterministic *selection* of a small set ``Pa(j)`` of concepts on level
    ``l + 1`` (its causal parents in the selection model, DESIGN.md section 1). In the
    :class:`~sae_causal_plugin.graph.ConceptGraph` the edges point the other way round in name
    only: ``"L{l+1}:{c}" -> "L{l}:{j}"`` for ``c`` in ``Pa(j)``, so ``j`` is the graph-*parent*
    of ``c`` (fine -> coarse, ``dog -> animal``).

    Args:
        concepts_per_level: number of concepts ``n_l`` on each level, level 0 first (at least
            two levels).
        parents: size of every composing set ``|Pa(j)|`` (``--parents``); under the
            ``threshold`` rule components that cannot change the outcome are dropped, so a set
            can end up smaller.
        max_overlap: at most this many components shared by any two concepts of the same level
            (``None``: any overlap short of identical sets). ``1`` keeps siblings distinguishable
            by their firing: two concepts sharing all but one component almost always co-fire.
        composition: ``"or"``, ``"and"`` or ``"threshold"`` (thresholded weighted sum), or a list
            with one name per coarse level ``0..L-1``.
        threshold_fraction: for ``"threshold"``: a concept fires when the weighted sum of its
            present components reaches this fraction of the total weight.
        hidden_dims: observation width ``d_l`` per level (``None``: ``d_l = n_l``).
        max_prob, min_prob: firing probabilities of the finest concepts follow a Zipf law
            (exponent ``zipf_exponent``) from ``max_prob`` down to ``min_prob``.
        correlation: strength in ``[0, 1)`` of low-rank Gaussian-copula correlations between the
            finest concepts (0 = independent).
        correlation_rank: rank of those correlations.
        merged_pairs: number of pairs of coarsest (level-0) concepts made to co-occur: in a sample
            where one concept of a pair is present and the other is not, with probability
            ``merge_rate`` the absent one is switched on through one of its own finest
            descendants, so the two almost always co-occur while their parts differ (each partner
            shares the fewest components, then finest descendants, with the other; the draw is
            once per sample and pair, and repeated passes catch a concept of one pair switched on
            by another pair's merge). The finest
            concepts' marginals are no longer exact; every coarse concept is still its rule of
            its components.
        merge_rate: that probability, in ``[0, 1]``.
        magnitude_range: a present concept's activation is uniform in this range.
        leakage: observation ``x_l`` also contains ``leakage ** |l - m|`` times the concepts of
            every other level ``m`` (through fixed random directions of ``x_l``'s space).
        nonlinearity: ``"none"`` or ``"tanh"`` (``x = tanh(s z) / s`` with
            ``s = nonlinearity_scale``), applied before the noise.
        noise: isotropic Gaussian noise of expected norm ``noise`` (feature directions have
            unit norm).
    """

    concepts_per_level: list[int] = field(default_factory=lambda: [8, 24])
    parents: int = 3
    max_overlap: int | None = None
    composition: str | list[str] = "or"
    threshold_fraction: float = 0.5
    hidden_dims: list[int] | None = None
    max_prob: float = 0.08
    min_prob: float = 0.02
    zipf_exponent: float = 1.0
    correlation: float = 0.0
    correlation_rank: int = 2
    merged_pairs: int = 0
    merge_rate: float = 0.95
    magnitude_range: tuple[float, float] = (0.5, 1.5)
    leakage: float = 0.0
    nonlinearity: str = "none"
    nonlinearity_scale: float = 1.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        self.concepts_per_level = list(self.concepts_per_level)
        self.magnitude_range = tuple(self.magnitude_range)  # type: ignore[assignment]
        if self.hidden_dims is not None:
            self.hidden_dims = list(self.hidden_dims)
        self.validate()

    @property
    def n_levels(self) -> int:
        return len(self.concepts_per_level)

    def dims(self) -> list[int]:
        """Observation width per level."""
        return list(self.hidden_dims) if self.hidden_dims is not None else list(self.concepts_per_level)

    def compositions(self) -> list[str]:
        """Composition rule of each coarse level ``0..L-1``."""
        if isinstance(self.composition, str):
            return [self.composition] * (self.n_levels - 1)
        return list(self.composition)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what to change."""
        sizes = self.concepts_per_level
        if len(sizes) < 2:
            raise ValueError(
                f"concepts_per_level needs at least two levels, got {sizes!r}; "
                "give one concept count per level, coarsest first, e.g. [8, 24]."
            )
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes):
            raise ValueError(f"concepts_per_level must be positive integers, got {sizes!r}.")
        if not isinstance(self.parents, int) or self.parents < 1:
            raise ValueError(f"parents must be an integer >= 1, got {self.parents!r}.")
        for level in range(len(sizes) - 1):
            if self.parents > sizes[level + 1]:
                raise ValueError(
                    f"parents={self.parents} exceeds the {sizes[level + 1]} concepts of level "
                    f"{level + 1}; lower parents or add concepts to that level."
                )
        if self.max_overlap is not None and (not isinstance(self.max_overlap, int) or self.max_overlap < 0):
            raise ValueError(f"max_overlap must be None or an integer >= 0, got {self.max_overlap!r}.")
        names = self.compositions()
        if len(names) != len(sizes) - 1:
            raise ValueError(
                f"composition lists {len(names)} rules but there are {len(sizes) - 1} coarse levels; "
                "give one name, or one per coarse level."
            )
        for name in names:
            if name not in COMPOSITIONS:
                raise ValueError(
                    f"composition {name!r} does not exist; choose one of {', '.join(COMPOSITIONS)}."
                )
        if not 0.0 < self.threshold_fraction <= 1.0:
            raise ValueError(f"threshold_fraction must lie in (0, 1], got {self.threshold_fraction!r}.")
        if self.hidden_dims is not None and (
            len(self.hidden_dims) != len(sizes) or any(d < 1 for d in self.hidden_dims)
        ):
            raise ValueError(
                f"hidden_dims must list one positive width per level ({len(sizes)}), got "
                f"{self.hidden_dims!r}; or leave it None for d_l = n_l."
            )
        if not 0.0 < self.min_prob <= self.max_prob <= 1.0:
            raise ValueError(
                f"need 0 < min_prob <= max_prob <= 1, got min_prob={self.min_prob}, max_prob={self.max_prob}."
            )
        if not 0.0 <= self.correlation < 1.0:
            raise ValueError(f"correlation must lie in [0, 1), got {self.correlation!r}.")
        if self.correlation_rank < 1:
            raise ValueError(f"correlation_rank must be >= 1, got {self.correlation_rank!r}.")
        if not isinstance(self.merged_pairs, int) or isinstance(self.merged_pairs, bool) or not (
                0 <= 2 * self.merged_pairs <= sizes[0]):
            raise ValueError(
                f"merged_pairs must be an integer from 0 to {sizes[0] // 2} (half the {sizes[0]} coarsest "
                f"concepts), got {self.merged_pairs!r}.")
        if not isinstance(self.merge_rate, (int, float)) or not 0.0 <= self.merge_rate <= 1.0:
            raise ValueError(f"merge_rate must lie in [0, 1], got {self.merge_rate!r}.")
        lo, hi = self.magnitude_range
        if not 0.0 < lo <= hi:
            raise ValueError(f"magnitude_range must satisfy 0 < low <= high, got {self.magnitude_range!r}.")
        for name in ("leakage", "noise", "zipf_exponent"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity {self.nonlinearity!r} does not exist; choose one of {', '.join(NONLINEARITIES)}."
            )
        if not self.nonlinearity_scale > 0:
            raise ValueError(f"nonlinearity_scale must be > 0, got {self.nonlinearity_scale!r}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["magnitude_range"] = list(self.magnitude_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HierarchicalSelectionConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; expected a subset of {sorted(known)}.")
        return cls(**d)
