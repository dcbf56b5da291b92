"""TransformerLens hook points on diffusers denoisers (UNets and diffusion transformers).

:class:`HookedUNet` and :class:`HookedDiT` wrap a diffusers denoiser *without copying or changing
it*.  Every chosen submodule (UNet down / mid / up blocks and their ``resnets`` / ``attentions``,
and the attentions' cross-attention layers ``...attentions.{j}.transformer_blocks.{k}.attn2`` (and
``attn1`` where it is one too), where the conditioning tokens enter; every transformer block of a DiT) gets two TransformerLens
``HookPoint``\\ s named by its module path (a cross-attention layer only ``hook_out``):

* ``<path>.hook_out``: the submodule's main hidden-states output.  Tuple and dataclass outputs are
  unpacked for the hook and packed back (for a UNet down block the copy of the output that is also
  the last skip connection is replaced too).
* ``<path>.hook_delta``: ``output - input``, the residual update, where the submodule keeps the
  input's shape.  A hook that edits the delta changes the output to ``input + new_delta``
  (computed as ``out + (new_delta - delta)`` so an untouched delta leaves ``out`` bit-identical).
  When both points have hooks, ``hook_delta`` runs first.

The no-hook path costs nothing: torch forward hooks are registered on the submodules only for the
duration of a call, and only on submodules whose hook points have hooks attached.  Hooks therefore
fire for calls made through the wrapper (``hooked(...)``, ``run_with_cache``, ``run_with_hooks``) or
for any call of the raw model inside :meth:`HookedDenoiser.attached` (what the pipeline wrapper
uses, since diffusers pipelines call ``pipe.unet`` directly).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from diffusers.utils import BaseOutput
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint, NamesFilter
from transformer_lens.HookedRootModule import HookedRootModule

#: transformer blocks that return ``(encoder_hidden_states, hidden_states)``.
_MAIN_OUTPUT_INDEX = {
    "JointTransformerBlock": 1,
    "FluxTransformerBlock": 1,
    "FluxSingleTransformerBlock": 1,
}
#: denoisers whose ``timestep`` argument is the scheduler timestep divided by this.
_TIMESTEP_SCALE = {"FluxTransformer2DModel": 1000.0}

OnCall = Callable[[tuple, dict], None]


def _unpack(output: Any, index: int) -> Tensor:
    """The main hidden-states tensor of a submodule output."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, BaseOutput):
        return output.to_tuple()[index]
    if isinstance(output, tuple):
        return output[index]
    raise TypeError(f"cannot find the hidden states in an output of type {type(output).__name__}")


def _pack(output: Any, index: int, old: Tensor, new: Tensor) -> Any:
    """``output`` with its main tensor ``old`` replaced by ``new`` (also inside nested skip tuples)."""
    if isinstance(output, Tensor):
        return new
    if isinstance(output, BaseOutput):
        fields = dict(output.items())
        fields[list(output.keys())[index]] = new
        return type(output)(**fields)
    items = list(output)
    items[index] = new
    for i, item in enumerate(items):
        if i != index and isinstance(item, tuple):
            items[i] = tuple(new if e is old else e for e in item)
    return tuple(items)


def _preserves_shape(module: nn.Module) -> bool:
    """Whether the submodule's main output has its main input's shape (so a delta exists)."""
    if getattr(module, "is_cross_attention", False):
        return False  # its input is the normed stream, not what its output is added to
    if hasattr(module, "resnets"):  # a UNet block
        if getattr(module, "downsamplers", None) is not None:
            return False
        if getattr(module, "upsamplers", None) is not None:
            return False
        return all(_preserves_shape(r) for r in module.resnets)
    if hasattr(module, "up") and hasattr(module, "down") and hasattr(module, "in_channels"):
        return module.in_channels == module.out_channels and not module.up and not module.down
    if isinstance(getattr(module, "in_channels", None), int):
        return module.in_channels == getattr(module, "out_channels", module.in_channels)
    if isinstance(getattr(module, "query_dim", None), int):
        return module.query_dim == getattr(module, "out_dim", module.query_dim)
    return True  # transformer blocks map hidden states to hidden states


