"""Command lines built from config dataclasses: one field, one option.

:func:`add_dataclass_options` adds an option per field of a config dataclass; its help is the
field's docstring (the string literal right under the field) or ``field(metadata={"help": ...})``.
:func:`config_from_args` builds the config back from the parsed namespace and refuses values the
field's metadata rules out, as a usage error (exit status 2).

Field types: ``bool`` (a flag that flips the default: ``--name`` when the default is ``False``,
``--no-name`` when it is ``True``), ``int``, ``float``, ``str``, ``X | None`` (the option's default
is ``None``), ``tuple[X, ...]`` and ``list[X]`` (one or more values; zero or more when the default is
empty),
``Literal[...]`` (choices) and ``dict`` (a JSON object).  Field metadata:

* ``help``: help text (wins over the docstring);
* ``option``: the option's name (or a list of names; the first is shown), instead of ``--field-name``;
* ``metavar``: the value's name in the help;
* ``positive``: the value (each value of a tuple) must be > 0;
* ``min_items``: a tuple needs at least this many values;
* ``device``: the value must name a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from sae_causal_plugin._quiet import quiet_saelens

C = TypeVar("C")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literals written right under a dataclass's fields."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"only X | None unions are supported, got {tp}")
        return rest[0]
    return tp


def _option_names(f: dataclasses.Field, tp: Any) -> list[str]:
    names = f.metadata.get("option")
    if names:
        return [names] if isinstance(names, str) else list(names)
    name = f.name.replace("_", "-")
    if tp is bool and f.default is True:
        return [f"--no-{name}"]
    return [f"--{name}"]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name!r} needs a default to become an option")


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, defaults: Any = None,
                          parsers: dict[str, Callable[[str], Any]] | None = None) -> dict[str, argparse.Action]:
    """One option per field of the dataclass ``cls``.

    Args:
        defaults: an instance (or any object with the fields as attributes) whose values are the
            options' defaults, instead of the fields' own; ``None`` there means "not given".
        parsers: ``{field: text -> value}`` for a field whose type has no command-line form of its own.

    Returns ``{field: the option's argparse action}``, e.g. to set choices known only at run time.
    """
    actions: dict[str, argparse.Action] = {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        tp = _unwrap_optional(hints[f.name])
        help_text = f.metadata.get("help", docs.get(f.name, ""))
        if default is not None and tp is not bool and default not in ((), [], {}):
            shown = list(default) if isinstance(default, tuple) else default
            help_text = f"{help_text} (default {shown})".strip()
        kw: dict[str, Any] = dict(dest=f.name, help=help_text.replace("%", "%%"))
        origin = typing.get_origin(tp)
        if parsers and f.name in parsers:
            kw.update(type=parsers[f.name], default=default)
        elif tp is bool:
            kw.update(action="store_false" if default else "store_true", default=default)
        elif origin in (tuple, list):
            item = typing.get_args(tp)[0]
            kw.update(type=item, nargs="*" if default in ((), []) else "+", default=default)
            if typing.get_origin(item) is typing.Literal:
                kw.update(type=type(typing.get_args(item)[0]), choices=typing.get_args(item))
        elif origin is typing.Literal:
            choices = typing.get_args(tp)
            kw.update(type=type(choices[0]), choices=choices, default=default)
        elif tp is dict or origin is dict:
            kw.update(type=json.loads, default=default, metavar="JSON")
        elif tp in (int, float, str):
            kw.update(type=tp, default=default)
        else:
            raise TypeError(f"field {f.name!r}: type {tp} has no command-line form")
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        actions[f.name] = parser.add_argument(*_option_names(f, tp), **kw)
    return actions


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, cls: type[C],
                     **overrides: Any) -> C:
    """The ``cls`` instance the parsed ``args`` describe; a value the metadata rules out is a usage error."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        tp = _unwrap_optional(hints[f.name])
        option = _option_names(f, tp)[0]
        if isinstance(value, list) and typing.get_origin(tp) is tuple:
            value = tuple(value)
        if value is not None:
            items = value if isinstance(value, (tuple, list)) else (value,)
            if f.metadata.get("positive") and any(v <= 0 for v in items):
                parser.error(f"{option} must be positive")
            if len(items) < f.metadata.get("min_items", 0):
                parser.error(f"{option} needs at least {f.metadata['min_items']} values")
            if isinstance(_default(f), dict) and not isinstance(value, dict):
                parser.error(f"{option} must be a JSON object")
            if f.metadata.get("device"):
                problem = device_problem(value)
                if problem:
                    parser.error(f"{option} {value}: {problem}")
        values[f.name] = value
    values.update(overrides)
    try:
        return cls(**values)
    except ValueError as err:  # a rule between fields (``__post_init__``)
        parser.error(str(err))


def device_problem(name: str) -> str | None:
    """Why ``name`` is not a torch device this machine can run on, or ``None``."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return "not a torch device; use cpu, cuda or cuda:N"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch; use --device cpu"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif device.type != "cpu":
        return f"device type {device.type!r} is not supported here; use cpu or cuda"
    return None


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (a no-op on CPU), so a timer around it covers the work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_field(default: str = "cpu") -> Any:
    """The ``--device`` field of a bench config: a torch device this machine has (checked)."""
    return dataclasses.field(default=default, metadata={"device": True})


@contextmanager
def isolated_run(threads: int | None = None) -> Iterator[None]:
    """What a bench's ``main`` changes is put back afterwards: the global torch RNG (each bench
    seeds it, on CPU and on every CUDA device), the torch thread count (``threads`` > 0 sets it for
    the run) and SAELens's progress output (quiet during the run). A bench called from Python leaves
    its caller as it found it."""
    before = torch.get_num_threads()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda), quiet_saelens():
            if threads is not None and threads > 0:
                torch.set_num_threads(threads)
            yield
    finally:
        torch.set_num_threads(before)
