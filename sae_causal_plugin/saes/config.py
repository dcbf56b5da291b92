"""Configuration of the minimality terms, shared by every hierarchical architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(kw_only=True)
class MinimalityConfig:
    """Coefficients of the causal-minimality terms (mixed into each training-SAE config).

    Every term appears as its own entry of SAELens's ``losses`` dict and has a linear warm-up
    (SAELens ``TrainCoefficientConfig``). The defaults work without tuning on SAELens synthetic
    hierarchies and on the project's toy worlds.

    Args:
        nested_coefficient: weight of the coarse-to-fine reconstruction term
            (``nested_loss``): the first ``level_widths[i]`` latents must reconstruct alone.
            Off by default: on the synthetic-hierarchy benchmark it lowered F1 and MCC when
            combined with the other terms (see the README's figures).
        nested_warm_up_steps: linear warm-up of ``nested_coefficient``.
        level_widths: sizes of the coarse prefixes (strictly increasing, each < ``d_sae``);
            ``None`` uses ``d_sae/16`` and ``d_sae/4``.
        compression_coefficient: weight of the dictionary-compression term
            (``compression_loss``): decoder rows may not be near-copies of each other, which is
            what feature absorption and duplicated latents look like.
        compression_margin: absolute cosine between two decoder rows that costs nothing
            (0.3 was best of 0.2 / 0.3 / 0.4 on the synthetic-hierarchy benchmark).
        compression_warm_up_steps: linear warm-up of ``compression_coefficient``.
        compression_max_rows: rows compared per step; wider SAEs compare a fresh random
            subset each step so the cost stays bounded.
        selection_coefficient: weight of the selection-consistency hinge (``selection_loss``):
            when the learned selection map says latent ``p`` is a parent of latent ``c``,
            ``c`` firing without ``p`` is penalised through ``p``'s pre-activation. Off by
            default: on the synthetic-hierarchy benchmark the hinge locked in early, spurious
            co-firing and lowered F1 (0.50 against 0.75 without it); the saved hierarchy comes
            from co-firing statistics instead (``hierarchy_update_every``).
        selection_warm_up_steps: linear warm-up of ``selection_coefficient``.
        selection_edges: where the hinge's parent -> child edges come from: ``"map"``, the
            gradient-learned selection map; ``"cofiring"``, the concept graph of the latents'
            own co-firing statistics during training (edges with ``P(parent | child)`` of at
            least ``selection_min_conditional``, refreshed every ``selection_refresh_every``
            steps), which only tightens relations that are already nearly deterministic.
        selection_min_conditional: edge threshold for ``selection_edges="cofiring"``.
        selection_refresh_every: steps between refreshes of the co-firing edges.
        selection_threshold: a selection-map weight above this value is an edge.
        selection_fit_coefficient: weight of the fit of the selection map itself
            (``selection_fit_loss``; only the map receives its gradient).
        graph_sparsity_coefficient: L1 weight on the selection map (``graph_sparsity_loss``),
            the graph-minimality term: few parents per concept. The map (a dense
            ``d_sae x d_sae`` parameter) exists only when this or ``selection_coefficient`` is
            positive.
        selection_max_latents: the selection map is a dense ``d_sae x d_sae`` parameter; above
            this width it is not created and the selection terms are off.
        hierarchy_update_every: every this many training steps the batch's firing pattern is
            added to streaming co-firing statistics (sparse: only pairs that co-fire); the
            hierarchy saved beside the SAE is the concept graph recovered from them. 0 = off.
        hierarchy_window: the statistics restart every this many steps, so the saved hierarchy
            describes the latents of the last finished window, not those of early training.
        revival_window: a latent that has not fired for this many steps counts as dead for the
            auxiliary loss that revives it (SAELens's own window is its trainer's
            ``dead_feature_window``); 0 defers to the trainer.
    """

    nested_coefficient: float = 0.0
    nested_warm_up_steps: int = 0
    level_widths: list[int] | None = None
    compression_coefficient: float = 10.0
    compression_margin: float = 0.3
    compression_warm_up_steps: int = 0
    compression_max_rows: int = 4096
    selection_coefficient: float = 0.0
    selection_warm_up_steps: int = 200
    selection_threshold: float = 0.5
    selection_edges: str = "map"
    selection_min_conditional: float = 0.8
    selection_refresh_every: int = 100
    selection_fit_coefficient: float = 1.0
    graph_sparsity_coefficient: float = 0.0
    selection_max_latents: int = 8192
    hierarchy_update_every: int = 16
    hierarchy_window: int = 1000
    revival_window: int = 50

    def resolved_level_widths(self) -> list[int]:
        """The coarse prefix sizes actually used (the defaults resolved against ``d_sae``)."""
        d_sae = getattr(self, "d_sae")
        if self.level_widths is not None:
            return list(self.level_widths)
        return sorted({w for w in (d_sae // 16, d_sae // 4) if 0 < w < d_sae})

    def validate_minimality(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what to change."""
        _non_negative(self, "nested_coefficient", "compression_coefficient", "selection_coefficient",
                      "selection_fit_coefficient", "graph_sparsity_coefficient")
        _non_negative_int(self, "nested_warm_up_steps", "compression_warm_up_steps", "selection_warm_up_steps",
                          "revival_window", "selection_max_latents",
                          "hierarchy_update_every", "hierarchy_window",
                          "selection_refresh_every")
        _in_unit_interval(self, "compression_margin", "selection_threshold",
                          "selection_min_conditional")
        if self.selection_edges not in ("map", "cofiring"):
            raise ValueError(
                f"selection_edges must be 'map' or 'cofiring', got {self.selection_edges!r}."
            )
        if self.selection_edges == "cofiring" and self.selection_coefficient > 0 and (
                self.hierarchy_update_every == 0):
            raise ValueError(
                "selection_edges='cofiring' needs co-firing statistics: set "
                "hierarchy_update_every > 0."
            )
        widths = self.resolved_level_widths()
        d_sae = getattr(self, "d_sae")
        if any(not isinstance(w, int) or not 0 < w < d_sae for w in widths) or widths != sorted(set(widths)):
            raise ValueError(
                f"level_widths must be strictly increasing integers in (0, d_sae={d_sae}), got "
                f"{self.level_widths!r}; leave it None for the defaults d_sae/16 and d_sae/4."
            )
        if self.nested_coefficient > 0 and getattr(self, "normalize_activations", "none") in (
                "layer_norm", "constant_norm_rescale", "covariance_whitening"):
            raise ValueError(
                "nested_coefficient > 0 needs normalize_activations 'none' or "
                "'expected_average_only_in'; set nested_coefficient=0 to use "
                f"{getattr(self, 'normalize_activations')!r}."
            )
        if self.compression_max_rows < 2:
            raise ValueError(
                f"compression_max_rows must be at least 2, got {self.compression_max_rows}; "
                "set it to the number of decoder rows compared per step (default 4096)."
            )


def validate_k(k: Any) -> None:
    """``k`` must be a positive finite number of active latents."""
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not math.isfinite(k) or k <= 0:
        raise ValueError(f"k must be a positive number of active latents per sample, got {k!r}.")


def _non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{name} must be a finite number >= 0, got {value!r}; use 0 to switch the term off."
            )


def _non_negative_int(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")


def _in_unit_interval(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
