"""The one exception the command line turns into a message and exit status 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the person at the keyboard: the message says what to change."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """``" (closest: a, b)"`` for the nearest ``choices`` to ``name``, or ``""``."""
    near = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.4)
    return f" (closest: {', '.join(near)})" if near else ""
