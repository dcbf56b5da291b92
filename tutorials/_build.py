"""Build the tutorial notebooks from their plain-Python sources in ``tutorials/_src/``.

Each source is a Python file in the "percent" format: a line ``# %% [markdown]`` starts a markdown
cell (every following line drops its leading ``# ``), a line ``# %%`` starts a code cell.

The committed notebooks carry their outputs, produced by ``--execute``: each notebook is built from
its source and run top to bottom in a fresh kernel of this interpreter, in a temporary working
directory (so ``tutorial_outputs/`` does not land in the repository), offline (``HF_HUB_OFFLINE=1``)
and on one thread (``OMP_NUM_THREADS=1``). The outputs are kept small and free of churn: no timing
metadata, no progress bars or widgets, long text cut to its first lines, figures as PNGs of
modest size, execution counts 1, 2, 3, ... in cell order.

    python tutorials/_build.py --execute  # rebuild every notebook from its source and execute it
    python tutorials/_build.py            # rebuild without outputs (quick; --check fails until --execute)
    python tutorials/_build.py --check    # exit 1 if a notebook's cells differ from its source or it
                                          # was not executed
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "_src"
MARKDOWN, CODE = "# %% [markdown]", "# %%"

CELL_TIMEOUT_S = 300
MAX_TEXT_LINES = 60  # longer text outputs keep their first MAX_TEXT_LINES lines
MAX_PNG_BYTES = 150_000  # larger PNGs are scaled down until they fit
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# run in the kernel before the first cell; it is not a cell of the notebook and leaves no output
KERNEL_SETUP = "%config InlineBackend.figure_formats = ['png']"
# a tqdm-style progress bar line: "desc:  45%|####5     | 450/1000 [00:01<00:02, 300.00it/s]"
PROGRESS_BAR = re.compile(r"\d+%\|.*\||\|\s*\d+/\d*\s*\[|\d+(\.\d+)?\s*(it|s)/(s|it)\]")


def parse_cells(text: str) -> list[tuple[str, str]]:
    """``[(kind, source)]`` of a percent-format file; kind is ``"markdown"`` or ``"code"``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.strip() == MARKDOWN:
            cells.append(("markdown", []))
        elif line.strip() == CODE:
            cells.append(("code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' marker: {line!r}")
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source file, with empty outputs and the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(parse_cells(source.read_text())):
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        cell["id"] = f"{source.stem[:2]}-{i:02d}"
        nb.cells.append(cell)
    return nb


def notebook_path(source: Path) -> Path:
    return HERE / f"{source.stem}.ipynb"


# ----------------------------------------------------------------------------------------- execution

def _kernel_manager(kernel_dir: Path):
    """A kernel running *this* interpreter (the venv the build or the tests run from), whatever
    other ``python3`` kernel specs the machine has."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = kernel_dir / "tutorial-python"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tutorial python", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    return KernelManager(kernel_name="tutorial-python", kernel_spec_manager=specs)


def execute(nb: nbformat.NotebookNode, scratch: Path | None = None) -> nbformat.NotebookNode:
    """A copy of ``nb`` executed top to bottom (raising on the first cell that errors), with its
    outputs cleaned by :func:`clean_outputs`. ``scratch`` is an empty directory to run in (a
    temporary one when not given); the notebook's working directory is ``scratch/run``."""
    import nbclient

    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="tutorial-") as tmp:
            return execute(nb, Path(tmp))
    workdir, ipython_dir = scratch / "run", scratch / "ipython"
    workdir.mkdir(parents=True)
    ipython_dir.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1",  # the default path must not need the network
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "IPYTHONDIR": str(ipython_dir)}  # no user IPython profile changes the outputs
    run = copy.deepcopy(nb)
    setup = nbformat.v4.new_code_cell(KERNEL_SETUP)
    setup["id"] = "kernel-setup"
    run.cells.insert(0, setup)
    client = nbclient.NotebookClient(
        run, km=_kernel_manager(scratch / "kernels"), timeout=CELL_TIMEOUT_S,
        record_timing=False, store_widget_state=False, allow_errors=False,
        resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=env)
    finally:
        if client.km is not None and client.km.has_kernel:
            client.km.shutdown_kernel(now=True)
    setup = run.cells.pop(0)
    assert not setup.outputs, f"the kernel set-up printed something: {setup.outputs}"
    run.metadata = copy.deepcopy(nb.metadata)  # not the kernel's version details
    return clean_outputs(run)


