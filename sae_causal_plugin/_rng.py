"""Seeded entry points that leave the caller's global torch RNG as they found it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def keeps_global_rng(fn: F) -> F:
    """Run ``fn`` inside ``torch.random.fork_rng`` (CPU generator): it may call ``torch.manual_seed``
    for its own reproducibility, and the caller's random stream goes on afterwards as if it had not
    run. (SAELens's trainers draw from the global generator, so seeding it is how a run is seeded.)"""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
