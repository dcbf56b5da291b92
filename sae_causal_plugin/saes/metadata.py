"""The learned hierarchy saved beside a SAELens SAE directory (``hierarchy.json``).

Stock SAELens reads ``cfg.json`` and ``sae_weights.safetensors`` and ignores other files, so a
directory written by a hierarchical SAE loads anywhere SAELens loads SAEs; the plugin reads the
hierarchy back with :func:`load_hierarchy`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HIERARCHY_FILENAME = "hierarchy.json"
FORMAT_VERSION = 1


@dataclass
class HierarchyMetadata:
    """What a hierarchical SAE learned about its own latents.

    Attributes:
        architecture: the training architecture (e.g. ``hierarchical_batchtopk``).
        edges: concept-graph edges ``(child, parent, P(parent | child))``, child -> parent
            (fine -> coarse), recovered from the latents' co-firing during the last finished
            training window (minimal parent sets).
        selection_map: entries ``(child, parent, weight)`` of the gradient-learned selection
            map above its threshold (empty when the selection terms are off).
        levels: level of each latent on an edge (0 = most abstract), from the edge DAG.
        firing_rates: fraction of training samples in which each latent fired, if tracked.
        minimality: the minimality coefficients the SAE was trained with.
    """

    architecture: str
    edges: list[tuple[int, int, float]] = field(default_factory=list)
    levels: dict[int, int] = field(default_factory=dict)
    selection_map: list[tuple[int, int, float]] = field(default_factory=list)
    firing_rates: list[float] | None = None
    minimality: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_edges(cls, *, architecture: str, edges: list[tuple[int, int, float]],
                   selection_map: list[tuple[int, int, float]] | None = None,
                   firing_rates: list[float] | None = None,
                   minimality: dict[str, Any] | None = None) -> HierarchyMetadata:
        """Build the metadata, keeping an acyclic edge set and computing levels."""
        kept = _acyclic(edges, firing_rates)
        return cls(architecture=architecture, edges=kept, levels=_levels(kept),
                   selection_map=list(selection_map or []), firing_rates=firing_rates,
                   minimality=dict(minimality or {}))

    def to_concept_graph(self) -> Any:
        """The saved hierarchy as a :class:`sae_causal_plugin.graph.ConceptGraph`."""
        from sae_causal_plugin.graph import ConceptGraph

        graph = ConceptGraph()
        for node, level in self.levels.items():
            rate = self.firing_rates[node] if self.firing_rates else None
            graph.add_concept(node, level=level, firing_rate=rate)
        for child, parent, p in self.edges:
            graph.add_edge(child, parent, p_parent_given_child=p)
        return graph

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["edges"] = [list(e) for e in self.edges]
        data["selection_map"] = [list(e) for e in self.selection_map]
        data["levels"] = {str(k): v for k, v in self.levels.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HierarchyMetadata:
        return cls(
            architecture=data["architecture"],
            edges=[(int(c), int(p), float(w)) for c, p, w in data.get("edges", [])],
            levels={int(k): int(v) for k, v in data.get("levels", {}).items()},
            selection_map=[(int(c), int(p), float(w)) for c, p, w in data.get("selection_map", [])],
            firing_rates=data.get("firing_rates"),
            minimality=dict(data.get("minimality", {})),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )


def save_hierarchy(meta: HierarchyMetadata, directory: str | Path) -> Path:
    """Write ``hierarchy.json`` into ``directory`` atomically (never half-written; umask permissions)."""
    from sae_causal_plugin._files import staged_file

    target = Path(directory) / HIERARCHY_FILENAME
    with staged_file(target) as tmp:
        tmp.write_text(json.dumps(meta.to_dict()))
    return target


def load_hierarchy(directory: str | Path) -> HierarchyMetadata:
    """Read the hierarchy a hierarchical SAE saved beside its weights (checked; ``ValueError`` names the file)."""
    from sae_causal_plugin._validation import FileFormatError, check_keys, read_json_file

    path = Path(directory) / HIERARCHY_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {HIERARCHY_FILENAME} in {directory}: it is written by save_inference_model of a "
            "sae_causal_plugin hierarchical SAE; stock SAELens SAEs have none (use "
            "recover_concept_graph to estimate a hierarchy from activations instead)."
        )
    fix = "re-save the SAE with save_inference_model, or delete the file (the SAE loads without it)"
    data = read_json_file(path, fix=fix)
    fields = [f.name for f in dataclasses.fields(HierarchyMetadata)]
    check_keys(data, path, required=("architecture",), optional=fields, fix=fix)
    version = data.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise FileFormatError(path, f"format_version {version!r} is not supported (this package reads "
                                    f"{FORMAT_VERSION})", "upgrade sae-causal-plugin")
    try:
        return HierarchyMetadata.from_dict(data)
    except (TypeError, ValueError, AttributeError) as err:
        raise FileFormatError(path, f"a field has the wrong type ({err})", fix) from None


def _acyclic(edges: list[tuple[int, int, float]],
             rates: list[float] | None) -> list[tuple[int, int, float]]:
    """Drop the weaker direction of 2-cycles, then any edge that would close a longer cycle.

    Edges are considered strongest first (ties: the parent that fires more often wins), so the
    result is deterministic.
    """
    def rate(i: int) -> float:
        return rates[i] if rates is not None else 0.0

    order = sorted(edges, key=lambda e: (-e[2], -(rate(e[1]) - rate(e[0])), e[0], e[1]))
    parents: dict[int, set[int]] = {}
    kept: list[tuple[int, int, float]] = []
    for child, parent, weight in order:
        if _reaches(parents, parent, child):
            continue
        parents.setdefault(child, set()).add(parent)
        kept.append((child, parent, weight))
    return sorted(kept)


def _reaches(parents: dict[int, set[int]], start: int, goal: int) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(parents.get(node, ()))
    return False


def _levels(edges: list[tuple[int, int, float]]) -> dict[int, int]:
    """Level 0 for latents with no parent, else one more than the deepest parent."""
    parents: dict[int, list[int]] = {}
    nodes: set[int] = set()
    for child, parent, _ in edges:
        parents.setdefault(child, []).append(parent)
        nodes.update((child, parent))
    levels: dict[int, int] = {}

    def level(node: int) -> int:
        if node not in levels:
            levels[node] = 1 + max((level(p) for p in parents.get(node, [])), default=-1)
        return levels[node]

    for node in sorted(nodes):
        level(node)
    return levels
