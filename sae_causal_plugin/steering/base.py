"""One steering base for every model: the argument checks, the hook, and the ``with`` block.

:class:`Steering` is what language-model and diffusion steering share.  Its constructor takes the
same arguments in the same order for both,

    ``Steering(hooked, sae, latents, mode="add", value=None, *, hook_name=None, strength=1.0,
    include_descendants=False, graph=None, latent_of=None)``

and refuses the same bad input with the same message: an unknown mode, a missing / non-finite
``value`` or ``strength``, latent ids that are not ints, outside the SAE or not concepts of the
graph, an SAE with non-finite weights, an unknown hook, an SAE whose ``d_in`` is not the hook's
width.  Entering registers one TransformerLens forward hook (:meth:`Steering.edit`, possibly
gated by the subclass); leaving removes it, also when the ``with`` body raises.

Subclasses say how wide a hook is (:meth:`Steering.hook_width`), what the edit does, and may
wrap the hook or enter more contexts: :class:`~sae_causal_plugin.steering.language.LanguageSteering`
(token positions) and :class:`~sae_causal_plugin.diffusion.steering.DiffusionSteering` (step
window, CFG rows, spatial mask).
"""

from __future__ import annotations

import difflib
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin._validation import check_finite_tensor, check_float, check_floats
from sae_causal_plugin.steering.core import (
    STEERING_MODES,
    LatentIds,
    SteeringMode,
    as_latent_list,
    expand_latents,
)

SteeringValue = float | Sequence[float] | Tensor
HookFn = Callable[..., Tensor | None]
_SAE_WEIGHTS = ("W_enc", "W_dec", "b_enc", "b_dec")


def check_mode_and_value(mode: str, value: SteeringValue | None) -> SteeringValue:
    """``value`` for ``mode`` (``0.0`` for ablate when not given); ``ValueError`` otherwise."""
    if mode not in STEERING_MODES:
        raise ValueError(f"mode must be one of {STEERING_MODES}, got {mode!r}")
    if value is None:
        if mode != "ablate":
            raise ValueError(f"mode {mode!r} needs value= (amount, target or factor)")
        return 0.0
    check_floats(value, "value")
    return value


def sae_dims(sae: Any) -> tuple[int, int]:
    """``(d_in, d_sae)`` of a SAELens SAE whose weights are all finite."""
    cfg = getattr(sae, "cfg", None)
    if not all(isinstance(getattr(cfg, k, None), numbers.Integral) for k in ("d_in", "d_sae")):
        raise ValueError(f"sae must be a SAELens SAE with cfg.d_in and cfg.d_sae, got {type(sae).__name__}")
    for name in _SAE_WEIGHTS:
        weight = getattr(sae, name, None)
        if isinstance(weight, Tensor):
            check_finite_tensor(weight.detach(), f"the SAE's {name}", "load or train an SAE with finite weights")
    return int(cfg.d_in), int(cfg.d_sae)


def check_latent_ids(latents: LatentIds, d_sae: int) -> list[int]:
    """``latents`` as sorted unique ints in ``[0, d_sae)``; strings, floats and bools are refused."""
    if isinstance(latents, str):
        raise ValueError(f"latents must be SAE latent ids (ints), got the string {latents!r}; "
                         "a hook name goes in hook_name=")
    if isinstance(latents, Tensor):
        if latents.dtype == torch.bool or latents.is_floating_point() or latents.is_complex():
            raise ValueError(f"latents must be SAE latent ids (ints), got a {latents.dtype} tensor")
        return as_latent_list(latents, d_sae)
    values = list(latents) if isinstance(latents, Iterable) else [latents]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
    if bad:
        raise ValueError(f"latents must be SAE latent ids (ints), got {bad[0]!r}")
    return as_latent_list([int(v) for v in values], d_sae)


def steered_latents(
    latents: LatentIds, d_sae: int, include_descendants: bool, graph: Any,
    latent_of: Callable[[Any], int | None] | None,
) -> list[int]:
    """The latent ids to edit: ``latents``, plus their descendants in ``graph`` if asked."""
    ids = check_latent_ids(latents, d_sae)
    if not include_descendants:
        return ids
    if graph is None:
        raise ValueError("include_descendants=True needs graph= (a ConceptGraph)")
    if hasattr(graph, "__contains__"):
        missing = [i for i in ids if i not in graph]
        if missing:
            raise ValueError(f"latents {missing} are not concepts of the graph; "
                             "steer them without include_descendants or pick graph nodes")
    return as_latent_list(expand_latents(ids, graph, latent_of), d_sae)


