"""Steer SAE concepts inside a TransformerLens language model (``HookedTransformer`` or
SAELens's ``HookedSAETransformer``).

:class:`LanguageSteering` is a context manager: every forward pass of the model inside it has the
chosen SAE latents edited at one hook point, with the error-preserving arithmetic of
:func:`~sae_causal_plugin.steering.core.steer_activations` (the SAE's reconstruction error is
kept), optionally only at chosen token positions, and optionally on all descendants of the
concepts in a :class:`~sae_causal_plugin.graph.ConceptGraph`.  :func:`generate` samples with or
without steering; :func:`next_token_probs` reads the next-token distribution.

Example:
    >>> with LanguageSteering(model, sae, latents=[12], mode="add", value=6.0):
    ...     logits = model(tokens)
    >>> out = generate(model, tokens, max_new_tokens=8, steering=LanguageSteering(model, sae, [12], "add", 6.0))

On a ``HookedSAETransformer`` with an SAE spliced in at the hook, the edit acts on the spliced
stream (``<hook>.hook_sae_output``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_causal_plugin._validation import check_float, check_floats
from sae_causal_plugin.steering.core import (
    STEERING_MODES,
    LatentIds,
    SteeringMode,
    as_latent_list,
    expand_latents,
    steer_activations,
)

Positions = int | Sequence[int] | Tensor | None


def resolve_hook_name(model: Any, hook_name: str) -> str:
    """``hook_name`` checked against ``model.hook_dict`` (the close names are listed if unknown).

    On a ``HookedSAETransformer`` with an SAE spliced in at ``hook_name``, the stream after the
    splice, ``<hook_name>.hook_sae_output``, is returned.
    """
    names = getattr(model, "hook_dict", None)
    if names is None:
        raise ValueError(f"model {type(model).__name__} has no hook_dict: give a HookedTransformer")
    if hook_name in names:
        return hook_name
    if f"{hook_name}.hook_sae_output" in names:
        return f"{hook_name}.hook_sae_output"
    close = difflib.get_close_matches(hook_name, list(names), n=5, cutoff=0.5)
    hint = f"; closest: {close}" if close else ""
    raise ValueError(f"unknown hook name {hook_name!r}{hint}")


@torch.no_grad()
def hook_width(model: Any, hook_name: str) -> int:
    """Channels an SAE sees at ``hook_name`` (heads x d_head for per-head hooks), from a 1-token run."""
    shapes: list[tuple[int, ...]] = []

    def record(x: Tensor, hook: Any) -> None:
        shapes.append(tuple(x.shape))

    model.run_with_hooks(torch.zeros(1, 1, dtype=torch.long, device=model.cfg.device),
                         fwd_hooks=[(hook_name, record)])
    if not shapes:
        raise ValueError(f"hook {hook_name!r} did not run in a forward pass")
    shape = shapes[0]
    return shape[-1] * shape[-2] if len(shape) == 4 else shape[-1]


def default_hook_name(sae: Any) -> str:
    name = getattr(getattr(getattr(sae, "cfg", None), "metadata", None), "hook_name", None)
    if not name:
        raise ValueError("the SAE's cfg.metadata.hook_name is not set: pass hook_name=")
    return str(name)


def check_positions(positions: Positions, n_ctx: int | None = None) -> Positions:
    """Validate ``positions``: ints (negative count from the end), or a bool mask ``[seq]`` / ``[batch, seq]``."""
    if positions is None:
        return None
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        if positions.ndim not in (1, 2):
            raise ValueError(f"a position mask must be [seq] or [batch, seq], got shape {tuple(positions.shape)}")
        return positions
    values = positions.flatten().tolist() if isinstance(positions, Tensor) else (
        [positions] if isinstance(positions, int) else list(positions))
    if not values or any(isinstance(p, bool) or not isinstance(p, int) for p in values):
        raise ValueError(f"positions must be a non-empty list of ints or a bool mask, got {positions!r}")
    if n_ctx is not None:
        bad = [p for p in values if not -n_ctx <= p < n_ctx]
        if bad:
            raise ValueError(f"positions {bad} are outside the model's context of {n_ctx} tokens")
    return sorted(set(values))


def position_mask(positions: Positions, batch: int, seq: int) -> Float[Tensor, "batch seq"] | None:
    """``positions`` as a 0/1 mask over ``[batch, seq]`` (``None`` = every position)."""
    if positions is None:
        return None
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        if positions.shape[-1] != seq or (positions.ndim == 2 and positions.shape[0] not in (1, batch)):
            raise ValueError(
                f"position mask of shape {tuple(positions.shape)} does not fit activations [batch={batch}, seq={seq}]")
        mask = positions.float()
        return mask.expand(batch, seq) if mask.ndim == 2 else mask.expand(batch, seq)
    bad = [p for p in positions if not -seq <= p < seq]  # type: ignore[union-attr]
    if bad:
        raise ValueError(f"positions {bad} are outside a sequence of {seq} tokens")
    mask = torch.zeros(seq)
    mask[torch.tensor(positions)] = 1.0
    return mask.expand(batch, seq)


class LanguageSteering:
    """Edit SAE concepts at a hook point of a TransformerLens model for the duration of a ``with``.

    Args:
        model: a ``HookedTransformer`` or ``HookedSAETransformer``.
        sae: a SAELens SAE trained on ``hook_name`` (its ``d_in`` must match the hook).
        latents: latent index or indices to edit (graph nodes when ``include_descendants``).
        mode: ``"add"``, ``"clamp"``, ``"ablate"`` or ``"scale"``.
        value: amount (add), target (clamp) or factor (scale); scalar or one per latent.
            Required except for ablate.
        hook_name: default ``sae.cfg.metadata.hook_name``.
        strength: multiplies the edit; ``0`` leaves the model unchanged.
        positions: token positions to edit (ints, negative from the end, or a bool mask
            ``[seq]`` / ``[batch, seq]``); default every position.
        include_descendants: also edit every descendant (finer concept) of the latents in ``graph``.
        graph: a ``ConceptGraph`` (or anything with ``descendants``) whose nodes are latents.
        latent_of: maps graph node ids to latent indices of this SAE (default: nodes are ints).
    """

    def __init__(
        self,
        model: Any,
        sae: Any,
        latents: LatentIds,
        mode: SteeringMode = "add",
        value: float | Sequence[float] | Tensor | None = None,
        *,
        hook_name: str | None = None,
        strength: float = 1.0,
        positions: Positions = None,
        include_descendants: bool = False,
        graph: Any = None,
        latent_of: Callable[[Any], int | None] | None = None,
    ):
        if mode not in STEERING_MODES:
            raise ValueError(f"mode must be one of {STEERING_MODES}, got {mode!r}")
        if value is None and mode != "ablate":
            raise ValueError(f"mode {mode!r} needs value= (amount, target or factor)")
        if value is not None:
            check_floats(value, "value")
        strength = check_float(strength, "strength")
        self.hook_name = resolve_hook_name(model, hook_name or default_hook_name(sae))
        width = hook_width(model, self.hook_name)
        if int(sae.cfg.d_in) != width:
            raise ValueError(
                f"SAE d_in={sae.cfg.d_in} but {self.hook_name} has {width} channels; "
                "use the SAE trained on this hook, or the hook it was trained on")
        ids = as_latent_list(latents, int(sae.cfg.d_sae))
        if include_descendants:
            if graph is None:
                raise ValueError("include_descendants=True needs graph= (a ConceptGraph)")
            if hasattr(graph, "__contains__"):
                missing = [i for i in ids if i not in graph]
                if missing:
                    raise ValueError(f"latents {missing} are not concepts of the graph; "
                                     "steer them without include_descendants or pick graph nodes")
            ids = as_latent_list(expand_latents(ids, graph, latent_of), int(sae.cfg.d_sae))
        self.positions = check_positions(positions, getattr(model.cfg, "n_ctx", None))
        self.model = model
        self.sae = sae
        self.latents = ids
        self.mode = mode
        self.value = 0.0 if value is None else value
        self.strength = strength
        self._stack: ExitStack | None = None

    def edit(self, x: Float[Tensor, "batch seq ..."], hook: Any = None) -> Tensor:
        """The steering hook: ``x`` with the concepts edited at the chosen positions."""
        heads = x.ndim == 4
        flat = x.flatten(-2) if heads else x
        mask = position_mask(self.positions, flat.shape[0], flat.shape[1])
        out = steer_activations(flat, self.sae, self.latents, self.mode, self.value,
                                strength=self.strength,
                                mask=None if mask is None else mask.to(flat.device))
        return out.unflatten(-1, x.shape[-2:]) if heads else out

    def __enter__(self) -> "LanguageSteering":
        if self._stack is not None:
            raise RuntimeError("this steering context is already active")
        stack = ExitStack()
        stack.enter_context(self.model.hooks(fwd_hooks=[(self.hook_name, self.edit)]))
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


def _steered(steering: LanguageSteering | None) -> Any:
    return steering if steering is not None else nullcontext()


@torch.no_grad()
def next_token_probs(
    model: Any, tokens: Int[Tensor, "batch seq"], steering: LanguageSteering | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """Next-token probabilities after the last position, optionally under ``steering``."""
    with _steered(steering):
        logits = model(tokens, return_type="logits")
    return logits[:, -1].float().softmax(-1)


@torch.no_grad()
def mean_token_nll(
    model: Any, tokens: Int[Tensor, "batch seq"], steering: LanguageSteering | None = None,
    batch_size: int = 256,
) -> float:
    """Mean next-token negative log-likelihood over all positions (``exp`` of it is perplexity)."""
    total, count = 0.0, 0
    with _steered(steering):
        for chunk in tokens.split(batch_size):
            loss = model(chunk, return_type="loss", loss_per_token=True)
            total += float(loss.sum())
            count += loss.numel()
    return total / max(count, 1)


@torch.no_grad()
def generate(
    model: Any,
    tokens: Int[Tensor, "batch seq"],
    *,
    max_new_tokens: int = 10,
    steering: LanguageSteering | None = None,
    temperature: float = 0.0,
    seed: int | None = 0,
    stop_token: int | None = None,
) -> Int[Tensor, "batch seq_out"]:
    """Append up to ``max_new_tokens`` tokens (greedy at ``temperature=0``, else sampled).

    Every step reruns the whole sequence (no KV cache), so ``steering.positions`` keep their
    meaning: negative positions follow the growing end of the sequence.  Generation stops early
    once every row has produced ``stop_token``.  The model's hooks are removed on return or error.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, seq], got shape {tuple(tokens.shape)}")
    temperature = check_float(temperature, "temperature", low=0)
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and tokens.shape[1] + max_new_tokens > n_ctx:
        raise ValueError(
            f"{tokens.shape[1]} prompt + {max_new_tokens} new tokens exceed the context of {n_ctx}")
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    out = tokens.to(model.cfg.device)
    done = torch.zeros(out.shape[0], dtype=torch.bool)
    with _steered(steering):
        for _ in range(max_new_tokens):
            logits = model(out, return_type="logits")[:, -1].float().cpu()
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen)[:, 0]
            out = torch.cat([out, nxt[:, None].to(out.device)], dim=1)
            if stop_token is not None:
                done |= nxt == stop_token
                if bool(done.all()):
                    break
    return out


__all__ = [
    "LanguageSteering",
    "check_positions",
    "generate",
    "hook_width",
    "mean_token_nll",
    "next_token_probs",
    "position_mask",
    "resolve_hook_name",
]
