"""The README's code: the quick start runs exactly as pasted (in a fresh interpreter, in an empty
folder), and every Python block in the README is valid Python (the online one is only compiled:
it needs the model hub)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from sae_causal_plugin.graph import ConceptGraph

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def quick_start() -> str:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_every_python_block_parses():
    assert len(BLOCKS) >= 3
    for block in BLOCKS:
        ast.parse(block)


def test_quick_start_runs_as_pasted(tmp_path):
    (tmp_path / "quickstart.py").write_text(quick_start())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Hierarchy diagnosis" in done.stdout and "precision / recall / F1" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"(\d+) concepts, (\d+) edges, edge F1 (\d\.\d\d); saved as JumpReLUSAE", last)
    assert found, last
    graph = ConceptGraph.load_json(tmp_path / "quickstart_graph.json")
    assert (len(graph), len(graph.edges)) == (int(found[1]), int(found[2]))
    assert len(graph.edges) > 0
    assert (tmp_path / "quickstart_graph.png").stat().st_size > 10_000
    assert (tmp_path / "quickstart_sae" / "cfg.json").is_file()
