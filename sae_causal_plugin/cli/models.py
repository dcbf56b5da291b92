"""``--model`` for the command line: the shipped toy model, a local folder, or a TransformerLens name.

* ``language-world``: the language toy world's shipped ``HookedTransformer`` (offline).
* a folder with ``hooked_transformer.json`` and ``model.safetensors`` (written by
  :func:`save_hooked_transformer`; an optional Hugging Face tokenizer saved beside them), or a
  folder holding a retrained language world (``language_world_model.safetensors``).
* anything else: a TransformerLens pretrained name such as ``gpt2`` (needs the network once).

A model without a tokenizer reads prompts as space-separated token ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from sae_causal_plugin.cli.errors import UserError, closest

LANGUAGE_WORLD = "language-world"
CONFIG_FILE = "hooked_transformer.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ModelHandle:
    """A loaded model with the text <-> token functions that fit it."""

    model: Any  # transformer_lens.HookedTransformer
    name: str
    encode: Callable[[str], Int[Tensor, "1 seq"]]
    decode: Callable[[Int[Tensor, " seq"]], str]
    #: toy-world corpus generator ``(n_documents, seed) -> tokens [n, n_ctx]``, if the model has one.
    world_tokens: Callable[[int, int], Int[Tensor, "n ctx"]] | None = None
    bos_id: int | None = None
    #: the toy world (``LanguageWorld``: model, taxonomy) when the model is one.
    world: Any = None

    def hook_width(self, hook_name: str) -> int:
        """Channels an SAE sees at ``hook_name`` (heads x d_head for per-head hooks); ``UserError`` if no such hook."""
        from sae_causal_plugin.steering.language import hook_width

        hooks = list(self.model.hook_dict)
        if hook_name not in hooks:
            raise UserError(f"model {self.name!r} has no hook {hook_name!r}{closest(hook_name, hooks)}")
        return hook_width(self.model, hook_name)


def save_hooked_transformer(model: Any, directory: str | Path, tokenizer: Any = None) -> Path:
    """Write ``model`` (and an optional HF tokenizer) so that ``--model DIRECTORY`` loads it."""
    import inspect

    from safetensors.torch import save_file
    from transformer_lens import HookedTransformerConfig

    from sae_causal_plugin._files import staged_dir

    directory = Path(directory)
    accepted = set(inspect.signature(HookedTransformerConfig).parameters) - {"device", "n_params"}
    cfg = {k: v for k, v in model.cfg.to_dict().items() if k in accepted}
    cfg["dtype"] = str(cfg.get("dtype", torch.float32)).removeprefix("torch.")
    cfg = {k: v for k, v in cfg.items() if _is_json(v)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with staged_dir(directory, what="model folder") as stage:  # config, weights, tokenizer appear together
        (stage / CONFIG_FILE).write_text(json.dumps({"config": cfg}, indent=1))
        save_file(state, stage / WEIGHTS_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(stage)
    return directory


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def load_model(spec: str, *, device: str = "cpu") -> ModelHandle:
    """Resolve ``--model`` / ``model_name`` (see the module docstring)."""
    if spec == LANGUAGE_WORLD:
        return _language_world(None)
    path = Path(spec)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return _local_folder(path, device)
        if any(path.glob("language_world_model*.safetensors")):
            return _language_world(path)
        raise UserError(
            f"model folder {path} holds neither {CONFIG_FILE} + {WEIGHTS_FILE} nor a language-world "
            "model; write one with sae_causal_plugin.cli.models.save_hooked_transformer"
        )
    if spec.startswith((".", "/", "~")) or path.exists():
        raise UserError(f"model folder {spec} does not exist or is not a folder")
    return _pretrained(spec, device)


def _language_world(directory: Path | None) -> ModelHandle:
    try:
        from sae_causal_plugin.worlds.language_world import generate_corpus, load_language_world
    except ImportError as err:
        raise UserError(f"the language world model is not available yet ({err})") from None
    try:
        world = load_language_world(directory)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    n_ctx = int(world.model.cfg.n_ctx)

    def world_tokens(n_documents: int, seed: int) -> Tensor:
        return generate_corpus(n_documents, seed=seed, n_ctx=n_ctx, taxonomy=world.taxonomy).tokens

    def encode(text: str) -> Tensor:
        try:
            return world.encode(text)
        except ValueError as err:
            raise UserError(f"{err}; its words are: {' '.join(world.vocab)}") from None

    bos = world.taxonomy.token_id.get("<bos>")
    return ModelHandle(world.model, LANGUAGE_WORLD, encode, lambda t: str(world.decode(t)),
                       world_tokens, bos, world)


def _local_folder(path: Path, device: str) -> ModelHandle:
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    try:
        cfg = json.loads((path / CONFIG_FILE).read_text())["config"]
        if "dtype" in cfg:
            cfg["dtype"] = getattr(torch, cfg["dtype"])
        model = HookedTransformer(HookedTransformerConfig(**cfg, device=device))
        model.load_state_dict(load_file(path / WEIGHTS_FILE), strict=False)
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"cannot load the model in {path}: {err}") from None
    model.eval()
    tokenizer = None
    if (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model.set_tokenizer(tokenizer)
    return _with_tokenizer(model, str(path))


def _pretrained(name: str, device: str) -> ModelHandle:
    from transformer_lens import HookedTransformer

    try:
        model = HookedTransformer.from_pretrained(name, device=device)
    except Exception as err:  # noqa: BLE001 - any failure here is a bad name or no network
        raise UserError(
            f"cannot load model {name!r} ({type(err).__name__}: {str(err)[:200]}); offline, use "
            f"--model {LANGUAGE_WORLD} or a local model folder"
        ) from None
    model.eval()
    return _with_tokenizer(model, name)


def _with_tokenizer(model: Any, name: str) -> ModelHandle:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        d_vocab = int(model.cfg.d_vocab)

        def encode_ids(text: str) -> Tensor:
            try:
                ids = [int(w) for w in text.split()]
            except ValueError:
                raise UserError(
                    f"model {name} has no tokenizer: write the text as space-separated token ids"
                ) from None
            if not ids or not all(0 <= i < d_vocab for i in ids):
                raise UserError(f"token ids must lie in [0, {d_vocab}) and the text must not be empty")
            return torch.tensor([ids], dtype=torch.long)

        return ModelHandle(model, name, encode_ids, lambda t: " ".join(str(int(i)) for i in t))

    def encode(text: str) -> Tensor:
        return model.to_tokens(text, prepend_bos=True)

    def decode(tokens: Tensor) -> str:
        return str(model.to_string(tokens))

    return ModelHandle(model, name, encode, decode, None, tokenizer.bos_token_id)
