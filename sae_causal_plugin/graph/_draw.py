"""Layered pictures of a :class:`ConceptGraph`: a PNG with matplotlib (Agg, no pyplot state) and an
interactive page with plotly (zoom, pan, hover), both from one layout.

The layout: one row per level (coarse at the top), each row labelled by what its level is (a shared
``timestep`` or ``layer`` attribute, else ``level L``); within a row, concepts ordered by the mean
place of their parents and children (two barycentre sweeps), placed by networkx's
``multipartite_layout``; a row wider than the picture wraps onto several lines, and every slot is as
wide as the longest label, so labels never overlap.  Concepts on no edge are not placed: they are
listed in the legend.  Unnamed integer nodes are drawn ``#i`` (latent ``i``, matched to no concept).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from .concept_graph import ConceptGraph, NodeId

#: sizes in inches (the PNG's axes are in inches, so text and slots share one unit).
CHAR_W, SLOT_PAD, LINE_H, ROW_GAP, LEFT, MAX_W = 0.075, 0.3, 0.42, 0.55, 1.1, 30.0
FONT = 8


@dataclass
class Layout:
    """Where everything goes: node centres and row bands in inches (y grows downwards)."""

    pos: dict[Any, tuple[float, float]]
    labels: dict[Any, str]
    rows: list[tuple[str, float]]
    """(row label, y of the row's first line)"""
    isolated: list[str]
    width: float
    height: float
    title_lines: list[str] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    """lines under the picture: how to read it, unnamed ids, the concepts on no edge"""
    edges: list[tuple[Any, Any, float]] = field(default_factory=list)
    """(child, parent, p_parent_given_child or 0.5)"""


def _select_nodes(graph: ConceptGraph, max_nodes: int) -> list[NodeId]:
    nodes = graph.concepts
    if len(nodes) <= max_nodes:
        return nodes
    g = graph._g  # noqa: SLF001 - same package

    def score(n: NodeId) -> tuple[int, int, str]:
        return (-g.degree(n), -int(g.nodes[n].get("firing_count") or 0), str(n))

    return sorted(nodes, key=score)[:max_nodes]


def _id_key(n: Any) -> tuple[int, int, str]:
    return (0, n, "") if isinstance(n, int) else (1, 0, str(n))


def row_label(graph: ConceptGraph, nodes: list[Any], level: int) -> str:
    """``t = T`` / ``layer L`` when every node of the row shares that attribute, else ``level L``."""
    for key, text in (("timestep", "t = {}"), ("layer", "layer {}")):
        values = {graph.concept_attrs(n).get(key) for n in nodes}
        if len(values) == 1 and None not in values:
            return text.format(values.pop())
    return f"level {level}"


def _ordered_rows(graph: ConceptGraph, nodes: list[Any]) -> list[tuple[int, list[Any]]]:
    """Levels top-down, each ordered by barycentre sweeps (down, up, down) to cut crossings."""
    levels = graph.levels()
    by_level: dict[int, list[Any]] = {}
    for n in sorted(nodes, key=_id_key):
        by_level.setdefault(levels[n], []).append(n)
    order = sorted(by_level)
    rank = {n: i for lvl in order for i, n in enumerate(by_level[lvl])}

    def sweep(levels_in_order: list[int], neighbours) -> None:
        for lvl in levels_in_order:
            row = by_level[lvl]
            def key(n: Any) -> tuple[float, int]:
                near = [rank[m] for m in neighbours(n) if m in rank]
                return (sum(near) / len(near) if near else rank[n], rank[n])
            row.sort(key=key)
            rank.update({n: i for i, n in enumerate(row)})

    sweep(order[1:], graph.parents)
    sweep(order[-2::-1], graph.children)
    sweep(order[1:], graph.parents)
    return [(lvl, by_level[lvl]) for lvl in order]


def layout(graph: ConceptGraph, *, max_nodes: int = 200, title: str = "") -> Layout:
    """The layered layout of ``graph`` (see the module docstring); at most ``max_nodes`` concepts placed."""
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    sub = graph.subgraph(_select_nodes(graph, max_nodes))
    on_edge = {n for e in sub.edges for n in e}
    off_edge = sorted((n for n in sub.concepts if n not in on_edge), key=_id_key)
    isolated = [sub.node_label(n) for n in off_edge]
    placed = [n for n in sub.concepts if n in on_edge]
    labels = {n: sub.node_label(n) for n in placed}
    slot = max((len(t) for t in labels.values()), default=4) * CHAR_W + SLOT_PAD
    per_line = max(1, int((MAX_W - LEFT) // slot))
    rows = _ordered_rows(sub, placed)
    # every (level, line) is one layer of networkx's multipartite layout
    layers: dict[int, list[Any]] = {}
    line_of: dict[int, tuple[str, int]] = {}
    for lvl, members in rows:
        for start in range(0, len(members), per_line):
            line_of[len(layers)] = (row_label(sub, members, lvl), start // per_line)
            layers[len(layers)] = members[start:start + per_line]
    widest = max((len(m) for m in layers.values()), default=1)
    width = min(MAX_W, max(6.0, LEFT + widest * slot + 0.4))
    title_lines = textwrap.wrap(title, max(20, int(width / 0.085))) if title else []
    top = 0.35 + 0.2 * len(title_lines)
    pos: dict[Any, tuple[float, float]] = {}
    row_marks: list[tuple[str, float]] = []
    if layers:
        raw = nx.multipartite_layout(nx.empty_graph(placed), subset_key=layers, align="horizontal")
        unit = _unit(raw, layers)
        centre = LEFT + (width - LEFT) / 2
        y = top + 0.3
        for index, members in layers.items():
            label, line = line_of[index]
            if line == 0:
                y += ROW_GAP if row_marks else 0.0
                row_marks.append((label, y))
            xs = [float(raw[n][0]) for n in members]
            mid = (min(xs) + max(xs)) / 2
            for n, x in zip(members, xs):
                pos[n] = (centre + (x - mid) / unit * slot, y)
            y += LINE_H
        height = y + 0.2
    else:
        height = top + 0.6
    unnamed = any(isinstance(n, int) and "label" not in sub.concept_attrs(n) for n in placed)
    legend = _legend_lines(isolated, unnamed, width)
    height += 0.18 * len(legend) + 0.2
    edges = []
    for child, parent in sub.edges:
        w = sub.edge_stats(child, parent).get("p_parent_given_child")
        edges.append((child, parent, float(w) if isinstance(w, (int, float)) else 0.5))
    return Layout(pos=pos, labels=labels, rows=row_marks, isolated=isolated,
                  width=width, height=height, title_lines=title_lines, legend=legend, edges=edges)


def _unit(raw: dict[Any, Any], layers: dict[int, list[Any]]) -> float:
    """networkx's spacing between neighbours of one layer (one uniform scale over the whole layout)."""
    for members in layers.values():
        if len(members) > 1:
            return abs(float(raw[members[1]][0]) - float(raw[members[0]][0])) or 1.0
    return 1.0


def _legend_lines(isolated: list[str], unnamed: bool, width: float) -> list[str]:
    lines = ["Arrows point from a finer concept to the coarser one it selects; width grows with "
             "P(parent fires | child fires)."]
    if unnamed:
        lines.append("#i = SAE latent i, matched to no concept.")
    if isolated:
        names = ", ".join(isolated)
        lines.append(f"On no edge ({len(isolated)}, not placed): {names}")
    return [part for line in lines for part in textwrap.wrap(line, max(30, int(width / 0.07)))]


def draw_concept_graph(
    graph: ConceptGraph, path: str | Path, *, max_nodes: int = 200, title: str | None = None
) -> None:
    """Render ``graph`` to a PNG at ``path`` (see :meth:`ConceptGraph.draw`)."""
    figure(graph, max_nodes=max_nodes, title=title).savefig(str(path), dpi=110)


def _default_title(graph: ConceptGraph, shown: int) -> str:
    what = f"{shown} of {len(graph)} concepts" if shown < len(graph) else f"{len(graph)} concepts"
    return f"Concept graph ({what}; coarse at top)"


def figure(graph: ConceptGraph, *, max_nodes: int = 200, title: str | None = None) -> Any:
    """The matplotlib ``Figure`` of the PNG (its node texts carry ``gid="node"``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = min(len(graph), max(1, max_nodes))
    lay = layout(graph, max_nodes=max_nodes, title=title or _default_title(graph, shown))
    fig = Figure(figsize=(lay.width, lay.height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    for i, line in enumerate(lay.title_lines):
        ax.text(lay.width / 2, 0.25 + 0.2 * i, line, ha="center", va="center", fontsize=10)
    for label, y in lay.rows:
        ax.text(0.15, y, label, ha="left", va="center", fontsize=FONT, color="#4a5a6d", fontweight="bold")
    for child, parent, w in lay.edges:
        ax.annotate("", xy=lay.pos[parent], xytext=lay.pos[child],
                    arrowprops={"arrowstyle": "-|>", "lw": 0.4 + 2.2 * max(0.0, min(1.0, w)),
                                "color": "#5a6f8c", "alpha": 0.7, "shrinkA": 7, "shrinkB": 7})
    for n, (x, y) in lay.pos.items():
        ax.text(x, y, lay.labels[n], ha="center", va="center", fontsize=FONT, gid="node",
                bbox={"boxstyle": "round,pad=0.2", "fc": "#eef3fb", "ec": "#5a6f8c", "lw": 0.6})
    y0 = lay.height - 0.18 * len(lay.legend) - 0.1
    for i, line in enumerate(lay.legend):
        ax.text(0.15, y0 + 0.18 * i, line, ha="left", va="center", fontsize=7, color="#4a5a6d")
    return fig


def write_interactive(graph: ConceptGraph, path: str | Path, *, title: str | None = None) -> None:
    """A standalone HTML page of ``graph`` (plotly, its script inlined: works offline) that zooms and pans;
    hovering a concept shows its attributes, parents and children.  Every concept is placed."""
    import plotly.graph_objects as go
    import plotly.io as pio

    lay = layout(graph, max_nodes=max(1, len(graph)), title=title or _default_title(graph, len(graph)))
    fig = go.Figure()
    xs: list[float | None] = []
    ys: list[float | None] = []
    for child, parent, _ in lay.edges:
        (x0, y0), (x1, y1) = lay.pos[child], lay.pos[parent]
        xs += [x0, x1, None]
        ys += [-y0, -y1, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#9aa9bf", "width": 1},
                             hoverinfo="skip", name="child -> parent"))
    nodes = list(lay.pos)
    fig.add_trace(go.Scatter(
        x=[lay.pos[n][0] for n in nodes], y=[-lay.pos[n][1] for n in nodes], mode="markers+text",
        text=[lay.labels[n] for n in nodes], textposition="top center", name="concepts",
        marker={"size": 9, "color": "#5a6f8c"}, hovertext=[_hover(graph, n) for n in nodes], hoverinfo="text"))
    for label, y in lay.rows:
        fig.add_annotation(x=0.15, y=-y, text=f"<b>{label}</b>", showarrow=False, xanchor="left")
    fig.update_layout(title="<br>".join(lay.title_lines), showlegend=False, dragmode="pan",
                      xaxis={"visible": False}, yaxis={"visible": False}, plot_bgcolor="white",
                      annotations=list(fig.layout.annotations) + [
                          {"text": "<br>".join(lay.legend), "showarrow": False, "xref": "paper",
                           "yref": "paper", "x": 0, "y": -0.02, "xanchor": "left", "yanchor": "top",
                           "align": "left", "font": {"size": 10}}])
    pio.write_html(fig, str(path), include_plotlyjs=True, full_html=True, config={"scrollZoom": True})


def _hover(graph: ConceptGraph, node: Any) -> str:
    attrs = graph.concept_attrs(node)
    lines = [f"<b>{graph.node_label(node)}</b>"]
    lines += [f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in attrs.items() if k != "label"]
    for name, near in (("parents", graph.parents(node)), ("children", graph.children(node))):
        if near:
            lines.append(f"{name}: " + ", ".join(graph.node_label(m) for m in near))
    return "<br>".join(lines)