def default_hook_name(sae: Any) -> str:
    """The hook the SAE was trained on (``sae.cfg.metadata.hook_name``)."""
    name = getattr(getattr(getattr(sae, "cfg", None), "metadata", None), "hook_name", None)
    if not name:
        raise ValueError("the SAE's cfg.metadata.hook_name is not set: pass hook_name=")
    return str(name)


def resolve_hook_name(hooked: Any, hook_name: str) -> str:
    """``hook_name`` checked against ``hooked.hook_dict`` (the close names are listed if unknown).

    On a SAELens ``HookedSAETransformer`` with an SAE spliced in at ``hook_name``, the stream
    after the splice, ``<hook_name>.hook_sae_output``, is returned.
    """
    names = getattr(hooked, "hook_dict", None)
    if names is None:
        raise ValueError(f"{type(hooked).__name__} has no hook_dict: give a model with TransformerLens "
                         "hook points (a HookedTransformer, a diffusers pipeline or a hooked denoiser)")
    if hook_name in names:
        return hook_name
    if f"{hook_name}.hook_sae_output" in names:
        return f"{hook_name}.hook_sae_output"
    close = difflib.get_close_matches(hook_name, list(names), n=5, cutoff=0.5)
    hint = f"; closest names: {close}" if close else ""
    raise ValueError(f"unknown hook name {hook_name!r} on {type(hooked).__name__}{hint}; "
                     "every name is in .hook_dict")


def check_hook_width(d_in: int, hook_name: str, width: int | None) -> None:
    """``ValueError`` when the SAE's ``d_in`` is not the hook's channel count (``None``: unknown)."""
    if width is not None and d_in != width:
        raise ValueError(f"SAE d_in={d_in} but {hook_name} has {width} channels; "
                         "use the SAE trained on this hook, or the hook it was trained on")


class Steering(ABC):
    """Edit SAE concepts at one hook point for the duration of a ``with`` block.

    Args:
        hooked: the object holding the hook points (``hook_dict`` and ``hooks(fwd_hooks=...)``).
        sae: a SAELens SAE trained on ``hook_name`` (its ``d_in`` must match the hook).
        latents: latent index or indices to edit (graph nodes when ``include_descendants``).
        mode: ``"add"``, ``"clamp"``, ``"ablate"`` or ``"scale"``.
        value: amount (add), target (clamp) or factor (scale); scalar or one per latent.
            Required except for ablate.
        hook_name: default ``sae.cfg.metadata.hook_name``.
        strength: multiplies the edit; ``0`` leaves the model unchanged.
        include_descendants: also edit every descendant (finer concept) of the latents in ``graph``.
        graph: a ``ConceptGraph`` (or anything with ``descendants``) whose nodes are latents.
        latent_of: maps graph node ids to latent indices of this SAE (default: nodes are ints).
    """

    def __init__(
        self,
        hooked: Any,
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
    ):
        self.value = check_mode_and_value(mode, value)
        self.mode = mode
        self.strength = check_float(strength, "strength")
        d_in, d_sae = sae_dims(sae)
        self.latents = steered_latents(latents, d_sae, include_descendants, graph, latent_of)
        self.sae = sae
        self.hooked = hooked
        self.hook_name = resolve_hook_name(hooked, hook_name or default_hook_name(sae))
        check_hook_width(d_in, self.hook_name, self.hook_width(self.hook_name))
        self._stack: ExitStack | None = None

    @abstractmethod
    def hook_width(self, hook_name: str) -> int | None:
        """Channels an SAE sees at ``hook_name`` (``None`` if they cannot be known up front)."""

    @abstractmethod
    def edit(self, x: Tensor, hook: Any = None) -> Tensor:
        """The steering hook: ``x`` with the concepts edited."""

    def hook_fn(self) -> HookFn:
        """The function registered at the hook (:meth:`edit`; subclasses may gate it)."""
        return self.edit

    def extra_contexts(self) -> list[AbstractContextManager[Any]]:
        """More contexts to enter after the hook is registered (none by default)."""
        return []

    def __enter__(self) -> "Steering":
        if self._stack is not None:
            raise RuntimeError("this steering context is already active; leave it before entering it again")
        with ExitStack() as stack:
            stack.enter_context(self.hooked.hooks(fwd_hooks=[(self.hook_name, self.hook_fn())]))
            for context in self.extra_contexts():
                stack.enter_context(context)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


__all__ = [
    "Steering",
    "check_hook_width",
    "check_latent_ids",
    "check_mode_and_value",
    "default_hook_name",
    "resolve_hook_name",
    "sae_dims",
    "steered_latents",
]
