"""``index.html`` of a demo report: HTML from the jinja2 template ``templates/index.html.j2`` (autoescaped),
inline CSS, no scripts, no network. This module turns a run into the template's plain values."""

from __future__ import annotations

import math
from functools import lru_cache
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.report.targets import DESCRIPTIONS, SETTINGS, Target

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2733}
h1{font-size:1.6em}h2{border-bottom:1px solid #d5dce6;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d5dce6;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef3fb}td.num{text-align:right;font-variant-numeric:tabular-nums}
.met{color:#17672b;font-weight:600}.missed{color:#a2261d;font-weight:600}
.pair{display:flex;gap:1em;flex-wrap:wrap}.pair>div{flex:1 1 420px;min-width:0}
pre{background:#f6f8fa;padding:.6em;white-space:pre-wrap;word-break:break-word;border-radius:4px}
img{max-width:100%;border:1px solid #d5dce6}.note{color:#4a5a6d}
mark{background:#ffe08a;font-weight:600}.latents td{font-size:.9em}.latents img{max-width:96px}
.latents .ctx{font-family:ui-monospace,monospace;white-space:nowrap}
"""


def format_value(value: Any, percent: bool = False) -> str:
    """Numbers to 4 significant digits (or as a percentage); ``None`` as ``n/a``; other values as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) and not percent:
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def concept_name(graph: ConceptGraph, node: Any) -> str | None:
    """The true concept a node stands for: its ``concept`` attribute, else its label."""
    attrs = graph.concept_attrs(node)
    if "concept" in attrs:
        return attrs["concept"]
    if any("concept" in graph.concept_attrs(n) for n in graph.concepts):
        return None  # a matched graph: nodes without a match stand for no true concept
    return str(attrs.get("label") or node)


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


def metric_rows(metrics: Mapping[str, Any], targets: Mapping[str, Target]) -> list[dict[str, Any]]:
    """Scalar measurements (settings left out): targeted ones first (in target order), then the others
    alphabetically; each with its description, shown value, target and whether it is reached."""
    scalars = {k: v for k, v in metrics.items() if is_scalar(v) and k not in SETTINGS}
    keys = [k for k in targets if k in scalars] + sorted(k for k in scalars if k not in targets)
    rows = []
    for key in keys:
        target = targets.get(key)
        rows.append({"key": key, "description": target.label if target else DESCRIPTIONS.get(key, ""),
                     "value": format_value(scalars[key], bool(target and target.percent)),
                     "target": target.describe() if target else "",
                     "met": target.met(scalars[key]) if target else None})
    return rows


def setting_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's settings (keys of :data:`SETTINGS`), a nested config flattened to ``config.key`` rows."""
    rows = []
    for key, what in SETTINGS.items():
        if key not in metrics:
            continue
        value = metrics[key]
        if isinstance(value, Mapping):
            rows += [{"key": f"{key}.{k}", "description": what if i == 0 else "", "value": _as_text(v)}
                     for i, (k, v) in enumerate(value.items())]
        else:
            rows.append({"key": key, "description": what, "value": _as_text(value)})
    return rows


def breakdowns(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Non-scalar measurements: a mapping of mappings as table rows (one per key), a list of
    mappings as rows, anything else as text."""
    out = []
    for key in sorted(k for k, v in metrics.items() if not is_scalar(v) and k not in SETTINGS and len(v) > 0):
        value = metrics[key]
        rows = None
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            rows = [{key: name, **inner} for name, inner in value.items()]
        elif isinstance(value, Sequence) and all(isinstance(v, Mapping) for v in value):
            rows = list(value)
        text = _as_text(value) if rows is None else ""
        out.append({"key": key, "description": DESCRIPTIONS.get(key, ""), "rows": rows, "text": text})
    return out


def _as_text(value: Any) -> str:
    """A list as ``a, b`` (pairs as ``child -> parent``), a mapping as ``key: value`` items, never a repr."""
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(" -> ".join(map(str, v)) if isinstance(v, (list, tuple)) else _as_text(v) for v in value)
    return format_value(value)


def edge_rows(learned: ConceptGraph, true: ConceptGraph) -> list[tuple[str, Any]]:
    """Recovered edges against the true graph, compared by the concepts their nodes stand for."""
    got, unmatched = named_edges(learned)
    want, _ = named_edges(true)
    rows: list[tuple[str, Any]] = [
        (f"recovered and true ({len(got & want)})", sorted(got & want)),
        (f"recovered, not in the true graph ({len(got - want)})", sorted(got - want)),
        (f"true, not recovered ({len(want - got)})", sorted(want - got)),
    ]
    if unmatched:
        rows.append((f"recovered, touching a latent matched to no concept ({unmatched})",
                     "not scored against the true graph"))
    return rows


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(str(k) for k in row if str(k) not in columns)
    return columns


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("sae_causal_plugin.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["columns"] = _columns
    env.filters["value"] = format_value
    return env.get_template("index.html.j2")


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
    command: str = "",
    latents: Sequence[Mapping[str, Any]] = (),
    heatmap: str = "",
    figures: Sequence[Mapping[str, str]] = (),
) -> str:
    """The whole page as one string. ``examples``: dicts with title, note, before, after, is_image, table and
    succeeded (``False`` is flagged as a failure); ``latents``: the latent browser's rows
    (:func:`~sae_causal_plugin.report.latents.browser_rows`); ``heatmap``: the heat map's file name, if drawn;
    ``figures``: more pictures under the graph, dicts with caption and path."""
    return _template().render(
        css=_CSS, world=world, description=description, command=command,
        metrics=metric_rows(metrics, targets), settings=setting_rows(metrics), breakdowns=breakdowns(metrics),
        learned_nodes=len(learned), learned_edges=len(learned.edges), true_nodes=len(true), true_edges=len(true.edges),
        edge_rows=edge_rows(learned, true), examples=list(examples), sae_dirs=dict(sae_dirs),
        latents=list(latents), heatmap=heatmap, figures=list(figures),
    )
