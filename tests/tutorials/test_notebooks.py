"""Every tutorial notebook is committed executed, with small outputs, matches its source, and
executes again offline on its embedded defaults, showing the same kinds of output in every cell."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

# dev dependencies (pyproject's [dev]): the notebooks must run, so a missing one is an error, not a skip
import ipykernel  # noqa: E402, F401  (the kernel the notebooks execute in)
import nbclient  # noqa: E402, F401
import nbformat  # noqa: E402

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
SWITCH = "USE_REAL_MODELS = False"
MAX_TOTAL_BYTES = 1_500_000


def _load_build():
    spec = importlib.util.spec_from_file_location("tutorials_build", TUTORIALS / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_there_are_four_tutorials():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def test_notebooks_match_their_sources():
    result = subprocess.run([sys.executable, str(TUTORIALS / "_build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_notebooks_are_small_and_show_figures():
    total = sum(p.stat().st_size for p in NOTEBOOKS)
    assert total < MAX_TOTAL_BYTES, f"the notebooks take {total} bytes"
    images = [o for p in NOTEBOOKS for o in _outputs(nbformat.read(p, as_version=4))
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the graph and diffusion notebooks show figures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_with_clean_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    outputs = _outputs(nb)
    assert any(o.output_type == "stream" and o.name == "stdout" for o in outputs), (
        f"{path.name} has no printed output; rebuild it with python tutorials/_build.py --execute")
    shows_figure = any(call in c.source for c in nb.cells if c.cell_type == "code"
                       for call in ("display(Image(", "plt.show()"))
    if shows_figure:
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} lost its figures"
    assert not [o for o in outputs if o.output_type == "error"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not any("execution" in c.metadata for c in code), "timing metadata committed"
    for out in outputs:
        assert build.WIDGET_MIME not in out.get("data", {})
        if out.output_type == "stream":
            assert not any(build.PROGRESS_BAR.search(line) for line in out.text.splitlines())
            assert "\r" not in out.text
        if "image/png" in out.get("data", {}):
            assert len(base64.b64decode(out.data["image/png"])) <= build.MAX_PNG_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_offline(path: Path, tmp_path: Path):
    committed = nbformat.read(path, as_version=4)
    code = [c.source for c in committed.cells if c.cell_type == "code"]
    assert sum(SWITCH in c for c in code) == 1, f"{path.name}: exactly one '{SWITCH}' switch"
    # the committed cells, run as --execute runs them: this interpreter, offline, one thread,
    # in tmp_path; any cell that raises fails the test
    executed = build.execute(committed, tmp_path)
    assert not [o for o in _outputs(executed) if o.output_type == "error"]
    kinds = {c.id: build.output_kinds(c) for c in executed.cells if c.cell_type == "code"}
    expected = {c.id: build.output_kinds(c) for c in committed.cells if c.cell_type == "code"}
    assert kinds == expected, "a cell shows other kinds of output than the committed notebook"
