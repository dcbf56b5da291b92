"""The picture of a spatial concept graph: every node's mean heat map, one row per level.

Rows run coarse (top) to fine, as the layered pictures of :mod:`._draw`; each cell shows a node's
heat map (its mean firing over the images it fires in, in ``[0, 1]``, each scaled to its own maximum) titled with its label and,
underneath, the labels of its parents, so the fine -> coarse edges read off the picture.  A PNG by
matplotlib's Agg canvas (no pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from .concept_graph import ConceptGraph, NodeId


def draw_heatmap_graph(graph: ConceptGraph, heatmaps: Mapping[NodeId, Float[Tensor, "h w"]], path: str | Path, *,
                       labels: Mapping[NodeId, str] | None = None, max_per_row: int = 12,
                       title: str | None = None) -> list[NodeId]:
    """Draw the graph's nodes that have a heat map, one row per level; returns the nodes drawn.

    Only nodes on an edge are drawn (up to ``max_per_row`` per level, most-connected first).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if max_per_row < 1:
        raise ValueError(f"max_per_row must be at least 1, got {max_per_row}")
    for node, m in heatmaps.items():
        if m.ndim != 2:
            raise ValueError(f"heat map of {node!r} must be [h, w], got {tuple(m.shape)}")
    names = dict(labels or {})
    levels = graph.levels()
    on_edge = {n for e in graph.edges for n in e}
    rows: dict[int, list[NodeId]] = {}
    for node in graph.concepts:
        if node in heatmaps and node in on_edge:
            rows.setdefault(levels.get(node, 0), []).append(node)
    if not rows:
        raise ValueError("no node of the graph is on an edge and has a heat map: nothing to draw")
    order = sorted(rows)
    for lvl in order:
        rows[lvl] = sorted(rows[lvl], key=lambda n: (-len(graph.parents(n)) - len(graph.children(n)), str(n)))
        rows[lvl] = rows[lvl][:max_per_row]
    cols = max(len(v) for v in rows.values())
    fig = Figure(figsize=(1.6 * cols + 0.8, 2.0 * len(order) + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    label = lambda n: names.get(n, graph.node_label(n))  # noqa: E731
    drawn: list[NodeId] = []
    for r, lvl in enumerate(order):
        for c, node in enumerate(rows[lvl]):
            ax = fig.add_subplot(len(order), cols, r * cols + c + 1)
            m = heatmaps[node].detach().float().cpu()
            ax.imshow(m.numpy(), vmin=0.0, vmax=max(float(m.max()), 1e-6), cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label(node), fontsize=7)
            parents = [label(p) for p in graph.parents(node)]
            if parents:
                ax.set_xlabel("-> " + ", ".join(parents), fontsize=6)
            drawn.append(node)
        first = fig.axes[sum(len(rows[v]) for v in order[:r])]
        attrs = graph.concept_attrs(rows[lvl][0])
        first.set_ylabel(f"t={attrs['timestep']}" if "timestep" in attrs else f"level {lvl}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    return drawn


__all__ = ["draw_heatmap_graph"]
