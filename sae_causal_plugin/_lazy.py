"""Names a package exports, imported on first use (PEP 562 module ``__getattr__``).

``sae-causal --help`` must not pay for torch and SAELens, so the package root and ``graph/``
resolve their exports when first asked for. ``from sae_causal_plugin import X`` and
``sae_causal_plugin.X`` work as before; a name that is neither an export nor a submodule raises
``AttributeError`` as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to the (relative) module
    that defines it; submodules are importable as attributes too. A resolved name is cached in the
    package, so each lookup runs once."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, package), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
