"""Build the tutorial notebooks from their plain-Python sources in ``tutorials/_src/``.

Each source is a Python file in the "percent" format: a line ``# %% [markdown]`` starts a markdown
cell (every following line drops its leading ``# ``), a line ``# %%`` starts a code cell. The
notebooks are written with empty outputs, so the committed ``.ipynb`` files stay diff-friendly.

    python tutorials/_build.py          # rewrite tutorials/*.ipynb from tutorials/_src/*.py
    python tutorials/_build.py --check  # exit 1 if a notebook differs from its source
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "_src"
MARKDOWN, CODE = "# %% [markdown]", "# %%"


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


def main(argv: list[str]) -> int:
    stale = []
    for source in sorted(SOURCES.glob("*.py")):
        text = nbformat.writes(build_notebook(source)) + "\n"
        target = notebook_path(source)
        if "--check" in argv:
            if not target.is_file() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date (run python tutorials/_build.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
