"""``index.html`` of a demo report: plain HTML with inline CSS, no scripts, no network."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.report.targets import Target

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2733}
h1{font-size:1.6em}h2{border-bottom:1px solid #d5dce6;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d5dce6;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef3fb}td.num{text-align:right;font-variant-numeric:tabular-nums}
.met{color:#17672b;font-weight:600}.missed{color:#a2261d;font-weight:600}
.pair{display:flex;gap:1em;flex-wrap:wrap}.pair>div{flex:1 1 420px;min-width:0}
pre{background:#f6f8fa;padding:.6em;white-space:pre-wrap;word-break:break-word;border-radius:4px}
img{max-width:100%;border:1px solid #d5dce6}.note{color:#4a5a6d}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_value(value: Any, percent: bool = False) -> str:
    """Numbers to 4 significant digits (or as a percentage); other values as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) and not percent:
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def metrics_table(metrics: Mapping[str, Any], targets: Mapping[str, Target]) -> str:
    """Scalar metrics: targeted ones first (in target order), then the others alphabetically."""
    scalars = {k: v for k, v in metrics.items() if is_scalar(v)}
    keys = [k for k in targets if k in scalars] + sorted(k for k in scalars if k not in targets)
    rows = ["<tr><th>metric</th><th>what it measures</th><th>value</th><th>target</th><th>reached</th></tr>"]
    for key in keys:
        target = targets.get(key)
        value = scalars[key]
        if target is None:
            rows.append(f"<tr><td><code>{esc(key)}</code></td><td></td>"
                        f"<td class='num'>{esc(format_value(value))}</td><td></td><td></td></tr>")
            continue
        met = target.met(value)
        verdict = {True: "<span class='met'>yes</span>", False: "<span class='missed'>no</span>",
                   None: "n/a"}[met]
        rows.append(
            f"<tr><td><code>{esc(key)}</code></td><td>{esc(target.label)}</td>"
            f"<td class='num'>{esc(format_value(value, target.percent))}</td>"
            f"<td>{esc(target.describe())}</td><td>{verdict}</td></tr>"
        )
    return "<table class='metrics'>\n" + "\n".join(rows) + "\n</table>"


def breakdown_tables(metrics: Mapping[str, Any]) -> str:
    """Non-scalar metrics: a mapping of mappings as a table (one row per key), others as JSON text."""
    parts = []
    for key in sorted(k for k, v in metrics.items() if not is_scalar(v) and len(v) > 0):
        value = metrics[key]
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            rows = [{key: name, **inner} for name, inner in value.items()]
            parts.append(f"<h3><code>{esc(key)}</code></h3>" + rows_table(rows))
        else:
            parts.append(f"<h3><code>{esc(key)}</code></h3><pre>{esc(value)}</pre>")
    return "\n".join(parts)


def concept_name(graph: ConceptGraph, node: Any) -> str | None:
    """The true concept a node stands for: its ``concept`` attribute, else its label."""
    attrs = graph.concept_attrs(node)
    if "concept" in attrs:
        return attrs["concept"]
    if any("concept" in graph.concept_attrs(n) for n in graph.concepts):
        return None  # a matched graph: nodes without a match stand for no true concept
    return graph.node_label(node)


def named_edges(graph: ConceptGraph) -> tuple[set[tuple[str, str]], int]:
    """Edges as ``(child concept, parent concept)``, and how many edges touch an unmatched node."""
    named, unmatched = set(), 0
    for child, parent in graph.edges:
        c, p = concept_name(graph, child), concept_name(graph, parent)
        if c is None or p is None:
            unmatched += 1
        else:
            named.add((c, p))
    return named, unmatched


def edge_comparison(learned: ConceptGraph, true: ConceptGraph) -> str:
    """Recovered edges against the true graph, compared by the concepts their nodes stand for."""
    got, unmatched = named_edges(learned)
    want, _ = named_edges(true)

    def items(edges: set[tuple[str, str]]) -> str:
        if not edges:
            return "<em>none</em>"
        return ", ".join(f"{esc(c)} &rarr; {esc(p)}" for c, p in sorted(edges))

    rows = [
        (f"recovered and true ({len(got & want)})", items(got & want)),
        (f"recovered, not in the true graph ({len(got - want)})", items(got - want)),
        (f"true, not recovered ({len(want - got)})", items(want - got)),
    ]
    if unmatched:
        rows.append((f"recovered, touching a latent matched to no concept ({unmatched})",
                     "not scored against the true graph"))
    body = "\n".join(f"<tr><th>{esc(name)}</th><td>{cell}</td></tr>" for name, cell in rows)
    return ("<p class='note'>Edges point from a finer concept to the coarser concept it selects "
            "(child &rarr; parent).</p>\n<table class='edges'>\n" + body + "\n</table>")


def rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns.extend(str(k) for k in row if str(k) not in columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{esc(format_value(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def side(kind: str, content: str, is_image: bool) -> str:
    shown = (f"<img src='{esc(content)}' alt='{esc(kind)}'>" if is_image
             else f"<pre>{esc(content)}</pre>")
    return f"<div><h4>{esc(kind)}</h4>{shown}</div>"


def steering_section(examples: Sequence[Mapping[str, Any]]) -> str:
    """``examples``: dicts with title, note, before, after, is_image, table."""
    if not examples:
        return "<p><em>This run produced no steering example.</em></p>"
    parts = []
    for ex in examples:
        note = f"<p class='note'>{esc(ex['note'])}</p>" if ex["note"] else ""
        parts.append(
            f"<h3>{esc(ex['title'])}</h3>{note}<div class='pair'>"
            + side("before", ex["before"], ex["is_image"])
            + side("after", ex["after"], ex["is_image"])
            + "</div>" + rows_table(ex["table"])
        )
    return "\n".join(parts)


def render_index(
    *,
    world: str,
    description: str,
    metrics: Mapping[str, Any],
    targets: Mapping[str, Target],
    learned: ConceptGraph,
    true: ConceptGraph,
    examples: Sequence[Mapping[str, Any]],
    sae_dirs: Mapping[str, str],
) -> str:
    """The whole page as one string."""
    saes = ""
    if sae_dirs:
        saes = "<h2>Trained SAEs</h2><ul>" + "".join(
            f"<li>{esc(name)}: <a href='{esc(path)}'><code>{esc(path)}</code></a></li>"
            for name, path in sae_dirs.items()
        ) + "</ul>"
    desc = f"<p>{esc(description)}</p>" if description else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sae-causal report: {esc(world)} world</title><style>{_CSS}</style></head>
<body>
<h1>Concept graph and steering report: {esc(world)} world</h1>
{desc}
<h2>Metrics</h2>
{metrics_table(metrics, targets)}
<p class='note'>Raw figures: <a href="metrics.json">metrics.json</a>.</p>
{breakdown_tables(metrics)}
<h2>Concept graph</h2>
<div class="pair">
<div><h4>recovered from the SAE ({len(learned)} concepts, {len(learned.edges)} edges)</h4>
<img src="concept_graph.png" alt="recovered concept graph"></div>
<div><h4>true hierarchy ({len(true)} concepts, {len(true.edges)} edges)</h4>
<img src="true_graph.png" alt="true concept graph"></div>
</div>
<p class='note'>Graph files: <a href="concept_graph.json">concept_graph.json</a>,
<a href="true_graph.json">true_graph.json</a>.</p>
{edge_comparison(learned, true)}
<h2>Steering</h2>
{steering_section(examples)}
{saes}
</body></html>
"""
