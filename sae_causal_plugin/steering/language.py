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

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_causal_plugin._validation import check_float
from sae_causal_plugin.steering.base import Steering, SteeringValue, resolve_hook_name
from sae_causal_plugin.steering.core import LatentIds, SteeringMode, steer_activations

Positions = int | Sequence[int] | Tensor | None


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


class LanguageSteering(Steering):
    """Edit SAE concepts at a hook point of a TransformerLens model for the duration of a ``with``.

    Arguments as in :class:`~sae_causal_plugin.steering.base.Steering` (same order and checks as
    :class:`~sae_causal_plugin.diffusion.DiffusionSteering`), with ``model`` a
    ``HookedTransformer`` or ``HookedSAETransformer``, plus

    Args:
        positions: token positions to edit (ints, negative from the end, or a bool mask
            ``[seq]`` / ``[batch, seq]``); default every position.
    """

    def __init__(
        self,
        model: Any,
        sae: Any,
        latents: LatentIds,
        mode: SteeringMode = "add",
        value: SteeringValue | None = None,
        *,
        hook_name: str | None = None,
        strength: float = 1.0,
        include_descendants: bool = False,
        graph: Any = None,
        latent_of: Callable[[Any], int | None] | None = None,
        positions: Positions = None,
    ):
        super().__init__(model, sae, latents, mode, value, hook_name=hook_name, strength=strength,
                         include_descendants=include_descendants, graph=graph, latent_of=latent_of)
        self.positions = check_positions(positions, getattr(model.cfg, "n_ctx", None))
        self.model = model

    def hook_width(self, hook_name: str) -> int:
        return hook_width(self.hooked, hook_name)

    def edit(self, x: Float[Tensor, "batch seq ..."], hook: Any = None) -> Tensor:
        """The steering hook: ``x`` with the concepts edited at the chosen positions."""
        heads = x.ndim == 4
        flat = x.flatten(-2) if heads else x
        mask = position_mask(self.positions, flat.shape[0], flat.shape[1])
        out = steer_activations(flat, self.sae, self.latents, self.mode, self.value,
                                strength=self.strength,
                                mask=None if mask is None else mask.to(flat.device))
        return out.unflatten(-1, x.shape[-2:]) if heads else out


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
