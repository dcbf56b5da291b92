"""What each figure of a toy world means, which are settings, and the figures each world must reach
(issues 4 and 5), shown beside the measured values."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    """``value <op> bound`` must hold; ``percent`` shows value and bound as percentages."""

    label: str
    op: str
    bound: float
    percent: bool = False

    def met(self, value: Any) -> bool | None:
        """Whether ``value`` reaches the target; ``None`` when it is not a finite number."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return bool(_OPS[self.op](float(value), self.bound))

    def describe(self) -> str:
        bound = f"{100 * self.bound:g}%" if self.percent else f"{self.bound:g}"
        return f"{self.op} {bound}"


LANGUAGE_TARGETS: dict[str, Target] = {
    "edge_f1": Target("edge F1, recovered graph vs true taxonomy", ">=", 0.85),
    "steer_mass_ratio": Target("steering: mass of the category's items at the entity slot, after / before", ">=", 5.0),
    "ppl_increase": Target("steering: perplexity increase on text about other categories", "<=", 0.10, percent=True),
    "ablation_mass_fraction": Target("ablating a subcategory with its descendants: items' mass left", "<", 0.10, percent=True),
    "seconds": Target("wall time of the whole run, seconds", "<", 300.0),
}

DIFFUSION_TARGETS: dict[str, Target] = {
    "edge_f1": Target("edge F1, recovered timestep graph vs true hierarchy", ">=", 0.80),
    "steer_success": Target("steering changes the detected concept", ">=", 0.90, percent=True),
    "off_target_preserved": Target("every other concept stays as it was (over the samples of concepts that have a latent)", ">=", 0.90, percent=True),
    "ablation_success": Target("ablating a parent with its descendants removes it", ">=", 0.95, percent=True),
    "seconds": Target("wall time of the whole run, seconds", "<", 300.0),
}

WORLD_TARGETS: dict[str, dict[str, Target]] = {
    "language": LANGUAGE_TARGETS,
    "diffusion": DIFFUSION_TARGETS,
}


def targets_for(world: str) -> dict[str, Target]:
    """Targets of ``world`` (``{}`` for a world without published targets)."""
    key = world.lower().removesuffix("_world").removesuffix("-world").removesuffix(" world")
    return WORLD_TARGETS.get(key, {})


#: One line per figure a world reports: what it measures (the report's "what it measures" column).
DESCRIPTIONS: dict[str, str] = {
    "edge_precision": "recovered edges that are true edges (by the concepts their latents were matched to)",
    "edge_recall": "true edges that were recovered",
    "n_matched_latents": "latents matched to a true concept (firing F1)",
    "n_recovered_edges": "edges of the recovered graph",
    "n_true_edges": "edges of the true hierarchy",
    "steer_mass_ratio_min": "steering: the smallest after / before mass ratio over the categories",
    "ppl_increase_max": "steering: the largest perplexity increase over the categories",
    "ablation_mass_fraction_max": "ablation: the largest items' mass left over the subcategories",
    "layer_edge_precision": "levels = layers graph (one SAE per layer, trained jointly): edge precision",
    "layer_edge_recall": "levels = layers graph: edge recall",
    "layer_edge_f1": "levels = layers graph: edge F1",
    "layer_n_edges": "levels = layers graph: edges",
    "layer_n_matched": "levels = layers graph: latents matched to a true concept",
    "n_samples": "generated images the steering and ablation figures are measured on",
    "n_steered_samples": "generated images actually steered (concepts with a latent); off-target figures are over these",
    "concepts_without_latent": "concepts no latent was matched to: not steered, counted as failures in steer_success",
    "n_latent_edges": "edges between latents in the timestep graph",
    "n_unassigned_edges": "timestep-graph edges touching a latent matched to no concept (counted as wrong)",
    "recovered_concept_edges": "concept edges (child, parent) the timestep graph recovered",
    "missing_edges": "true concept edges the timestep graph did not recover",
    "wrong_edges": "recovered concept edges that are not in the true hierarchy",
    "best_f1": "per concept and timestep: the best firing F1 of any latent (how well the SAE has the concept)",
    "sae": "per timestep: the SAE's explained variance and L0",
    "steering_per_concept": "per concept: share of samples whose concept changed, and whose other concepts stayed",
    "ablation_per_concept": "per parent concept: share of samples where ablating it with its descendants removed it",
    "per_category": "per category: steering figures (mass before / after, perplexity)",
    "per_subcategory": "per subcategory: items' mass before / after ablating it with its descendants",
    "steer_hint": "the demo's suggested steer command: concept, prompt, the smallest tried value whose greedy continuation names one of its items, and whether one did",
    "steer_sweep": "steering figures at other steering scales (the trade-off table)",
}

#: Keys of a run's metrics that are settings, not measurements (shown in their own table).
SETTINGS: dict[str, str] = {
    "seed": "seed of the whole run",
    "hook_name": "hook point the SAE reads and steering edits",
    "read": "token positions the SAE was trained and the graph read on",
    "steer_scale": "steering value, in units of the latent's mean firing activation",
    "steer_positions": "positions steering and ablation act on",
    "config": "the run's configuration",
}