def _channels(module: nn.Module) -> int | None:
    """Channel count of the submodule's main output, when it can be read from the module."""
    resnets = getattr(module, "resnets", None)
    if resnets is not None and len(resnets):
        return _channels(resnets[-1])
    for attr in ("out_channels", "out_dim", "dim"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    for child in ("attn", "attn1"):
        sub = getattr(module, child, None)
        if isinstance(sub, nn.Module):
            return _channels(sub)
    return None


def _first_param(fn: Callable) -> str | None:
    params = list(inspect.signature(fn).parameters.values())
    return params[0].name if params else None


@dataclass(eq=False)
class HookSite:
    """One hooked submodule: where it is, how to read its output, and its hook points."""

    path: str
    module: nn.Module
    hook_out: HookPoint
    hook_delta: HookPoint | None
    main_index: int = 0
    input_name: str | None = None
    channels: int | None = None

    def points(self) -> Iterator[tuple[str, HookPoint]]:
        if self.hook_delta is not None:
            yield f"{self.path}.hook_delta", self.hook_delta
        yield f"{self.path}.hook_out", self.hook_out

    def active(self) -> bool:
        d = self.hook_delta
        return bool(
            self.hook_out.fwd_hooks
            or self.hook_out.bwd_hooks
            or (d is not None and (d.fwd_hooks or d.bwd_hooks))
        )

    def _input(self, args: tuple, kwargs: dict) -> Tensor:
        if self.input_name is not None and self.input_name in kwargs:
            return kwargs[self.input_name]
        return args[0]

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        main = _unpack(output, self.main_index)
        new = main
        d = self.hook_delta
        if d is not None and (d.fwd_hooks or d.bwd_hooks):
            x_in = self._input(args, kwargs)
            if x_in.shape != main.shape:
                raise ValueError(
                    f"{self.path}: input shape {tuple(x_in.shape)} != output shape "
                    f"{tuple(main.shape)}, no residual update; use {self.path}.hook_out"
                )
            delta = main - x_in
            edited = d(delta)
            if edited is not delta:
                new = main + (edited - delta)
        if self.hook_out.fwd_hooks or self.hook_out.bwd_hooks:
            new = self.hook_out(new)
        if new is main:
            return None
        return _pack(output, self.main_index, main, new)


class HookedDenoiser(HookedRootModule):
    """A TransformerLens ``HookedRootModule`` around a diffusers denoiser (shared, not copied).

    Calling it calls the wrapped model with the same arguments; with no hooks attached the output
    is the wrapped model's output, bit for bit.  Attribute look-ups it does not know (``config``,
    ``dtype``, ``device``, ...) are forwarded to the wrapped model.
    """

    def __init__(self, model: nn.Module, sites: Iterable[tuple[str, nn.Module]]):
        super().__init__()
        if isinstance(model, HookedDenoiser):
            raise TypeError("model is already hooked; use it directly")
        self.model = model
        self.hook_modules = nn.ModuleDict()
        self.sites: list[HookSite] = []
        for path, module in sites:
            out = HookPoint()
            delta = HookPoint() if _preserves_shape(module) else None
            site = HookSite(
                path=path,
                module=module,
                hook_out=out,
                hook_delta=delta,
                main_index=_MAIN_OUTPUT_INDEX.get(type(module).__name__, 0),
                input_name=_first_param(module.forward),
                channels=_channels(module),
            )
            for name, hp in site.points():
                self.hook_modules[name.replace(".", ":")] = hp
            self.sites.append(site)
        self.site_of: dict[str, HookSite] = {}
        self.timestep_scale = _TIMESTEP_SCALE.get(type(model).__name__, 1.0)
        fwd_params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._t_index = fwd_params.index("timestep") if "timestep" in fwd_params else None
        self._sample_name = fwd_params[0] if fwd_params else None
        self._live = 0
        self._attach_depth = 0
        self._root_handles: list[Any] = []
        self._stack: list[list[Any] | None] = []
        self._callbacks: list[OnCall] = []
        self.setup()

    # --- TransformerLens plumbing -------------------------------------------------------------
    def setup(self) -> None:
        """Fill ``hook_dict`` / ``mod_dict`` with the hook points, named by module path."""
        self.mod_dict = {}
        self.hook_dict = {}
        self.site_of = {}
        for site in self.sites:
            for name, hp in site.points():
                hp.name = name
                self.hook_dict[name] = hp
                self.mod_dict[name] = hp
                self.site_of[name] = site

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if model is None or name.startswith("__"):
                raise
            return getattr(model, name)

    def check_hook_name(self, name: str) -> HookPoint:
        """The hook point called ``name``; ``ValueError`` naming the closest names otherwise."""
        hp = self.hook_dict.get(name)
        if hp is None:
            close = difflib.get_close_matches(name, list(self.hook_dict), n=5, cutoff=0.5)
            hint = f" Closest names: {close}." if close else ""
            raise ValueError(
                f"Unknown hook name {name!r} on {type(self.model).__name__}.{hint} "
                "See .hook_dict for all names."
            )
        return hp

    def _check_names(self, names: NamesFilter) -> None:
        if isinstance(names, str):
            self.check_hook_name(names)
        elif isinstance(names, (list, tuple)):
            for n in names:
                self.check_hook_name(n)

    def add_hook(  # type: ignore[override]
        self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False
    ):
        """``HookedRootModule.add_hook`` with a clear error for unknown names."""
        if isinstance(name, str):
            self.check_hook_name(name)
        super().add_hook(
            name, hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend
        )

    def _enable_hook_with_name(self, name, hook, dir):  # type: ignore[override]
        self.check_hook_name(name)
        super()._enable_hook_with_name(name, hook, dir)

    def get_caching_hooks(  # type: ignore[override]
        self, names_filter: NamesFilter = None, *args: Any, **kwargs: Any
    ):
        self._check_names(names_filter)
        return super().get_caching_hooks(names_filter, *args, **kwargs)

    # --- running ----------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped model; hooks attached to this wrapper fire during the call."""
        if self._live:
            return self.model(*args, **kwargs)
        handles = self._install()
        try:
            return self.model(*args, **kwargs)
        finally:
            self._remove(handles)

    def _install(self) -> list[Any]:
        self._live += 1
        return [
            s.module.register_forward_hook(s, with_kwargs=True) for s in self.sites if s.active()
        ]

    def _remove(self, handles: list[Any]) -> None:
        for h in handles:
            h.remove()
        self._live -= 1

    def _root_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        for callback in list(self._callbacks):
            callback(args, kwargs)
        self._stack.append(None if self._live else self._install())

    def _root_post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._stack:
            handles = self._stack.pop()
            if handles is not None:
                self._remove(handles)

    @contextmanager
    def attached(self, on_call: OnCall | None = None) -> Iterator["HookedDenoiser"]:
        """Make hooks fire on calls of the *raw* model, e.g. from inside a diffusers pipeline.

        ``on_call(args, kwargs)`` runs before each call of the model (used to track the timestep).
        Everything registered here is removed on exit, also when the body raises.
        """
        if on_call is not None:
            self._callbacks.append(on_call)
        if self._attach_depth == 0:
            self._root_handles = [
                self.model.register_forward_pre_hook(self._root_pre, with_kwargs=True),
                self.model.register_forward_hook(
                    self._root_post, with_kwargs=True, always_call=True
                ),
            ]
        self._attach_depth += 1
        try:
            yield self
        finally:
            self._attach_depth -= 1
            if on_call is not None:
                self._callbacks.remove(on_call)
            if self._attach_depth == 0:
                for h in self._root_handles:
                    h.remove()
                self._root_handles = []
                while self._stack:
                    handles = self._stack.pop()
                    if handles is not None:
                        self._remove(handles)

    # --- introspection helpers --------------------------------------------------------------
    def timestep_from(self, args: tuple, kwargs: dict) -> float | None:
        """The scheduler timestep of a denoiser call (first element if it is batched)."""
        t = kwargs.get("timestep")
        if t is None and self._t_index is not None and len(args) > self._t_index:
            t = args[self._t_index]
        if t is None:
            return None
        value = float(t.flatten()[0]) if isinstance(t, Tensor) else float(t)
        return value * self.timestep_scale

    def sample_from(self, args: tuple, kwargs: dict) -> Tensor | None:
        """The noisy sample (first argument) of a denoiser call."""
        if self._sample_name is not None and self._sample_name in kwargs:
            return kwargs[self._sample_name]
        return args[0] if args and isinstance(args[0], Tensor) else None

    def hook_channels(self, name: str) -> int | None:
        """Channel count at hook ``name`` (``None`` if it cannot be read from the module)."""
        self.check_hook_name(name)
        return self.site_of[name].channels

    def hook_names(self, kind: str | None = None) -> list[str]:
        """All hook names, or those ending in ``kind`` (``"hook_out"`` / ``"hook_delta"``)."""
        return [n for n in self.hook_dict if kind is None or n.endswith(kind)]


def cross_attention_sites(path: str, attention: nn.Module) -> list[tuple[str, nn.Module]]:
    """The cross-attention layers of a ``Transformer2DModel``'s transformer blocks (``attn2``, and
    ``attn1`` too with ``only_cross_attention``): where the conditioning tokens enter, ``(B, N, C)``
    tokens, ``hook_out`` only."""
    blocks = getattr(attention, "transformer_blocks", None) or []
    return [(f"{path}.transformer_blocks.{k}.{name}", getattr(b, name)) for k, b in enumerate(blocks)
            for name in ("attn1", "attn2")
            if getattr(getattr(b, name, None), "is_cross_attention", False)]


def unet_sites(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """Module paths of every down / mid / up block, their resnets and attentions, and the
    attentions' cross-attention layers (``...attentions.{j}.transformer_blocks.{k}.attn2``)."""
    blocks: list[tuple[str, nn.Module]] = [
        (f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)
    ]
    if getattr(unet, "mid_block", None) is not None:
        blocks.append(("mid_block", unet.mid_block))
    blocks += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    sites: list[tuple[str, nn.Module]] = []
    for path, block in blocks:
        resnets = list(getattr(block, "resnets", None) or [])
        attentions = list(getattr(block, "attentions", None) or [])
        for j in range(max(len(resnets), len(attentions))):
            if j < len(resnets):
                sites.append((f"{path}.resnets.{j}", resnets[j]))
            if j < len(attentions):
                sites.append((f"{path}.attentions.{j}", attentions[j]))
                sites += cross_attention_sites(f"{path}.attentions.{j}", attentions[j])
        sites.append((path, block))
    return sites


def transformer_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Module paths of every block in the model's top-level ``*blocks`` module lists."""
    return [
        (f"{name}.{i}", block)
        for name, child in model.named_children()
        if isinstance(child, nn.ModuleList) and name.endswith("blocks")
        for i, block in enumerate(child)
    ]


class HookedUNet(HookedDenoiser):
    """Hook points on a ``UNet2DModel`` / ``UNet2DConditionModel`` (feature maps ``(B, C, H, W)``).

    Example:
        >>> hooked = HookedUNet(unet)
        >>> out, cache = hooked.run_with_cache(x, t, encoder_hidden_states=ehs,
        ...                                    names_filter="mid_block.hook_out")
    """

    def __init__(self, unet: nn.Module):
        if not (hasattr(unet, "down_blocks") and hasattr(unet, "up_blocks")):
            raise TypeError(
                f"{type(unet).__name__} is not a diffusers UNet (no down_blocks/up_blocks)"
            )
        super().__init__(unet, unet_sites(unet))


class HookedDiT(HookedDenoiser):
    """Hook points on every block of a diffusers transformer denoiser (tokens ``(B, N, C)``).

    Works for ``DiTTransformer2DModel``, ``PixArtTransformer2DModel``, ``SD3Transformer2DModel``,
    ``FluxTransformer2DModel`` and any model whose blocks sit in top-level ``*blocks`` lists.
    Dual-stream blocks (SD3, Flux) are hooked on their image stream.
    """

    def __init__(self, model: nn.Module):
        sites = transformer_sites(model)
        if not sites:
            raise TypeError(
                f"{type(model).__name__} has no top-level '*blocks' module list to hook"
            )
        super().__init__(model, sites)


def hook_denoiser(model: nn.Module) -> HookedDenoiser:
    """The right hooked adapter for a diffusers denoiser (returned as is if already hooked)."""
    if isinstance(model, HookedDenoiser):
        return model
    if hasattr(model, "down_blocks") and hasattr(model, "up_blocks"):
        return HookedUNet(model)
    if transformer_sites(model):
        return HookedDiT(model)
    raise TypeError(
        f"Unsupported denoiser {type(model).__name__}: expected a diffusers UNet or a transformer "
        "with top-level '*blocks' module lists"
    )


def to_tokens(x: Float[Tensor, "..."]) -> Float[Tensor, "tokens channels"]:
    """Flatten activations to ``[tokens, channels]``: ``(B,C,H,W) -> (B*H*W, C)``, ``(B,N,C) -> (B*N, C)``."""
    if x.ndim == 4:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    if x.ndim == 3:
        return x.reshape(-1, x.shape[-1])
    if x.ndim == 2:
        return x
    raise ValueError(
        f"expected a (B,C,H,W) feature map or (B,N,C) tokens, got shape {tuple(x.shape)}"
    )


__all__ = [
    "HookSite",
    "HookedDenoiser",
    "HookedUNet",
    "HookedDiT",
    "hook_denoiser",
    "to_tokens",
    "unet_sites",
    "transformer_sites",
]
