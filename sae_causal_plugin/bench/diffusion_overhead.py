"""``python -m sae_causal_plugin.bench diffusion-overhead``: the hook-point overhead benchmark.

A thin wrapper: it loads ``benchmarks/diffusion_overhead.py`` from the repository checkout and
runs its ``main(argv)`` (see that file for the options and the JSON it prints).  The script is not
part of the installed package, so this command needs a source checkout.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diffusion_overhead.py"


def load_script(path: Path = SCRIPT) -> ModuleType:
    """Import ``benchmarks/diffusion_overhead.py`` as a module."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the diffusion-overhead benchmark lives in the repository's "
            "benchmarks/ folder; run it from a source checkout"
        )
    spec = importlib.util.spec_from_file_location("_sae_causal_diffusion_overhead", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> Any:
    """Run the script's ``main(argv)`` and return its result."""
    return load_script().main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
