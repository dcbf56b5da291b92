"""Finite-number ranges for messages and ``argparse`` options, without torch: the command line builds its
parsers from these, so ``sae-causal --help`` imports no torch (``_validation`` adds the tensor-aware checks)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def describe_range(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """``"a finite number in [0, 1]"``, ``"a finite number > 0"``, ``"a finite number"``..."""
    if low is not None and high is not None:
        return f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return "a finite number"


def out_of_range(x: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not math.isfinite(x):
        return True
    if low is not None and (x < low or (low_open and x == low)):
        return True
    return high is not None and (x > high or (high_open and x == high))


def float_option(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
) -> Callable[[str], float]:
    """An ``argparse`` ``type=`` that accepts finite numbers in range only (``nan`` / ``inf`` refused)."""
    wanted = describe_range(low, high, low_open, high_open)

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if out_of_range(x, low, high, low_open, high_open):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return x

    parse.__name__ = "finite number"  # argparse names the type in "invalid ... value" messages
    parse.wanted = wanted  # type: ignore[attr-defined]
    return parse


def is_float_option(type_: Any) -> bool:
    """Whether an ``argparse`` action's ``type`` came from :func:`float_option`."""
    return hasattr(type_, "wanted")
