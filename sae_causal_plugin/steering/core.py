"""Pure steering arithmetic on SAE concepts, shared by diffusion and language-model steering.

Given activations ``x`` (``[..., d_in]``, or channel-first feature maps), a SAELens SAE and
latent ids ``S``, :func:`steer_activations` returns the error-preserving edit

    x' = x + strength * decode-direction(S) . (z'_S - z_S)

so the SAE's reconstruction error ``x - decode(encode(x))`` is kept exactly.  ``z = encode(x)``
and the target ``z'_S`` depends on the mode:

=========  ===========================  =======================================
mode       target ``z'_S``              no-op value
=========  ===========================  =======================================
``add``    ``z_S + value``              ``value = 0``
``clamp``  ``value`` (everywhere)       --
``ablate`` ``0``                        --
``scale``  ``value * z_S``              ``value = 1``
=========  ===========================  =======================================

``strength = 0`` returns ``x`` itself for every mode.  The decode direction of latent ``i`` is
``decode(e_i) - decode(0)``, i.e. ``W_dec[i]`` for a plain SAE, and honours whatever the SAE's
``decode`` does (TopK ``rescale_acts_by_decoder_norm``, whitening, per-row normalisation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple, Protocol, Union, get_args

import torch
from jaxtyping import Float
from torch import Tensor

SteeringMode = Literal["add", "clamp", "ablate", "scale"]
STEERING_MODES: tuple[str, ...] = get_args(SteeringMode)

#: normalisations whose ``decode`` depends on per-row state set by ``encode``.
_STATEFUL_NORMS = ("constant_norm_rescale", "layer_norm")

LatentIds = Union[int, Sequence[int], Tensor]


class HasDescendants(Protocol):
    """Anything with a ``descendants(node) -> set`` method, e.g. ``graph.ConceptGraph``."""

    def descendants(self, node: Any) -> set[Any]: ...


def as_latent_list(latents: LatentIds, d_sae: int | None = None) -> list[int]:
    """Normalise latent ids to a sorted list of unique ints, checking ``0 <= id < d_sae``."""
    if isinstance(latents, Tensor):
        ids = [int(v) for v in latents.flatten().tolist()]
    elif isinstance(latents, int):
        ids = [int(latents)]
    else:
        ids = [int(v) for v in latents]
    if not ids:
        raise ValueError("latents is empty: give at least one SAE latent index to steer")
    if d_sae is not None:
        bad = [i for i in ids if not 0 <= i < d_sae]
        if bad:
            raise ValueError(f"latent ids {bad} are outside the SAE's range [0, {d_sae})")
    return sorted(set(ids))


def expand_latents(
    latents: LatentIds,
    graph: HasDescendants,
    latent_of: Callable[[Any], int | None] | None = None,
) -> list[int]:
    """``latents`` plus all their descendants in ``graph`` (finer concepts), as latent ids.

    Graph nodes are latent indices (ints) by default.  ``latent_of`` maps other node ids
    (e.g. ``"t500:12"`` in a multi-level graph) to a latent index of *this* SAE, or ``None`` to
    skip a node that belongs elsewhere.
    """
    if not callable(getattr(graph, "descendants", None)):
        raise ValueError(
            f"include_descendants needs a graph with a descendants(node) method, got {type(graph).__name__}"
        )
    out = set(as_latent_list(latents))
    for node in list(out):
        for desc in graph.descendants(node):
            idx = latent_of(desc) if latent_of is not None else desc
            if idx is None:
                continue
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ValueError(
                    f"graph node {desc!r} is not a latent index; pass latent_of= to map node ids to latents"
                )
            out.add(int(idx))
    return sorted(out)


def _sae_d_sae(sae: Any) -> int:
    return int(sae.cfg.d_sae)


def _prime_norm_state(sae: Any, x_sae: Tensor) -> None:
    """Re-run the SAE's input normalisation so a stateful ``decode`` can run once more."""
    sae.run_time_activation_norm_fn_in(sae.reshape_fn_in(x_sae))


def decoder_directions(sae: Any, latents: LatentIds) -> Float[Tensor, "k d_in"]:
    """Decode directions ``decode(e_i) - decode(0)`` of latents ``i`` (``W_dec[i]`` for a plain SAE).

    Only for SAEs whose ``decode`` is affine in the code (all but per-row normalisations).
    """
    ids = as_latent_list(latents, _sae_d_sae(sae))
    norm = getattr(sae.cfg, "normalize_activations", "none")
    if norm in _STATEFUL_NORMS:
        raise ValueError(
            f"SAE normalize_activations={norm!r} decodes with per-row state; "
            "use steer_activations, which handles it"
        )
    W_dec = sae.W_dec
    basis = torch.zeros(len(ids) + 1, _sae_d_sae(sae), dtype=W_dec.dtype, device=W_dec.device)
    basis[torch.arange(len(ids)), torch.tensor(ids)] = 1.0
    decoded = sae.decode(basis)
    return decoded[:-1] - decoded[-1:]


