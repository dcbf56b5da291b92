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
from collections.abc import Iterable, Mapping
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
GRAPH_FORMAT = "sae_causal_plugin.ConceptGraph"
_GRAPH_FIX = "write it with ConceptGraph.save_json or 'sae-causal graph'"


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
            "format": GRAPH_FORMAT,
            "version": _FORMAT_VERSION,
            "meta": _clean_attrs(self.meta),
            "nodes": [{"id": n, "attrs": dict(a)} for n, a in self._g.nodes(data=True)],
            "edges": [
                {"child": c, "parent": p, "stats": dict(a)}
                for c, p, a in self._g.edges(data=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> ConceptGraph:
        """Inverse of :meth:`to_dict`, checked strictly.

        ``data`` must have ``format`` ``"sae_causal_plugin.ConceptGraph"``, a supported
        ``version``, ``nodes`` and ``edges`` lists and no other key than ``meta``; every edge
        endpoint must be a declared node.  ``ValueError`` (naming ``source``, the file the dict
        came from, when given) otherwise.
        """
        from sae_causal_plugin._validation import FileFormatError, check_format, check_keys

        where = str(source) if source is not None else "concept graph"
        fix = _GRAPH_FIX

        def bad(problem: str) -> FileFormatError:
            return FileFormatError(where, problem, fix)

        if not isinstance(data, Mapping):
            raise bad(f"expected a JSON object with 'format', 'nodes' and 'edges', found a {type(data).__name__}")
        check_format(data, where, format=GRAPH_FORMAT, version=_FORMAT_VERSION, fix=fix)
        check_keys(data, where, required=("format", "version", "nodes", "edges"), optional=("meta",), fix=fix)
        for key in ("nodes", "edges"):
            if not isinstance(data[key], list):
                raise bad(f"{key!r} must be a list, found {type(data[key]).__name__}")
        meta = data.get("meta", {})
        if not isinstance(meta, Mapping):
            raise bad(f"'meta' must be an object, found {type(meta).__name__}")
        out = cls()
        out.meta = dict(meta)
        for i, item in enumerate(data["nodes"]):
            attrs = _checked_item(item, f"nodes[{i}]", ("id",), "attrs", where)
            try:
                node = _check_node(item["id"])
            except TypeError as err:
                raise bad(f"nodes[{i}]: {err}") from None
            if node in out._g:
                raise bad(f"nodes[{i}]: concept {node!r} is declared twice")
            out.add_concept(node, **attrs)
        for i, item in enumerate(data["edges"]):
            stats = _checked_item(item, f"edges[{i}]", ("child", "parent"), "stats", where)
            try:
                child, parent = _check_node(item["child"]), _check_node(item["parent"])
            except TypeError as err:
                raise bad(f"edges[{i}]: {err}") from None
            undeclared = [n for n in (child, parent) if n not in out._g]
            if undeclared:
                raise bad(f"edges[{i}] {child!r} -> {parent!r}: {undeclared} not declared in 'nodes'")
            if out._g.has_edge(child, parent):
                raise bad(f"edges[{i}]: edge {child!r} -> {parent!r} is listed twice")
            try:
                out.add_edge(child, parent, **stats)
            except ValueError as err:
                raise bad(f"edges[{i}]: {err}") from None
        return out

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (non-finite floats are written as NaN/Infinity), atomically."""
        from sae_causal_plugin._files import staged_file

        with staged_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path: str | Path) -> ConceptGraph:
        """Read a file written by :meth:`save_json` (``ValueError`` naming the file when it is not one)."""
        from sae_causal_plugin._validation import read_json_file

        return cls.from_dict(read_json_file(path, fix=_GRAPH_FIX), source=path)

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
        from sae_causal_plugin._files import staged_file

        with staged_file(path) as tmp:
            nx.write_graphml(g, str(tmp))

    def to_dot(self, path: str | Path | None = None) -> str:
        """Graphviz DOT text (coarse levels at the top, one ``rank=same`` group per level), built with
        pydot; written to ``path`` if given."""
        import pydot

        dot = pydot.Dot("ConceptGraph", graph_type="digraph", rankdir="BT")
        dot.set_node_defaults(shape="box", style="rounded,filled", fillcolor="#eef3fb", fontsize="10")
        ids = {n: f"n{i}" for i, n in enumerate(self._g.nodes)}
        for node in self._g.nodes:
            dot.add_node(pydot.Node(ids[node], label=self.node_label(node)))
        by_level: dict[int, list[NodeId]] = {}
        for node, lvl in self.levels().items():
            by_level.setdefault(lvl, []).append(node)
        for lvl in sorted(by_level):
            rank = pydot.Subgraph(f"level_{lvl}", rank="same")
            for n in by_level[lvl]:
                rank.add_node(pydot.Node(ids[n]))
            dot.add_subgraph(rank)
        for c, p, attrs in self._g.edges(data=True):
            w = attrs.get("p_parent_given_child")
            extra = {}
            if isinstance(w, (int, float)) and math.isfinite(w):
                extra = {"label": f"{w:.2f}", "penwidth": f"{0.5 + 2.5 * max(0.0, min(1.0, w)):.2f}"}
            dot.add_edge(pydot.Edge(ids[c], ids[p], **extra))
        text = dot.to_string()
        if path is not None:
            from sae_causal_plugin._files import staged_file

            with staged_file(path) as tmp:
                tmp.write_text(text)
        return text

    def draw(self, path: str | Path, max_nodes: int = 200, title: str | None = None) -> None:
        """Write a layered PNG: one labelled row per level (coarse at the top), no overlapping labels,
        concepts on no edge listed in the legend instead of placed.

        When the graph has more than ``max_nodes`` concepts, the ``max_nodes`` concepts
        with the most edges (ties: highest ``firing_count``) are drawn.  Edge width grows
        with ``p_parent_given_child``.
        """
        from sae_causal_plugin._files import staged_file

        from ._draw import draw_concept_graph

        with staged_file(path) as tmp:
            draw_concept_graph(self, tmp, max_nodes=max_nodes, title=title)

    def draw_html(self, path: str | Path, title: str | None = None) -> None:
        """Write a standalone interactive HTML page (plotly, works offline): the same layered layout as
        :meth:`draw` with every concept placed; zoom and pan; hovering a concept shows its attributes,
        parents and children.  Meant for graphs too large for a readable PNG."""
        from sae_causal_plugin._files import staged_file

        from ._draw import write_interactive

        with staged_file(path) as tmp:
            write_interactive(self, tmp, title=title)

    # ------------------------------------------------------------------ misc
    def subgraph(self, nodes: Iterable[NodeId]) -> ConceptGraph:
        """The induced sub-graph on ``nodes`` (attributes copied)."""
        out = ConceptGraph()
        out._g = self._g.subgraph([_check_node(n) for n in nodes]).copy()
        out.meta = dict(self.meta)
        return out

    def node_label(self, node: NodeId) -> str:
        """Display label: the ``label`` attribute, else ``#i`` for an integer latent id, else the id."""
        label = self._g.nodes[node].get("label")
        if label:
            return str(label)
        return f"#{node}" if isinstance(node, int) else str(node)


def _checked_item(item: Any, name: str, ids: tuple[str, ...], attrs_key: str, where: str) -> dict[str, Any]:
    """The ``attrs`` / ``stats`` of one ``nodes`` / ``edges`` entry, after checking its keys."""
    from sae_causal_plugin._validation import FileFormatError, check_keys

    if not isinstance(item, Mapping):
        raise FileFormatError(where, f"{name} must be an object, found {type(item).__name__}", _GRAPH_FIX)
    check_keys(item, where, required=ids, optional=(attrs_key,), fix=_GRAPH_FIX, what=name)
    attrs = item.get(attrs_key, {})
    if not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs):
        raise FileFormatError(where, f"{name}: {attrs_key!r} must be an object", _GRAPH_FIX)
    return dict(attrs)


def _graphml_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        out[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out
