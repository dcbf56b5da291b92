"""One place that checks the numbers and files the package is given.

Numbers: :func:`check_float` (finite, in a range) for API arguments; ``argparse`` options use
``_options.float_option`` (torch-free, so the command line's parsers import no torch). Both refuse
``nan`` / ``inf`` unless a bound says otherwise.

Files: each reader states what it expects and, when the file does not hold it, raises
:class:`FileFormatError` (a ``ValueError``) whose message is ``"FILE: what is wrong; how to fix
it"``, never a library's internal message.  :func:`read_json_file`, :func:`check_keys`,
:func:`read_safetensors` and :func:`read_tensor_file` are the building blocks; the schemas of the
package's own files are :func:`check_sae_folder` (a SAELens SAE folder), :func:`check_activations_file`,
and :func:`check_selection_code_files` (``selection_code.json`` + ``selection_code.safetensors``).
Concept-graph JSON is checked by ``ConceptGraph.from_dict`` / ``load_json`` with these helpers.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from sae_causal_plugin._options import describe_range, out_of_range

SAE_CONFIG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
SELECTION_CODE_FORMAT = "sae-causal-selection-code"
SELECTION_CODE_VERSION = 1
SELECTION_CODE_JSON = "selection_code.json"
SELECTION_CODE_TENSORS = "selection_code.safetensors"


# ------------------------------------------------------------------------------------ numbers
def check_float(
    value: Any, name: str, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False, fix: str = "",
) -> float:
    """``value`` as a ``float``; ``ValueError`` naming ``name`` unless it is a finite real in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
            value = float(value.item())
        else:
            raise ValueError(f"{name} must be {describe_range(low, high, low_open, high_open)}, got "
                             f"{type(value).__name__} {value!r}{'; ' + fix if fix else ''}")
    x = float(value)
    if out_of_range(x, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {describe_range(low, high, low_open, high_open)}, got {x!r}"
                         f"{'; ' + fix if fix else ''}")
    return x


def check_floats(values: Any, name: str, **bounds: Any) -> None:
    """:func:`check_float` for a scalar, a sequence or a tensor of values (every one checked)."""
    if isinstance(values, Tensor):
        values = values.detach().flatten().tolist()
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        for x in values:
            check_float(x, name, **bounds)
        return
    check_float(values, name, **bounds)


def check_finite_tensor(x: Tensor, what: str, fix: str) -> None:
    """``ValueError`` ``"WHAT contain NaN (first at row R); FIX"`` unless every value is finite."""
    if not x.is_floating_point() or not x.numel():
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        kind = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        row = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0, 0]) if x.ndim >= 1 else 0
        raise ValueError(f"{what} contain {kind} values (first at row {row}); {fix}")


# -------------------------------------------------------------------------------------- files
class FileFormatError(ValueError):
    """A file that does not hold what its reader expects; the message names the file and the fix."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path, self.problem, self.fix = Path(path), problem, fix


def read_text_file(path: str | Path, *, fix: str) -> str:
    """The UTF-8 text of ``path`` (``FileFormatError`` when missing or not text)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "missing or not a file", fix)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text file (not UTF-8)", fix) from None


