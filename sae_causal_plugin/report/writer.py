"""``write_report``: a :class:`~sae_causal_plugin.worlds.run.WorldRun` -> a report folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sae_causal_plugin._plain_json import plain_json
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin._files import check_target_dir, staged_dir
from sae_causal_plugin.report.html import render_index
from sae_causal_plugin.report.latents import HEATMAP, browser_rows, copy_image, draw_heatmap
from sae_causal_plugin.report.targets import targets_for
from sae_causal_plugin.worlds.run import SteeringExample, WorldRun

#: files every report holds (``index.html`` links them all).
REPORT_FILES = (
    "index.html",
    "concept_graph.png",
    "concept_graph.html",
    "concept_graph.json",
    "metrics.json",
    "true_graph.png",
    "true_graph.json",
)


def write_report(run: WorldRun, out_dir: str | Path, *, max_drawn_concepts: int = 120, command: str = "") -> Path:
    """Write ``index.html`` and its files for ``run`` into ``out_dir``; return the index path.

    Everything is built in a staging folder beside ``out_dir`` and moved into place at the
    end, so an error leaves ``out_dir`` as it was.  Steering images (``Path`` values of
    :class:`SteeringExample`) are copied into ``out_dir/steering/``; a relative image path is
    read relative to ``out_dir``.  Other files already in ``out_dir`` are kept.  ``command``, when
    given, is printed in the report as the command that reproduces it.

    Raises:
        ValueError: ``run`` is malformed (wrong types, non-JSON metrics, missing image) or
            ``out_dir`` is an existing file.
    """
    _check_run(run)
    out_dir = check_target_dir(out_dir, what="report folder")
    metrics = {str(k): plain_json(v, f"metrics[{k!r}]") for k, v in run.metrics.items()}
    with staged_dir(out_dir, what="report folder") as stage:
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=True) + "\n")
        run.learned_graph.save_json(stage / "concept_graph.json")
        run.true_graph.save_json(stage / "true_graph.json")
        shown = drawn_part(run.learned_graph)
        run.learned_graph.subgraph(shown).draw(
            stage / "concept_graph.png", max_nodes=max_drawn_concepts,
            title=f"Recovered concept graph, {run.world} world: {len(shown)} of {len(run.learned_graph)} "
                  "latents (those on an edge or matched to a concept); coarse at top")
        run.learned_graph.draw_html(stage / "concept_graph.html",
                                    title=f"Recovered concept graph, {run.world} world: all {len(run.learned_graph)} latents")
        run.true_graph.draw(stage / "true_graph.png", max_nodes=max_drawn_concepts,
                            title=f"True concept graph ({run.world} world; coarse at top)")
        examples = [_stage_example(i, ex, stage, out_dir) for i, ex in enumerate(run.steering_examples)]
        latents = browser_rows(run.latents, stage, out_dir)
        figures = [{"caption": caption, "path": copy_image(Path(path), stage, out_dir, Path("figures") / f"{i}",
                                                           f"figure {caption!r}")}
                   for i, (caption, path) in enumerate(run.figures)]
        if run.concept_firing:
            draw_heatmap(run.concept_firing, stage / HEATMAP)
        page = render_index(
            world=run.world,
            description=run.description,
            metrics=metrics,
            targets=targets_for(run.world),
            learned=run.learned_graph,
            true=run.true_graph,
            examples=examples,
            sae_dirs={str(k): _shown_path(Path(v), out_dir) for k, v in run.sae_dirs.items()},
            command=command,
            latents=latents,
            heatmap=HEATMAP if run.concept_firing else "",
            figures=figures,
        )
        (stage / "index.html").write_text(page, encoding="utf-8")
    return out_dir / "index.html"


def drawn_part(graph: ConceptGraph) -> list[Any]:
    """Concepts worth drawing: those on an edge or carrying a matched ``concept`` (all if none)."""
    on_edge = {n for edge in graph.edges for n in edge}
    keep = [n for n in graph.concepts if n in on_edge or "concept" in graph.concept_attrs(n)]
    return keep or graph.concepts


def _shown_path(path: Path, out_dir: Path) -> str:
    """``path`` relative to the report folder when it lies inside it (so the link survives a move)."""
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _check_run(run: Any) -> None:
    if not isinstance(run, WorldRun):
        raise ValueError(f"write_report needs a WorldRun, got {type(run).__name__}")
    for name in ("learned_graph", "true_graph"):
        if not isinstance(getattr(run, name), ConceptGraph):
            raise ValueError(f"WorldRun.{name} must be a ConceptGraph, got {type(getattr(run, name)).__name__}")
    if not isinstance(run.metrics, Mapping):
        raise ValueError(f"WorldRun.metrics must be a dict, got {type(run.metrics).__name__}")
    for i, fig in enumerate(run.figures):
        if not (isinstance(fig, tuple) and len(fig) == 2 and isinstance(fig[0], str) and isinstance(fig[1], Path)):
            raise ValueError(f"WorldRun.figures[{i}] must be a (caption, Path) pair, got {fig!r}")
    for i, ex in enumerate(run.steering_examples):
        if not isinstance(ex, SteeringExample):
            raise ValueError(f"WorldRun.steering_examples[{i}] must be a SteeringExample, got {type(ex).__name__}")
        if isinstance(ex.before, Path) != isinstance(ex.after, Path):
            raise ValueError(
                f"steering example {ex.title!r}: before and after must both be texts (str) or both "
                "image paths (Path)"
            )


def _stage_example(i: int, ex: SteeringExample, stage: Path, out_dir: Path) -> dict[str, Any]:
    is_image = isinstance(ex.before, Path)
    before, after = str(ex.before), str(ex.after)
    if is_image:
        before = _copy_image(Path(ex.before), stage, out_dir, f"{i}_before", ex.title)
        after = _copy_image(Path(ex.after), stage, out_dir, f"{i}_after", ex.title)
    table = [{str(k): plain_json(v, f"steering example {ex.title!r} table") for k, v in row.items()}
             for row in ex.table]
    return {"title": ex.title, "note": ex.note, "before": before, "after": after,
            "is_image": is_image, "table": table, "succeeded": ex.succeeded}


def _copy_image(path: Path, stage: Path, out_dir: Path, stem: str, title: str) -> str:
    return copy_image(path, stage, out_dir, Path("steering") / stem, f"steering example {title!r}")
