"""Configuration of the minimality terms, shared by every hierarchical architecture."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


#: Fields of the experimental terms removed from the config (selection hinge, selection map, graph
#: sparsity: they lowered F1 when switched on, README "The minimality terms") and of the
#: ``hierarchy.json`` tracking (a file nothing read), and the random row subset of the compression
#: term (candidate neighbours replaced it: ``compression_neighbours``).
REMOVED_FIELDS = (
    "selection_coefficient", "selection_warm_up_steps", "selection_threshold", "selection_edges",
    "selection_min_conditional", "selection_refresh_every", "selection_fit_coefficient",
    "graph_sparsity_coefficient", "selection_max_latents", "hierarchy_update_every", "hierarchy_window",
    "compression_max_rows",
)
#: The removed fields that switched a term on when positive (the others did nothing without them).
REMOVED_SWITCHES = {
    "selection_coefficient": "the selection-consistency hinge",
    "graph_sparsity_coefficient": "the graph-sparsity term on the learned selection map",
}


@dataclass(kw_only=True)
class MinimalityConfig:
    """Coefficients of the minimality terms (mixed into each training-SAE config).

    Every term is its own entry of SAELens's ``losses`` dict with a linear warm-up (SAELens
    ``TrainCoefficientConfig``). The defaults work without tuning on SAELens synthetic
    hierarchies and on the project's toy worlds.

    Args:
        nested_coefficient: weight of ``nested_loss``: the first ``level_widths`` latents reconstruct alone; 0 = off.
        nested_warm_up_steps: linear warm-up of ``nested_coefficient``.
        level_widths: coarse prefix sizes (increasing, each < ``d_sae``); ``None``: ``d_sae/16`` and ``d_sae/4``.
        compression_coefficient: weight of ``compression_loss``: no two decoder rows may be near-copies (absorption).
        compression_margin: |cos| of two decoder rows that costs nothing (0.3: best of 0.2 / 0.3 / 0.4, synthetic).
        compression_warm_up_steps: linear warm-up of ``compression_coefficient``.
        compression_neighbours: candidate rows each decoder row is compared with (its most aligned ones).
        compression_refresh_rows: decoder rows whose candidates are renewed per step (one matmul of that many rows).
        compression_max_pairs: candidate pairs compared per step; more are sampled down to this many (unbiased).
        revival_window: steps without firing after which a latent is dead for the auxiliary loss; 0 defers to SAELens.
    """

    nested_coefficient: float = 0.0
    nested_warm_up_steps: int = 0
    level_widths: list[int] | None = None
    compression_coefficient: float = 10.0
    compression_margin: float = 0.3
    compression_warm_up_steps: int = 0
    compression_neighbours: int = 16
    compression_refresh_rows: int = 128
    compression_max_pairs: int = 4096
    revival_window: int = 50

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> Any:
        """SAELens's ``from_dict``, after :func:`without_removed_fields` (old configs load)."""
        return super().from_dict(without_removed_fields(config_dict))  # type: ignore[misc]

    def resolved_level_widths(self) -> list[int]:
        """The coarse prefix sizes actually used (the defaults resolved against ``d_sae``)."""
        d_sae = getattr(self, "d_sae")
        if self.level_widths is not None:
            return list(self.level_widths)
        return sorted({w for w in (d_sae // 16, d_sae // 4) if 0 < w < d_sae})

    def validate_minimality(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what to change."""
        _non_negative(self, "nested_coefficient", "compression_coefficient")
        _non_negative_int(self, "nested_warm_up_steps", "compression_warm_up_steps", "revival_window")
        _in_unit_interval(self, "compression_margin")
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
        _non_negative_int(self, "compression_neighbours", "compression_refresh_rows", "compression_max_pairs",
                          least=1)


def without_removed_fields(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the :data:`REMOVED_FIELDS` of older versions.

    A removed field is dropped when it left its term off (the SAE trains exactly as before);
    ``ValueError`` names it when it switched a removed term on, since this version cannot train
    that SAE.
    """
    for name, term in REMOVED_SWITCHES.items():
        value = config.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            raise ValueError(
                f"{name}={value!r} switches on {term}, which this version no longer has (it lowered F1 "
                f"on the synthetic-hierarchy benchmark; README, 'The minimality terms'); delete "
                f"{name} from the config (or set it to 0) to train without it."
            )
    return {key: value for key, value in config.items() if key not in REMOVED_FIELDS}


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


def _non_negative_int(cfg: Any, *names: str, least: int = 0) -> None:
    """Each field must be an integer >= ``least``; the message gives the field's default."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r} (default {defaults[name]}).")


def _in_unit_interval(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
