"""Every tutorial notebook executes offline on its embedded defaults, and matches its source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# dev dependencies (pyproject's [dev]): the notebooks must run, so a missing one is an error, not a skip
import ipykernel  # noqa: E402, F401  (the kernel the notebooks execute in)
import nbclient  # noqa: E402
import nbformat  # noqa: E402

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 300
SWITCH = "USE_REAL_MODELS = False"


def _kernel_manager(tmp_path: Path):
    """A kernel running *this* interpreter (the venv the tests run from), whatever other
    ``python3`` kernel specs the machine has."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "tutorial-python"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tutorial python", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="tutorial-python", kernel_spec_manager=specs)


def test_there_are_four_tutorials():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def test_notebooks_match_their_sources():
    result = subprocess.run([sys.executable, str(TUTORIALS / "_build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_offline(path: Path, tmp_path: Path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert sum(SWITCH in c for c in code) == 1, f"{path.name}: exactly one '{SWITCH}' switch"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; rebuild it with python tutorials/_build.py")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the default path must not need the network
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
