"""Layered PNG rendering of a :class:`ConceptGraph` with matplotlib (Agg, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .concept_graph import ConceptGraph, NodeId


def _select_nodes(graph: ConceptGraph, max_nodes: int) -> list[NodeId]:
    nodes = graph.concepts
    if len(nodes) <= max_nodes:
        return nodes
    g = graph._g  # noqa: SLF001 - same package

    def score(n: NodeId) -> tuple[int, int, str]:
        return (-g.degree(n), -int(g.nodes[n].get("firing_count") or 0), str(n))

    return sorted(nodes, key=score)[:max_nodes]


def _id_key(n: NodeId) -> tuple[int, int, str]:
    return (0, n, "") if isinstance(n, int) else (1, 0, str(n))


def layered_positions(graph: ConceptGraph) -> dict[NodeId, tuple[float, float]]:
    """Positions with level 0 at y = 0 and finer levels below (y = -level).

    Each concept is placed near the mean x of its parents (barycentre heuristic, one
    top-down pass), then pushed right to keep a spacing of at least 1 within its level.
    """
    levels = graph.levels()
    by_level: dict[int, list[NodeId]] = {}
    for n, lvl in levels.items():
        by_level.setdefault(lvl, []).append(n)
    pos: dict[NodeId, tuple[float, float]] = {}
    for lvl in sorted(by_level):
        desired: dict[NodeId, float] = {}
        orphans: list[NodeId] = []
        for n in by_level[lvl]:
            xs = [pos[p][0] for p in graph.parents(n) if p in pos]
            if xs:
                desired[n] = sum(xs) / len(xs)
            else:
                orphans.append(n)
        start = max(desired.values(), default=-1.0) + 1.0
        for i, n in enumerate(sorted(orphans, key=_id_key)):
            desired[n] = start + i
        order = sorted(desired, key=lambda n: (desired[n], _id_key(n)))
        xs: list[float] = []
        for n in order:
            xs.append(desired[n] if not xs else max(desired[n], xs[-1] + 1.0))
        shift = sum(desired[n] - x for n, x in zip(order, xs)) / len(xs)
        for n, x in zip(order, xs):
            pos[n] = (x + shift, -float(lvl))
    return pos


def draw_concept_graph(
    graph: ConceptGraph, path: str | Path, *, max_nodes: int = 200, title: str | None = None
) -> None:
    """Render ``graph`` to a PNG at ``path`` (see :meth:`ConceptGraph.draw`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    sub = graph.subgraph(_select_nodes(graph, max_nodes))
    pos = layered_positions(sub)
    n_levels = len({y for _, y in pos.values()}) or 1
    widest = max(
        (sum(1 for q in pos.values() if q[1] == y) for y in {p[1] for p in pos.values()}),
        default=1,
    )
    fig = Figure(figsize=(min(40.0, max(6.0, 0.9 * widest)), min(30.0, max(3.0, 1.6 * n_levels))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    for child, parent in sub.edges:
        stats: dict[str, Any] = sub.edge_stats(child, parent)
        w = stats.get("p_parent_given_child")
        w = float(w) if isinstance(w, (int, float)) else 0.5
        (x0, y0), (x1, y1) = pos[child], pos[parent]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "lw": 0.4 + 2.6 * max(0.0, min(1.0, w)),
                "color": "#5a6f8c",
                "alpha": 0.8,
                "shrinkA": 9,
                "shrinkB": 9,
            },
        )
    font = 9 if len(pos) <= 60 else 6
    for n, (x, y) in pos.items():
        ax.text(
            x,
            y,
            sub.node_label(n),
            ha="center",
            va="center",
            fontsize=font,
            bbox={"boxstyle": "round,pad=0.25", "fc": "#eef3fb", "ec": "#5a6f8c", "lw": 0.6},
        )
    if pos:
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
        ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
    shown = f"{len(sub)} of {len(graph)} concepts" if len(sub) < len(graph) else f"{len(graph)} concepts"
    ax.set_title(title or f"Concept graph ({shown}; coarse at top)", fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
