"""Checks shared by the fault cases: a folder holds the complete old result or the complete new one,
and nothing else; a failure is one line, status 2 or 130, no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx

GRAPH_FILES = {"concept_graph.json", "concept_graph.graphml", "concept_graph.png", "concept_graph.html"}
SAE_FILES = {"cfg.json", "sae_weights.safetensors"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); ``{}`` when it does not exist."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def is_complete_graph(folder: Path) -> bool:
    from sae_causal_plugin.graph import ConceptGraph

    if {p.name for p in folder.iterdir()} != GRAPH_FILES:
        return False
    graph = ConceptGraph.load_json(folder / "concept_graph.json")
    assert set(nx.read_graphml(folder / "concept_graph.graphml").nodes) == {str(n) for n in graph.concepts}
    return (folder / "concept_graph.png").read_bytes()[:4] == b"\x89PNG"


def is_complete_sae(folder: Path) -> bool:
    from sae_causal_plugin._validation import check_sae_folder

    names = {p.name for p in folder.iterdir()}
    if not SAE_FILES <= names:
        return False
    check_sae_folder(folder)
    return True


def assert_old_or_new(target: Path, old: dict[str, bytes], is_complete) -> str:
    """``"old"`` or ``"new"``; fails when ``target`` holds anything else (a mix, a half, nothing)."""
    now = snapshot(target)
    if now == old:
        return "old"
    assert target.is_dir() and is_complete(target), f"{target} holds neither the old nor a complete new result: {sorted(now)}"
    return "new"


def leftovers(parent: Path, expected: set[str], killed: int | None = None) -> set[str]:
    """Names in ``parent`` besides ``expected``, less the staging folders of the ``killed`` pid."""
    extra = {p.name for p in parent.iterdir()} - expected
    if killed is not None:
        extra = {n for n in extra if not re.search(rf"\.(staging|old)-{killed}-", n)}
    return extra


def assert_clean_failure(status: int, err: str, command: str, *, statuses=(2,)) -> str:
    """Status in ``statuses``, no traceback, exactly one ``sae-causal COMMAND:`` line; returns it."""
    assert status in statuses, f"exit status {status}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"sae-causal {command}")]
    assert len(lines) == 1, err
    return lines[0]


def read_json(path: Path):
    return json.loads(path.read_text())
