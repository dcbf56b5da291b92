"""What one end-to-end run on a toy world produces: the contract between worlds and the report.

A world's ``run_*`` function (train SAEs, recover the concept graph, steer) returns a
:class:`WorldRun`; :mod:`sae_causal_plugin.report` turns it into ``report/`` (``index.html``,
``concept_graph.png``, ``concept_graph.json``, ``metrics.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sae_causal_plugin.graph import ConceptGraph, LatentSummary


@dataclass
class SteeringExample:
    """One steering demonstration, shown before / after in the report.

    ``before`` and ``after`` are texts for a language model, or paths to PNG files (relative to
    the report folder, or absolute) for a diffusion model. ``table`` optionally holds rows of
    numbers to show beside it (e.g. probability mass per category before and after). ``succeeded``
    says whether the edit did what its title says (``None``: not judged); the report flags a failure.
    """

    title: str
    before: str | Path
    after: str | Path
    note: str = ""
    table: list[dict[str, Any]] = field(default_factory=list)
    succeeded: bool | None = None


@dataclass
class LatentEntry:
    """One row of the report's latent browser: the latent's summary and its top-activating contexts.

    ``contexts`` are texts split around the firing token, ``(before, token, after)``, for a language
    model, or paths to PNG files (an image with the latent's heat map) for a diffusion model.
    """

    summary: LatentSummary
    contexts: list[tuple[str, str, str]] | list[Path] = field(default_factory=list)
    name: str = ""
    """how the report names the latent (default ``#i``)"""


@dataclass
class WorldRun:
    """Everything a demo run produced.

    ``metrics`` holds the headline figures (for the language world at least ``edge_f1``,
    ``steer_mass_ratio``, ``ppl_increase``, ``ablation_mass_fraction``, ``seconds``), all plain
    floats / ints / strings so they serialise to JSON.  ``learned_graph`` names each node by the
    true concept it was matched to where there is one.
    """

    world: str
    learned_graph: ConceptGraph
    true_graph: ConceptGraph
    metrics: dict[str, Any]
    steering_examples: list[SteeringExample] = field(default_factory=list)
    sae_dirs: dict[str, Path] = field(default_factory=dict)
    description: str = ""
    latents: list[LatentEntry] = field(default_factory=list)
    """the latent browser's rows (empty: no browser)"""
    concept_firing: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{concept: {latent name: firing F1}}``: the browser's concepts x latents heat map"""
    figures: list[tuple[str, Path]] = field(default_factory=list)
    """more pictures, ``(caption, PNG path)``, shown under the graph (e.g. the nodes' heat maps)"""
    scratch_dir: Path | None = None
    """a folder of intermediate images (steering grids, heat maps) that the report copies; whoever
    writes the report may remove it afterwards"""


def check_world_options(config_cls: type, options: Mapping[str, Any], n_show: int) -> None:
    """``ValueError`` for options that are not fields of ``config_cls`` or a non-positive ``n_show``."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown options {unknown}; pass fields of {config_cls.__name__}: {sorted(known)}")
    if not isinstance(n_show, int) or n_show < 1:
        raise ValueError(f"n_show must be a positive int, got {n_show!r}")
