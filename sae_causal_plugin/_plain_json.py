"""Plain JSON values out of numpy / torch scalars and containers, shared by graphs and reports."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any


class NotJSONableError(TypeError, ValueError):
    """A value that has no plain JSON form (a ``TypeError`` and a ``ValueError``)."""


def plain_json(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON: ints, floats, bools, strings, ``None``, lists and str-keyed dicts.

    Tensors and arrays go through ``tolist()``; ``where`` names the value in the error message,
    extended with the key or index of a nested value.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "tolist"):  # tensors / arrays (incl. 0-d)
        return plain_json(value.tolist(), where)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise NotJSONableError(f"{where} = {value!r} ({type(value).__name__}) is not JSON-able: "
                           "use numbers, strings, lists or dicts")