def parse_json(text: str, where: str | Path, *, fix: str) -> Any:
    """``json.loads(text)``; ``FileFormatError`` naming ``where`` and the line when it does not parse."""
    if not text.strip():
        raise FileFormatError(where, "the file is empty", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FileFormatError(where, f"not valid JSON (line {err.lineno}, column {err.colno}: "
                                     f"{err.msg.lower()}; truncated?)", fix) from None


def read_json_file(path: str | Path, *, fix: str, expect: type | tuple[type, ...] = dict) -> Any:
    """The JSON value in ``path``, which must be an ``expect`` (a dict by default)."""
    data = parse_json(read_text_file(path, fix=fix), path, fix=fix)
    if not isinstance(data, expect):
        names = {dict: "a JSON object {...}", list: "a JSON list [...]"}
        wanted = " or ".join(names.get(t, t.__name__) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise FileFormatError(path, f"expected {wanted}, found "
                                    f"{_json_kind(data)}", fix)
    return data


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")


def check_keys(
    data: Mapping[str, Any], where: str | Path, *, required: Iterable[str] = (), optional: Iterable[str] = (),
    fix: str, what: str = "",
) -> None:
    """``FileFormatError`` when ``data`` lacks a ``required`` key or has a key outside both sets."""
    required, optional = list(required), list(optional)
    prefix = f"{what} " if what else ""
    missing = [k for k in required if k not in data]
    if missing:
        raise FileFormatError(where, f"{prefix}lacks the key{'s' if len(missing) > 1 else ''} "
                                     f"{', '.join(map(repr, missing))}", fix)
    unknown = sorted(str(k) for k in data if k not in required and k not in optional)
    if unknown:
        raise FileFormatError(where, f"{prefix}has unknown key{'s' if len(unknown) > 1 else ''} "
                                     f"{', '.join(map(repr, unknown))} (expected "
                                     f"{', '.join(map(repr, required + optional))})", fix)


def check_format(data: Mapping[str, Any], where: str | Path, *, format: str, version: int, fix: str) -> int:
    """``data["format"] == format`` and ``1 <= data["version"] <= version``; returns the version."""
    if data.get("format") != format:
        found = f"format {data['format']!r}" if "format" in data else "no 'format' key"
        raise FileFormatError(where, f"not a {format} file ({found})", fix)
    v = data.get("version")
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= version:
        raise FileFormatError(where, f"{format} version {v!r} is not supported (this package reads "
                                     f"version{'s 1 to' if version > 1 else ''} {version})",
                              f"upgrade sae-causal-plugin, or {fix}")
    return v


def read_safetensors(
    path: str | Path, *, fix: str, expected: Mapping[str, tuple[str, int]] | None = None,
    header_only: bool = False,
) -> dict[str, Any]:
    """Tensors (or, with ``header_only``, shapes) of a safetensors file, checked against ``expected``.

    ``expected`` maps tensor names to ``(kind, ndim)``, kind ``"int"`` or ``"float"``; the file must
    hold exactly those names.  Never unpickles.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "missing or not a file", fix)
    if path.stat().st_size == 0:
        raise FileFormatError(path, "the file is empty", fix)
    out: dict[str, Any] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                out[name] = tuple(f.get_slice(name).get_shape()) if header_only else f.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise FileFormatError(path, "not a readable safetensors file (truncated, or not written by "
                                    "safetensors)", fix) from None
    if expected is not None:
        if set(out) != set(expected):
            raise FileFormatError(path, f"expected tensors {sorted(expected)}, found {sorted(out)}", fix)
        if not header_only:
            for name, (kind, ndim) in expected.items():
                t = out[name]
                ok_kind = t.is_floating_point() if kind == "float" else not t.is_floating_point() and t.dtype != torch.bool
                if not ok_kind or t.ndim != ndim:
                    raise FileFormatError(path, f"tensor {name!r} must be a {ndim}-D {kind} tensor, found "
                                                f"{t.dtype} of shape {tuple(t.shape)}", fix)
    return out


TENSOR_SUFFIXES = (".pt", ".safetensors", ".npy")


def read_tensor_file(path: str | Path, *, fix: str) -> Tensor:
    """The one tensor in a ``.pt`` (``weights_only``), ``.npy`` (no pickles) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "does not exist", fix)
    if path.suffix not in TENSOR_SUFFIXES:
        raise FileFormatError(path, f"unknown file type {path.suffix!r} (use one of {', '.join(TENSOR_SUFFIXES)})", fix)
    if path.stat().st_size == 0:
        raise FileFormatError(path, "the file is empty", fix)
    if path.suffix == ".safetensors":
        tensors = read_safetensors(path, fix=fix)
        if len(tensors) != 1:
            raise FileFormatError(path, f"holds {len(tensors)} tensors {sorted(tensors)}, expected one", fix)
        return next(iter(tensors.values()))
    try:
        if path.suffix == ".npy":
            import numpy as np

            array = np.load(path, allow_pickle=False)
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
                raise ValueError("not a numeric array")
            data: Any = torch.from_numpy(array)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - truncated zip, foreign pickle...: the file, not the package
        kind = "numpy .npy file (truncated, or holds objects)" if path.suffix == ".npy" else (
            "torch.save file (truncated, or holds objects other than tensors)")
        raise FileFormatError(path, f"not a readable {kind}", fix) from None
    if not isinstance(data, Tensor):
        raise FileFormatError(path, f"holds a {type(data).__name__}, expected one tensor", fix)
    return data


def check_activations_file(path: str | Path, d_in: int) -> Float[Tensor, "n d_in"]:
    """Activations ``[n, d_in]`` (leading dims flattened) from a tensor file: float, non-empty, finite."""
    fix = f"save a float tensor [n, {d_in}] of the SAE's hook activations with torch.save or safetensors"
    acts = read_tensor_file(path, fix=fix)
    if not acts.is_floating_point() or acts.ndim < 2:
        raise FileFormatError(path, f"activations must be a float tensor [n, d_in], found {acts.dtype} "
                                    f"of shape {tuple(acts.shape)}", fix)
    if acts.shape[-1] != d_in:
        raise FileFormatError(path, f"activations have width {acts.shape[-1]} but the SAE has d_in={d_in}",
                              "save activations of the hook the SAE was trained on")
    acts = acts.reshape(-1, d_in).float()
    if acts.shape[0] == 0:
        raise FileFormatError(path, "holds no activation rows (shape [0, d_in])", fix)
    bad = ~torch.isfinite(acts)
    if bool(bad.any()):
        kind = "NaN" if bool(torch.isnan(acts).any()) else "Inf"
        raise FileFormatError(path, f"activations contain {kind} values (first in row "
                                    f"{int(bad.any(1).nonzero()[0, 0])})", "drop or clean those rows and save the file again")
    return acts


def check_sae_folder(path: str | Path) -> dict[str, Any]:
    """``cfg.json`` of a SAELens SAE folder, checked, with its weights' shapes (header only)."""
    folder = Path(path)
    fix = "re-save the SAE with save_inference_model (or 'sae-causal train')"
    cfg = read_json_file(folder / SAE_CONFIG_FILE, fix=fix)
    for key in ("d_in", "d_sae"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FileFormatError(folder / SAE_CONFIG_FILE, f"{key!r} must be a positive integer, found {value!r}", fix)
    if not isinstance(cfg.get("architecture"), str):
        raise FileFormatError(folder / SAE_CONFIG_FILE, "lacks the key 'architecture' (a string)", fix)
    shapes = read_safetensors(folder / SAE_WEIGHTS_FILE, fix=fix, header_only=True)
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    wanted = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    if "W_dec" not in shapes:
        raise FileFormatError(folder / SAE_WEIGHTS_FILE, f"holds no decoder W_dec (found {sorted(shapes)})", fix)
    for name, shape in wanted.items():
        if name in shapes and shapes[name] != shape:
            raise FileFormatError(
                folder / SAE_WEIGHTS_FILE,
                f"{name} has shape {list(shapes[name])} but {SAE_CONFIG_FILE} says d_in={d_in}, d_sae={d_sae} "
                f"(so {list(shape)})", f"{fix}, or put back the {SAE_CONFIG_FILE} that belongs to these weights")
    return cfg


def check_selection_code_files(
    folder: str | Path, *, d_in: int | None = None, d_sae: int | None = None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Header and tensors of a selection-code folder (``selection_code.json`` + ``.safetensors``).

    The header holds ``format``, ``version``, ``d_in``, ``d_sae``, ``n_links`` and ``meta``; the
    tensors ``children``, ``parents`` (1-D ints in ``[0, d_sae)``) and ``weights`` (1-D, finite,
    non-negative), all of length ``n_links``.  ``d_in`` / ``d_sae`` given: they must match.
    """
    folder = Path(folder)
    fix = "write the folder again with SelectionCode.save"
    head_file, data_file = folder / SELECTION_CODE_JSON, folder / SELECTION_CODE_TENSORS
    header = read_json_file(head_file, fix=fix)
    check_format(header, head_file, format=SELECTION_CODE_FORMAT, version=SELECTION_CODE_VERSION, fix=fix)
    check_keys(header, head_file, required=("format", "version", "d_in", "d_sae", "n_links"),
               optional=("meta",), fix=fix)
    for key in ("d_in", "d_sae", "n_links"):
        v = header[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "n_links" else 1):
            raise FileFormatError(head_file, f"{key!r} must be a {'non-negative' if key == 'n_links' else 'positive'} "
                                             f"integer, found {v!r}", fix)
    for key, want in (("d_in", d_in), ("d_sae", d_sae)):
        if want is not None and header[key] != want:
            raise FileFormatError(head_file, f"fitted to an SAE with {key}={header[key]}, this SAE has {key}={want}",
                                  "load it with the SAE it was fitted to, or refit with factorize_decoder")
    tensors = read_safetensors(data_file, fix=fix,
                               expected={"children": ("int", 1), "parents": ("int", 1), "weights": ("float", 1)})
    n = header["n_links"]
    if any(t.numel() != n for t in tensors.values()):
        raise FileFormatError(data_file, f"tensors have lengths {[t.numel() for t in tensors.values()]}, "
                                         f"{head_file.name} says n_links={n}", fix)
    for name in ("children", "parents"):
        t = tensors[name]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= header["d_sae"]):
            raise FileFormatError(data_file, f"{name!r} holds latent ids outside [0, {header['d_sae']})", fix)
    w = tensors["weights"]
    if w.numel() and not (bool(torch.isfinite(w).all()) and float(w.min()) >= 0):
        raise FileFormatError(data_file, "'weights' must be finite and non-negative", fix)
    return header, tensors
