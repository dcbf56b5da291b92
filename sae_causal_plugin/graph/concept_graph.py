"""`ConceptGraph`: a DAG of concepts with per-edge co-firing statistics.

Edges point **child -> parent** (fine -> coarse), the direction of *selection* in the
hierarchical selection model: ``dog -> animal``.  Node ids are ``int`` (an SAE latent
index) or ``str`` (e.g. ``"L1:12"`` for multi-level graphs, ``f"L{level}:{index}"``).

The class is a thin wrapper around a :class:`networkx.DiGraph`; everything it stores is
JSON-able so that :meth:`ConceptGraph.save_json` / :meth:`ConceptGraph.load_json` round
trip exactly (including ``int`` vs ``str`` ids).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import networkx as nx

from sae_causal_plugin._plain_json import plain_json

NodeId = Union[int, str]

#: Edge statistics written by :func:`~sae_causal_plugin.graph.recover_concept_graph`.
EDGE_STAT_KEYS = (
    "count_child",
    "count_parent",
    "count_both",
    "p_parent_given_child",
    "p_child_given_parent",
    "lift",
)

_FORMAT_VERSION = 1


def _check_node(node: Any) -> NodeId:
    """Return ``node`` as a plain ``int`` or ``str`` id, or raise ``TypeError``."""
    if isinstance(node, bool):
        raise TypeError(f"concept ids must be int or str, got bool {node!r}")
    if isinstance(node, str):
        return node
    if isinstance(node, numbers.Integral):
        return int(node)
    if hasattr(node, "item") and getattr(node, "ndim", None) == 0:  # 0-d tensor / array
        return _check_node(node.item())
    raise TypeError(f"concept ids must be int or str, got {type(node).__name__} {node!r}")


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): plain_json(v, f"attribute {k!r}") for k, v in attrs.items()}


class ConceptGraph:
    """A DAG of concepts; edges point child -> parent (fine -> coarse).

    Node attributes: ``level`` (int or None, 0 = most abstract), ``label`` (str),
    ``firing_count`` (int) and any extra JSON-able attribute.  Edge attributes: the
    statistics in :data:`EDGE_STAT_KEYS` plus any extra JSON-able attribute.

    Example:
        >>> g = ConceptGraph()
        >>> g.add_edge("dog", "animal", p_parent_given_child=1.0)
        >>> g.ancestors("dog")
        {'animal'}
    """

    def __init__(self, graph: nx.DiGraph | None = None) -> None:
        self._g = nx.DiGraph()
        #: free-form JSON-able metadata (e.g. recovery thresholds); ignored by ``==``.
        self.meta: dict[str, Any] = {}
        if graph is not None:
            self._g = ConceptGraph.from_networkx(graph)._g

    # ------------------------------------------------------------------ building
    def add_concept(self, node: NodeId, **attrs: Any) -> None:
        """Add ``node`` (or update its attributes) with JSON-able ``attrs``."""
        node = _check_node(node)
        self._g.add_node(node, **_clean_attrs(attrs))

    def add_edge(self, child: NodeId, parent: NodeId, **stats: Any) -> None:
        """Add the selection edge ``child -> parent`` with statistics ``stats``.

        Missing endpoints are added as concepts without attributes.

        Raises:
            ValueError: on a self-loop, or when the edge would close a cycle.
        """
        child, parent = _check_node(child), _check_node(parent)
        if child == parent:
            raise ValueError(f"self-loop {child!r} -> {parent!r} is not allowed in a ConceptGraph")
        if child in self._g and parent in self._g and nx.has_path(self._g, parent, child):
            raise ValueError(
                f"edge {child!r} -> {parent!r} would create a cycle: {parent!r} already "
                f"reaches {child!r}; a ConceptGraph must stay acyclic"
            )
        self._g.add_edge(child, parent, **_clean_attrs(stats))

    # ------------------------------------------------------------------ queries
    @property
    def concepts(self) -> list[NodeId]:
        """All concept ids, in insertion order."""
        return list(self._g.nodes)

    @property
    def edges(self) -> list[tuple[NodeId, NodeId]]:
        """All edges as ``(child, parent)`` pairs."""
        return list(self._g.edges)

    def concept_attrs(self, node: NodeId) -> dict[str, Any]:
        """A copy of the attributes of ``node``."""
        return dict(self._g.nodes[node])

    def edge_stats(self, child: NodeId, parent: NodeId) -> dict[str, Any]:
        """A copy of the statistics of edge ``child -> parent`` (KeyError if absent)."""
        if not self._g.has_edge(child, parent):
            raise KeyError(f"no edge {child!r} -> {parent!r}")
        return dict(self._g.edges[child, parent])

    def parents(self, node: NodeId) -> list[NodeId]:
        """Direct coarser concepts of ``node``."""
        return list(self._g.successors(node))

    def children(self, node: NodeId) -> list[NodeId]:
        """Direct finer concepts of ``node``."""
        return list(self._g.predecessors(node))

    def ancestors(self, node: NodeId) -> set[NodeId]:
        """All coarser concepts: everything reachable from ``node`` along edges."""
        return set(nx.descendants(self._g, node))

    def descendants(self, node: NodeId) -> set[NodeId]:
        """All finer concepts: everything with a path to ``node``."""
        return set(nx.ancestors(self._g, node))

    def levels(self) -> dict[NodeId, int]:
        """Level of every concept (0 = most abstract).

        A stored ``level`` attribute wins; for concepts without one the level is
        computed from the DAG: roots (no parents) are level 0, any other concept is
        ``1 + max(level of its parents)``.
        """
        out: dict[NodeId, int] = {}
        # parents come before children in a topological order of the reversed graph
        for node in nx.topological_sort(self._g.reverse(copy=False)):
            stored = self._g.nodes[node].get("level")
            if stored is not None:
                out[node] = int(stored)
                continue
            pars = list(self._g.successors(node))
            out[node] = 0 if not pars else 1 + max(out[p] for p in pars)
        return out

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def __contains__(self, node: object) -> bool:
        try:
            return _check_node(node) in self._g
        except TypeError:
            return False

    def __iter__(self):
        return iter(self._g.nodes)

    def __eq__(self, other: object) -> bool:
        """Structural equality: same concept ids and same edges (attributes ignored)."""
        if not isinstance(other, ConceptGraph):
            return NotImplemented
        return set(self._g.nodes) == set(other._g.nodes) and set(self._g.edges) == set(
            other._g.edges
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ConceptGraph(n_concepts={len(self)}, n_edges={self._g.number_of_edges()})"

    # ------------------------------------------------------------------ conversion
    def to_networkx(self) -> nx.DiGraph:
        """A deep copy as a :class:`networkx.DiGraph` (edges child -> parent; ``meta`` in ``.graph``)."""
        g = self._g.copy()
        g.graph.update(self.meta)
        return g

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph) -> ConceptGraph:
        """Build from a DiGraph whose edges point child -> parent (must be a DAG)."""
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"graph must be a networkx.DiGraph, got {type(graph).__name__}")
        out = cls()
        out.meta = _clean_attrs(graph.graph)
        for node, attrs in graph.nodes(data=True):
            out.add_concept(node, **attrs)
        for child, parent, attrs in graph.edges(data=True):
            out.add_edge(child, parent, **attrs)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; node ids keep their ``int`` / ``str`` type."""
        return {
            "format": "sae_causal_plugin.ConceptGraph",
            "version": _FORMAT_VERSION,
            "meta": _clean_attrs(self.meta),
            "nodes": [{"id": n, "attrs": dict(a)} for n, a in self._g.nodes(data=True)],
            "edges": [
                {"child": c, "parent": p, "stats": dict(a)}
                for c, p, a in self._g.edges(data=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConceptGraph:
        """Inverse of :meth:`to_dict`."""
        out = cls()
        out.meta = dict(data.get("meta", {}))
        for item in data["nodes"]:
            out.add_concept(item["id"], **item.get("attrs", {}))
        for item in data["edges"]:
            out.add_edge(item["child"], item["parent"], **item.get("stats", {}))
        return out

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (non-finite floats are written as NaN/Infinity)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path: str | Path) -> ConceptGraph:
        """Read a file written by :meth:`save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_graphml(self, path: str | Path) -> None:
        """Write GraphML (ids become strings; list/dict attributes are JSON strings).

        The original id type is kept in the node attribute ``id_type`` (``"int"`` /
        ``"str"``) so that a reader can restore it.
        """
        g = nx.DiGraph()
        for node, attrs in self._g.nodes(data=True):
            g.add_node(
                str(node), id_type=type(node).__name__, **_graphml_attrs(attrs)
            )
        for c, p, attrs in self._g.edges(data=True):
            g.add_edge(str(c), str(p), **_graphml_attrs(attrs))
        nx.write_graphml(g, str(path))

    def to_dot(self, path: str | Path | None = None) -> str:
        """Graphviz DOT text (coarse levels at the top); written to ``path`` if given."""
        levels = self.levels()
        lines = [
            "digraph ConceptGraph {",
            "  rankdir=BT;",
            '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontsize=10];',
        ]
        ids = {n: f"n{i}" for i, n in enumerate(self._g.nodes)}
        for node, attrs in self._g.nodes(data=True):
            lines.append(f'  {ids[node]} [label="{_dot_escape(_node_label(node, attrs))}"];')
        by_level: dict[int, list[NodeId]] = {}
        for node, lvl in levels.items():
            by_level.setdefault(lvl, []).append(node)
        for lvl in sorted(by_level):
            members = " ".join(ids[n] + ";" for n in by_level[lvl])
            lines.append(f"  {{ rank=same; {members} }}  // level {lvl}")
        for c, p, attrs in self._g.edges(data=True):
            w = attrs.get("p_parent_given_child")
            extra = ""
            if isinstance(w, (int, float)) and math.isfinite(w):
                extra = f' [label="{w:.2f}", penwidth={0.5 + 2.5 * max(0.0, min(1.0, w)):.2f}]'
            lines.append(f"  {ids[c]} -> {ids[p]}{extra};")
        lines.append("}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def draw(self, path: str | Path, max_nodes: int = 200, title: str | None = None) -> None:
        """Write a layered PNG: coarse levels at the top, fine levels at the bottom.

        When the graph has more than ``max_nodes`` concepts, the ``max_nodes`` concepts
        with the most edges (ties: highest ``firing_count``) are drawn.  Edge width grows
        with ``p_parent_given_child``.
        """
        from ._draw import draw_concept_graph

        draw_concept_graph(self, path, max_nodes=max_nodes, title=title)

    # ------------------------------------------------------------------ misc
    def subgraph(self, nodes: Iterable[NodeId]) -> ConceptGraph:
        """The induced sub-graph on ``nodes`` (attributes copied)."""
        out = ConceptGraph()
        out._g = self._g.subgraph([_check_node(n) for n in nodes]).copy()
        out.meta = dict(self.meta)
        return out

    def node_label(self, node: NodeId) -> str:
        """Display label: the ``label`` attribute, else the id."""
        return _node_label(node, self._g.nodes[node])


def _node_label(node: Hashable, attrs: Mapping[str, Any]) -> str:
    label = attrs.get("label")
    return str(label) if label else str(node)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _graphml_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        out[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out