def _terminal_text(text: str) -> str:
    """``text`` as a terminal shows it: a carriage return overwrites its line."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _truncate(text: str) -> str:
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    if len(lines) <= MAX_TEXT_LINES:
        return text
    cut = len(lines) - MAX_TEXT_LINES
    return "\n".join(lines[:MAX_TEXT_LINES] + [
        f"... ({cut} more lines; cut in the committed notebook, run it to see them all)"]) + "\n"


def _small_png(data: str) -> str:
    """Base64 PNG ``data``, scaled down (keeping its aspect) until it is at most MAX_PNG_BYTES."""
    raw = base64.b64decode(data)
    if len(raw) <= MAX_PNG_BYTES:
        return data
    from PIL import Image

    image = Image.open(io.BytesIO(raw))
    image.load()
    scale = 1.0
    while len(raw) > MAX_PNG_BYTES and scale > 0.1:
        scale *= 0.8
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        buffer = io.BytesIO()
        image.resize(size, Image.LANCZOS).save(buffer, format="PNG", optimize=True)
        raw = buffer.getvalue()
    return base64.b64encode(raw).decode("ascii")


def clean_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep outputs small and reproducible, in place: streams of one name merged and shown as a
    terminal shows them, progress-bar lines and widget views dropped, text longer than
    MAX_TEXT_LINES lines cut, large PNGs scaled down, execution counts 1, 2, ... in cell order."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        cell.metadata.pop("execution", None)
        raw: list = []  # consecutive chunks of one stream joined first: a bar may span two chunks
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and raw and raw[-1].output_type == "stream" \
                    and raw[-1].name == out.name:
                raw[-1] = nbformat.v4.new_output("stream", name=out.name, text=raw[-1].text + out.text)
            else:
                raw.append(out)
        outputs: list = []
        for out in raw:
            if out.output_type == "stream":
                lines = _terminal_text(out.text).split("\n")
                if out.name == "stderr":
                    lines = [line for line in lines if not PROGRESS_BAR.search(line)]
                text = "\n".join(lines)
                if not text.strip():
                    continue
                if outputs and outputs[-1].output_type == "stream" and outputs[-1].name == out.name:
                    outputs[-1].text += text  # what was between them was dropped, or was the same stream
                else:
                    outputs.append(nbformat.v4.new_output("stream", name=out.name, text=text))
                continue
            if out.output_type in ("display_data", "execute_result"):
                data = out.get("data", {})
                if WIDGET_MIME in data:
                    continue  # a widget (a progress bar); its text/plain is just its repr
                if out.output_type == "execute_result":
                    out.execution_count = count
                out.metadata.pop("execution", None)
                if isinstance(data.get("text/plain"), str):
                    data["text/plain"] = _truncate(data["text/plain"])
                if "image/png" in data:
                    data["image/png"] = _small_png(data["image/png"])
            outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                out.text = _truncate(out.text)
        cell.outputs = outputs
    return nb


def output_kinds(cell) -> list[str]:
    """What a code cell shows, without its values: ``stream:stdout``, ``image/png``, ... (sorted)."""
    kinds = set()
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            kinds.add(f"stream:{out.name}")
        elif out.output_type == "error":
            kinds.add("error")
        else:
            kinds.update(out.get("data", {}))
    return sorted(kinds)


# ------------------------------------------------------------------------------------------- check

def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    return [(c.cell_type, c.get("id", ""), c.source) for c in nb.cells]


def stale_reason(source: Path) -> str | None:
    """Why the committed notebook of ``source`` is out of date, or None when it is not: its cells
    (kinds, ids, sources) differ from the source, or it was not executed (a code cell without an
    execution count, or no output at all)."""
    target = notebook_path(source)
    if not target.is_file():
        return "missing"
    nb = nbformat.read(target, as_version=4)
    if _cells(nb) != _cells(build_notebook(source)):
        return "its cells differ from its source"
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any(c.execution_count is None for c in code) or not any(c.outputs for c in code):
        return "not executed"
    if any(o.output_type == "error" for c in code for o in c.outputs):
        return "a cell's output is an error"
    return None


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in ("--check", "--execute")]
    if unknown or len(argv) > 1:
        print(__doc__)
        return 2
    stale = []
    for source in sorted(SOURCES.glob("*.py")):
        target = notebook_path(source)
        if "--check" in argv:
            reason = stale_reason(source)
            if reason:
                stale.append(f"{target.name} ({reason})")
            continue
        nb = build_notebook(source)
        if "--execute" in argv:
            print(f"executing {target.relative_to(HERE.parent)} ...", flush=True)
            nb = execute(nb)
        target.write_text(nbformat.writes(nb) + "\n")
        print(f"wrote {target.relative_to(HERE.parent)} ({target.stat().st_size / 1000:.0f} kB)")
    if stale:
        print(f"out of date (run python tutorials/_build.py --execute): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
