"""Token and activation sources for the command line (``dataset_path``, ``--dataset``, ``--activations``).

A dataset is one of:

* ``language-world``: documents drawn from the language toy world's generator (needs that model);
* ``FILE.txt``: one document per line;
* ``FILE.jsonl`` / ``FILE.json``: records with a ``text`` (a document) or ``input_ids`` / ``tokens``
  (token ids) field, or a JSON list of strings;
* ``FILE.pt`` / ``FILE.safetensors``: an integer tensor ``[n, context]`` of token ids.

Texts are tokenized with the model (``<bos>`` first), concatenated and cut into rows of
``context_size`` tokens.  Activations (``--activations``) are a float tensor ``[n, d_in]`` in a
``.pt``, ``.npy`` or ``.safetensors`` file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_causal_plugin._validation import (
    FileFormatError,
    check_activations_file,
    parse_json,
    read_tensor_file,
    read_text_file,
)
from sae_causal_plugin.cli.errors import UserError
from sae_causal_plugin.cli.models import LANGUAGE_WORLD, ModelHandle

TEXT_SUFFIXES = (".txt", ".json", ".jsonl")
DATASET_FIX = ("give one document per line (.txt), records with 'text' or 'input_ids' (.jsonl / .json), "
               "or an integer tensor [n, context] of token ids (.pt / .safetensors)")


def load_tokens(
    spec: str, handle: ModelHandle, *, context_size: int, n_tokens: int, seed: int = 0
) -> Int[Tensor, "n context"]:
    """Token rows ``[n, context_size]`` from dataset ``spec`` (see the module docstring).

    ``n_tokens`` sizes the toy-world draw (at least that many tokens); files are read whole.
    """
    if context_size < 2:
        raise UserError(f"context_size must be at least 2, got {context_size}")
    if spec == LANGUAGE_WORLD:
        if handle.world_tokens is None:
            raise UserError(
                f"dataset {LANGUAGE_WORLD!r} needs model {LANGUAGE_WORLD!r}; give a dataset file instead"
            )
        n_docs = max(16, -(-n_tokens // context_size))
        tokens = handle.world_tokens(n_docs, seed)
        return _rows(tokens.flatten(), context_size) if tokens.shape[1] != context_size else tokens
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"dataset file {spec} does not exist (or give {LANGUAGE_WORLD!r})")
    if path.suffix in (".pt", ".safetensors"):
        tokens = read_tensor_file(path, fix=DATASET_FIX)
        if tokens.is_floating_point() or tokens.dtype == torch.bool or tokens.ndim != 2:
            raise FileFormatError(
                path, f"a token dataset must be an integer tensor [n, context] of token ids, found "
                f"{tokens.dtype} of shape {tuple(tokens.shape)}", "activations go to --activations")
        _check_vocabulary(tokens, handle, path)
        return _rows(tokens.flatten(), context_size) if tokens.shape[1] != context_size else tokens.long()
    if path.suffix not in TEXT_SUFFIXES:
        raise UserError(f"dataset {path}: unknown file type {path.suffix!r}; use one of "
                        f"{TEXT_SUFFIXES + ('.pt', '.safetensors')}")
    docs = _read_documents(path)
    pieces = [d if isinstance(d, Tensor) else handle.encode(d).flatten() for d in docs]
    stream = torch.cat([p.long().flatten() for p in pieces])
    _check_vocabulary(stream, handle, path)
    return _rows(stream, context_size)


def _check_vocabulary(tokens: Int[Tensor, "..."], handle: ModelHandle, path: Path) -> None:
    d_vocab = int(handle.model.cfg.d_vocab)
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= d_vocab):
        raise UserError(f"dataset {path} has token ids outside the model's vocabulary [0, {d_vocab}); "
                        f"tokenize it with the model's tokenizer")


def _rows(stream: Tensor, context_size: int) -> Tensor:
    n = stream.numel() // context_size
    if n == 0:
        raise UserError(f"the dataset holds {stream.numel()} tokens, fewer than one row of "
                        f"context_size={context_size}")
    return stream[: n * context_size].reshape(n, context_size).long()


def _read_documents(path: Path) -> list[str | Tensor]:
    text = read_text_file(path, fix=DATASET_FIX)
    if path.suffix == ".txt":
        docs: list[Any] = [line for line in text.splitlines() if line.strip()]
    elif path.suffix == ".jsonl":
        docs = [parse_json(line, f"{path} line {i + 1}", fix=DATASET_FIX)
                for i, line in enumerate(text.splitlines()) if line.strip()]
    else:
        data = parse_json(text, path, fix=DATASET_FIX)
        docs = data if isinstance(data, list) else _columns_to_records(data, path)
    out = [_document(d, path, i) for i, d in enumerate(docs)]
    if not out:
        raise UserError(f"dataset {path} holds no documents; {DATASET_FIX}")
    return out


def _columns_to_records(data: Any, path: Path) -> list[Any]:
    for key in ("text", "input_ids", "tokens"):
        if isinstance(data, dict) and isinstance(data.get(key), list):
            return [{key: v} for v in data[key]]
    raise UserError(f"dataset {path}: expected a list of documents or a 'text' / 'input_ids' column")


def _document(record: Any, path: Path, i: int) -> str | Tensor:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if isinstance(record.get("text"), str):
            return record["text"]
        for key in ("input_ids", "tokens"):
            ids = record.get(key)
            if isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                return torch.tensor(ids, dtype=torch.long)
    raise UserError(f"dataset {path}: record {i} has no 'text' string nor 'input_ids' list of ints")


def load_activations(path_str: str, d_in: int) -> Float[Tensor, "n d_in"]:
    """A float tensor ``[n, d_in]`` from ``--activations`` (leading dims flattened; finite, non-empty)."""
    return check_activations_file(path_str, d_in)


def kept_positions(
    handle: ModelHandle, tokens: Int[Tensor, "n context"], *, drop_bos: bool = True,
    exclude_tokens: list[int] | None = None,
) -> Bool[Tensor, "n context"]:
    """Positions whose activations an SAE reads: not ``<bos>`` (when ``drop_bos``), not in ``exclude_tokens``."""
    excluded = list(exclude_tokens or [])
    if drop_bos and handle.bos_id is not None:
        excluded.append(int(handle.bos_id))
    return ~torch.isin(tokens, torch.tensor(sorted(set(excluded)), dtype=torch.long))


def hook_activations(
    handle: ModelHandle,
    hook_name: str,
    tokens: Int[Tensor, "n context"],
    *,
    batch_size: int = 32,
    drop_bos: bool = True,
    exclude_tokens: list[int] | None = None,
) -> Iterator[Float[Tensor, "rows d"]]:
    """Stream ``[rows, d]`` activations of ``hook_name`` at the :func:`kept_positions` of ``tokens``.

    Rows come in row-major order, as SAELens's ``exclude_special_tokens`` drops positions in training.
    """
    keep = kept_positions(handle, tokens, drop_bos=drop_bos, exclude_tokens=exclude_tokens)
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size]
        with torch.no_grad():
            _, cache = handle.model.run_with_cache(batch, names_filter=[hook_name])
        acts = cache[hook_name].reshape(*batch.shape, -1)
        yield acts[keep[start : start + batch_size]].float()
