"""The package's layers point one way and hold no import cycles (read from the source, every import counted,
including those inside functions; ``if TYPE_CHECKING:`` blocks excepted).

Layers, lowest first: 0 core maths (``graph/``, ``synthetic/``, ``saes/losses.py``, ``steering/core.py``,
``_*.py`` helpers) <- 1 model glue (``saes/``, ``diffusion/``, ``steering/``, ``multilevel/``, ``distributed/``)
<- 2 ``worlds/``
<- 3 ``bench/``, ``cli/``, ``report/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import sae_causal_plugin

ROOT = Path(sae_causal_plugin.__file__).parent
CORE = ("sae_causal_plugin.saes.losses", "sae_causal_plugin.steering.core")
LAYER = {"graph": 0, "synthetic": 0, "saes": 1, "diffusion": 1, "steering": 1, "multilevel": 1, "distributed": 1,
         "worlds": 2,
         "bench": 3, "cli": 3, "report": 3, "__main__": 3}


def _name(path: Path) -> str:
    parts = ["sae_causal_plugin", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in ROOT.rglob("*.py")}


def layer(module: str) -> int | None:
    """Layer of a module, or ``None`` for the package root."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if module.startswith(CORE) or parts[1].startswith("_") and parts[1] != "__main__":
        return 0
    return LAYER[parts[1]]


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str) -> set[str]:
    """Package modules that ``module`` imports (``from pkg import submodule`` counts as the submodule)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names]
            out.update(subs if all(s in MODULES for s in subs) else [target])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in MODULES and m != module}


GRAPH = nx.DiGraph([(m, t) for m in MODULES for t in imports_of(m)])


def test_every_module_has_a_layer():
    assert all(layer(m) is not None for m in MODULES if m != "sae_causal_plugin")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "sae_causal_plugin"))
def test_no_module_imports_a_layer_above_it(module):
    above = sorted(t for t in imports_of(module) if t != "sae_causal_plugin" and layer(t) > layer(module))
    assert not above, f"{module} (layer {layer(module)}) imports {above} from a higher layer"


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_the_checker_sees_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from sae_causal_plugin.bench import diffusion_world\n")
    found = [n for n in _runtime_nodes(tree) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in found] == ["sae_causal_plugin.bench"]
    assert layer("sae_causal_plugin.bench.diffusion_world") > layer("sae_causal_plugin.worlds.run")
