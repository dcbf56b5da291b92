"""The figures each toy world must reach (issues 4 and 5), shown beside the measured values."""

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
    "off_target_preserved": Target("every other concept stays as it was", ">=", 0.90, percent=True),
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