def _target_change(
    z_S: Float[Tensor, "n k"] | None, mode: str, value: Float[Tensor, "k"], n: int
) -> Float[Tensor, "n k"]:
    if mode == "add":
        return value.expand(n, -1)
    assert z_S is not None
    if mode == "clamp":
        return value - z_S
    if mode == "ablate":
        return -z_S
    return (value - 1.0) * z_S  # scale


def steer_activations(
    x: Float[Tensor, "..."],
    sae: Any,
    latents: LatentIds,
    mode: SteeringMode = "add",
    value: float | Sequence[float] | Tensor = 1.0,
    *,
    strength: float = 1.0,
    mask: Float[Tensor, "..."] | None = None,
    channel_dim: int = -1,
) -> Float[Tensor, "..."]:
    """Edit SAE concepts ``latents`` in ``x`` while keeping the SAE's reconstruction error.

    Args:
        x: activations; the SAE input dimension is ``channel_dim`` (``1`` for ``(B, C, H, W)``).
        sae: a SAELens ``SAE`` / ``TrainingSAE`` with ``cfg.d_in == x.shape[channel_dim]``.
        latents: latent index or indices ``S``.
        mode: ``"add"``, ``"clamp"``, ``"ablate"`` or ``"scale"`` (see module docstring).
        value: scalar or one value per latent (in sorted latent order).
        strength: multiplies the change; ``0`` returns ``x`` unchanged (the same object).
        mask: weights broadcastable to ``x`` without its channel dimension (e.g. ``(H, W)`` or
            ``(B, H, W)`` for feature maps, ``(N,)`` for tokens); the change is multiplied by it.
        channel_dim: which dimension of ``x`` holds the ``d_in`` channels.

    Returns:
        The edited tensor, same shape, dtype and device as ``x``.
    """
    if mode not in STEERING_MODES:
        raise ValueError(f"mode must be one of {STEERING_MODES}, got {mode!r}")
    ids = as_latent_list(latents, _sae_d_sae(sae))
    d_in = int(sae.cfg.d_in)
    if x.ndim == 0 or x.shape[channel_dim] != d_in:
        shape = tuple(x.shape)
        raise ValueError(
            f"activation has {shape[channel_dim] if x.ndim else 0} channels on dim {channel_dim} "
            f"(shape {shape}) but the SAE has d_in={d_in}; pick the hook the SAE was trained on"
        )
    if strength == 0:
        return x

    xl = torch.movedim(x, channel_dim, -1)
    flat = xl.reshape(-1, d_in)
    x_sae = flat.to(sae.W_dec.dtype)
    vals = torch.as_tensor(value, dtype=x_sae.dtype, device=x_sae.device).flatten()
    if vals.numel() not in (1, len(ids)):
        raise ValueError(
            f"value has {vals.numel()} entries; give one, or one per latent ({len(ids)})"
        )
    vals = vals.expand(len(ids))

    idx = torch.tensor(ids, device=x_sae.device)
    z_S = None if mode == "add" else sae.encode(x_sae)[:, idx]
    dz = strength * _target_change(z_S, mode, vals, flat.shape[0])

    norm = getattr(sae.cfg, "normalize_activations", "none")
    if norm in _STATEFUL_NORMS:
        dz_full = torch.zeros(
            flat.shape[0], _sae_d_sae(sae), dtype=x_sae.dtype, device=x_sae.device
        )
        dz_full[:, idx] = dz
        _prime_norm_state(sae, x_sae)
        moved = sae.decode(dz_full)
        _prime_norm_state(sae, x_sae)
        delta = moved - sae.decode(torch.zeros_like(dz_full))
    else:
        delta = dz @ decoder_directions(sae, ids)

    delta = delta.reshape(xl.shape).to(x.dtype)
    if mask is not None:
        delta = delta * mask.to(delta.dtype).unsqueeze(-1)
    return torch.movedim(xl + delta, -1, channel_dim)


__all__ = [
    "STEERING_MODES",
    "SteeringMode",
    "HasDescendants",
    "as_latent_list",
    "expand_latents",
    "decoder_directions",
    "steer_activations",
]


class Firing(NamedTuple):
    """How a latent fired over some activations: the mean of its non-zero values (``None`` when it never
    fired), and on how many of how many rows it fired."""

    mean: float | None
    fired: int
    rows: int


@torch.no_grad()
def latent_firing_size(sae: Any, chunks: Iterable[Float[Tensor, "n d_in"]], latent: int) -> Firing:
    """The typical size of a natural firing of ``latent``: a steering value of a few times ``mean``
    moves the latent about as far as the data does."""
    z = torch.cat([sae.encode(chunk)[:, latent] for chunk in chunks])
    fired = z[z > 0]
    return Firing(float(fired.mean()) if fired.numel() else None, int(fired.numel()), int(z.numel()))
