"""The language world's model: a tiny ``HookedTransformer`` trained by the project, and its weights.

* :data:`MODEL_CONFIG`: the architecture (2 layers, ``d_model`` 64), as ``HookedTransformerConfig`` kwargs.
* :func:`train_language_model`: trains it from scratch on :func:`generate_corpus` text,
  reproducibly from a seed (``scripts/train_language_world.py`` produced the shipped weights).
* :func:`load_language_world`: the shipped model (``worlds/assets/language_world_*``) plus the
  taxonomy and vocabulary helpers, offline.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_causal_plugin.worlds.language_world import corpus as _corpus
from sae_causal_plugin.worlds.language_world.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from sae_causal_plugin._rng import keeps_global_rng

#: the architecture; ``d_vocab`` is filled from the taxonomy's vocabulary.
MODEL_CONFIG: dict[str, Any] = dict(
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=256,
    n_ctx=_corpus.DEFAULT_N_CTX,
    act_fn="gelu",
    normalization_type="LN",
    default_prepend_bos=False,
    model_name="language-world",
)
WEIGHTS_FILE = "language_world_model.safetensors"
CONFIG_FILE = "language_world_config.json"


@dataclass
class LanguageWorld:
    """The shipped model with its taxonomy and vocabulary helpers."""

    model: HookedTransformer
    taxonomy: Taxonomy
    info: dict[str, Any]

    @property
    def vocab(self) -> list[str]:
        return self.taxonomy.vocab

    def encode(self, text: str, *, prepend_bos: bool = True) -> Int[Tensor, "1 seq"]:
        return _corpus.encode(text, self.taxonomy, prepend_bos=prepend_bos)

    def decode(self, tokens: Int[Tensor, "... seq"]) -> str | list[str]:
        return _corpus.decode(tokens, self.taxonomy)


def build_model(taxonomy: Taxonomy = DEFAULT_TAXONOMY, seed: int = 0, **overrides: Any) -> HookedTransformer:
    """An untrained model of the world's architecture (``overrides`` change config fields)."""
    cfg = {**MODEL_CONFIG, "d_vocab": len(taxonomy.vocab), "seed": seed, "device": "cpu", **overrides}
    return HookedTransformer(HookedTransformerConfig(**cfg))


@keeps_global_rng
def train_language_model(
    *,
    seed: int = 0,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 3e-3,
    n_documents: int = 20_000,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    progress: bool = True,
    **overrides: Any,
) -> tuple[HookedTransformer, dict[str, Any]]:
    """Train the world's model from scratch; returns the model and a summary of the run.

    Same seed, same weights (on the same torch build): the corpus, the initialisation and the
    batch order all come from ``seed``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(taxonomy, seed=seed, **overrides)
    data = _corpus.generate_corpus(n_documents, seed=seed, n_ctx=model.cfg.n_ctx, taxonomy=taxonomy).tokens
    held_out = _corpus.generate_corpus(512, seed=seed + 10_000, n_ctx=model.cfg.n_ctx, taxonomy=taxonomy).tokens
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="train language world", disable=not progress)
    for _ in bar:
        batch = data[torch.randint(0, data.shape[0], (batch_size,), generator=gen)]
        loss = model(batch, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    with torch.no_grad():
        eval_loss = float(model(held_out, return_type="loss"))
    info = dict(seed=seed, steps=steps, batch_size=batch_size, lr=lr, n_documents=n_documents,
                held_out_loss=eval_loss, seconds=time.perf_counter() - start)
    return model, info


def save_language_model(model: HookedTransformer, info: dict[str, Any], directory: str | Path) -> None:
    """Write ``language_world_model.safetensors`` and ``language_world_config.json`` (both or neither)."""
    from sae_causal_plugin._files import staged_dir

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if not k.endswith(("IGNORE", "mask"))}
    cfg = {k: MODEL_CONFIG.get(k, getattr(model.cfg, k)) for k in MODEL_CONFIG}
    cfg["d_vocab"] = model.cfg.d_vocab
    with staged_dir(directory, what="model folder") as stage:
        save_file(state, stage / WEIGHTS_FILE)
        (stage / CONFIG_FILE).write_text(json.dumps({"config": cfg, "training": info}, indent=2))


def load_language_world(directory: str | Path | None = None) -> LanguageWorld:
    """The shipped language-world model (or one saved in ``directory``), offline, in eval mode."""
    root = Path(directory) if directory is not None else Path(
        str(resources.files("sae_causal_plugin.worlds") / "assets"))
    weights, config = root / WEIGHTS_FILE, root / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(
            f"no language-world model in {root}: expected {WEIGHTS_FILE} and {CONFIG_FILE}; "
            "run scripts/train_language_world.py to create them"
        )
    meta = json.loads(config.read_text())
    model = HookedTransformer(HookedTransformerConfig(**meta["config"], device="cpu"))
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    missing = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if missing or unexpected:
        raise ValueError(f"weights in {weights} do not fit the config: missing {missing}, unexpected {unexpected}")
    model.eval()
    return LanguageWorld(model, DEFAULT_TAXONOMY, meta.get("training", {}))
