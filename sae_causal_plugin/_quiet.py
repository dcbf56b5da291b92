"""Silence SAELens's progress output for one block, then put back exactly what was there.

SAELens draws its tqdm bars from a module-level ``tqdm`` name in each of the modules below and logs
through the ``sae_lens`` logger. :func:`quiet_saelens` swaps those names for a disabled ``tqdm`` and
raises the logger's level for the duration of the block only; on exit (normal or by exception) every
name and the level are restored. No environment variable is read or written, so other libraries'
bars and the caller's own bars are untouched.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from types import ModuleType
from typing import Any

SAELENS_LOGGER = "sae_lens"

# Every SAELens module (in the version pinned by pyproject.toml) that imports ``tqdm`` at module level
# and draws a bar while training or evaluating an SAE. A module missing from a later SAELens is skipped.
SAELENS_TQDM_MODULES = (
    "sae_lens.training.sae_trainer",
    "sae_lens.training.multi_sae_trainer",
    "sae_lens.training.activations_store",
    "sae_lens.training.activation_scaler",
    "sae_lens.evals",
    "sae_lens.cache_activations_runner",
    "sae_lens.synthetic.feature_dictionary",
)


def _tqdm_modules() -> list[ModuleType]:
    modules = []
    for name in SAELENS_TQDM_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise  # the module exists but one of its own imports is missing: not ours to hide
            continue
        if hasattr(module, "tqdm"):
            modules.append(module)
    return modules


@contextmanager
def quiet_saelens(level: int | None = logging.ERROR) -> Iterator[None]:
    """Within the block: no SAELens tqdm bar, and the ``sae_lens`` logger shows ``level`` and above
    (``level=None``: bars only, the logger is left as it is).

    Nests (an inner block restores the outer block's state). Not thread-safe: it patches module
    attributes, as any caller of SAELens's trainers would have to.
    """
    logger = logging.getLogger(SAELENS_LOGGER)
    saved_level = logger.level
    saved_bars: list[tuple[ModuleType, Any]] = []
    try:
        for module in _tqdm_modules():
            original = module.tqdm
            saved_bars.append((module, original))
            module.tqdm = partial(original, disable=True)
        if level is not None:
            logger.setLevel(level)
        yield
    finally:
        for module, original in reversed(saved_bars):
            module.tqdm = original
        logger.setLevel(saved_level)
