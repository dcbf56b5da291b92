"""Activation streams from diffusion denoisers for SAELens training.

Two producers turn model runs into ``{(hook_name, timestep): [tokens, channels]}`` chunks, where a
``(B, C, H, W)`` feature map gives ``B*H*W`` tokens and ``(B, N, C)`` DiT tokens give ``B*N``; the
token order (image, then row-major position) is the same for every key of one chunk:

* :func:`noised_activations`: clean latents forward-noised to *exact* timesteps with the
  scheduler's ``add_noise`` (one noise draw shared by all timesteps of an image), then one
  denoiser call per timestep;
* :func:`trajectory_activations`: full generations through a :class:`HookedDiffusionPipeline`,
  cached at chosen schedule timesteps.

:class:`DiffusionActivationSource` shuffles chunks with SAELens's mixing buffer and yields
``[batch, d_in]`` tensors, the ``DataProvider`` that ``sae_lens.SAETrainer`` trains on; with
``paired=True`` it yields ``{timestep: [batch, d_in]}`` dicts whose rows are the same tokens at
every timestep (multi-level training; also a ``MultiSAETrainer`` data provider).
:func:`save_activation_shards` / :class:`ShardedActivationSource` cache a stream on disk as
safetensors shards and read it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Union

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from sae_lens.training.mixing_buffer import mixing_buffer, multi_hook_concat_split_iter
from torch import Tensor

from sae_causal_plugin.diffusion.hooked import HookedDenoiser, to_tokens
from sae_causal_plugin.diffusion.pipeline import HookedDiffusionPipeline, StepWindow, Timestep

ChunkKey = tuple[str, Timestep]
Chunk = dict[ChunkKey, Float[Tensor, "tokens channels"]]
BatchKey = Union[Timestep, ChunkKey]
Batch = Union[Float[Tensor, "batch d_in"], dict[BatchKey, Float[Tensor, "batch d_in"]]]


def _to(x: Tensor, device: str | torch.device | None) -> Tensor:
    return x if device is None else x.to(device)


def _names(denoiser: HookedDenoiser, hook_names: str | Sequence[str]) -> list[str]:
    names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
    if not names:
        raise ValueError("give at least one hook name")
    for n in names:
        denoiser.check_hook_name(n)
    return names


def check_timesteps(scheduler: Any, timesteps: Sequence[Timestep]) -> list[int]:
    """Integer timesteps inside ``[0, num_train_timesteps)``; ``ValueError`` otherwise."""
    n = int(scheduler.config.num_train_timesteps)
    out = []
    for t in timesteps:
        if float(t) != int(t) or not 0 <= int(t) < n:
            raise ValueError(
                f"timestep {t} is outside the scheduler's range: use integers in [0, {n - 1}]"
            )
        out.append(int(t))
    if not out:
        raise ValueError("give at least one timestep")
    return out


def noised_activations(
    denoiser: HookedDenoiser,
    scheduler: Any,
    latents: Iterable[Tensor | dict[str, Any]],
    hook_names: str | Sequence[str],
    timesteps: Sequence[int],
    *,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
) -> Iterator[Chunk]:
    """Activations of clean latents forward-noised to exact timesteps.

    Args:
        denoiser: hooked denoiser (see :func:`hook_denoiser`).
        scheduler: a scheduler with ``add_noise`` (DDPM, DDIM, PNDM, DPM-Solver, ...).
        latents: iterable of clean latent batches ``(B, C, H, W)``, or dicts with the batch under
            ``"latents"`` and any other denoiser keyword arguments (``encoder_hidden_states``,
            ``class_labels``, ...) for that batch.
        hook_names: one hook name or several.
        timesteps: exact integer timesteps, e.g. ``[899, 500, 100]``.
        seed: seed of the noise draws.
        device: where the activations are put.

    Yields:
        ``{(hook_name, t): [B*tokens, C]}`` per latent batch.
    """
    names = _names(denoiser, hook_names)
    if not hasattr(scheduler, "add_noise"):
        raise ValueError(
            f"{type(scheduler).__name__} has no add_noise; use a DDPM/DDIM-style scheduler or "
            "trajectory_activations"
        )
    ts = check_timesteps(scheduler, timesteps)
    return _noised(denoiser, scheduler, latents, names, ts, seed, device)


@torch.no_grad()
def _noised(
    denoiser: HookedDenoiser,
    scheduler: Any,
    latents: Iterable[Tensor | dict[str, Any]],
    names: list[str],
    ts: list[int],
    seed: int,
    device: str | torch.device | None,
) -> Iterator[Chunk]:
    gen = torch.Generator().manual_seed(seed)
    for item in latents:
        kwargs = dict(item) if isinstance(item, dict) else {"latents": item}
        x0 = kwargs.pop("latents")
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        chunk: Chunk = {}
        for t in ts:
            tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
            xt = scheduler.add_noise(x0, noise, tt)
            t_arg = tt if denoiser.timestep_scale == 1.0 else tt.float() / denoiser.timestep_scale
            _, cache = denoiser.run_with_cache(xt, timestep=t_arg, names_filter=names, **kwargs)
            for n in names:
                chunk[n, t] = _to(to_tokens(cache[n]), device)
        yield chunk


def trajectory_activations(
    pipeline: HookedDiffusionPipeline,
    calls: Iterable[dict[str, Any]],
    hook_names: str | Sequence[str],
    timesteps: Sequence[Timestep],
    *,
    cfg: str = "cond",
    device: str | torch.device | None = "cpu",
) -> Iterator[Chunk]:
    """Activations along sampling trajectories: one generation per ``calls`` item.

    ``calls`` yields keyword arguments of ``pipe(...)`` (prompt, generator, num_inference_steps,
    ...); ``timesteps`` must be timesteps of that schedule.  ``cfg`` picks CFG rows.
    """
    names = _names(pipeline.denoiser, hook_names)
    ts = list(timesteps)
    StepWindow.at(ts).check(pipeline.tracker.num_train_timesteps or None)
    return _trajectories(pipeline, calls, names, ts, cfg, device)


def _trajectories(
    pipeline: HookedDiffusionPipeline,
    calls: Iterable[dict[str, Any]],
    names: list[str],
    ts: list[Timestep],
    cfg: str,
    device: str | torch.device | None,
) -> Iterator[Chunk]:
    for call in calls:
        _, cache = pipeline.run_with_cache(
            **call, names_filter=names, timesteps=StepWindow.at(ts), cfg=cfg  # type: ignore[arg-type]
        )
        missing = [(n, t) for n in names for t in ts if (n, t) not in cache]
        if missing:
            raise ValueError(f"generation never reached {missing}; cached: {sorted(cache)}")
        yield {(n, t): _to(to_tokens(cache[n, t]), device) for n in names for t in ts}


def _batch_key(key: ChunkKey, single_hook: bool) -> BatchKey:
    return key[1] if single_hook else key


class DiffusionActivationSource:
    """Shuffled ``[batch, d_in]`` batches (or paired dicts) from a chunk producer.

    An iterator, so it is a SAELens ``DataProvider``: ``SAETrainer(cfg, sae, source).fit()``.

    Args:
        producer: chunks from :func:`noised_activations` / :func:`trajectory_activations`.
        batch_size: rows per batch.
        buffer_size: rows in SAELens's mixing buffer (default ``8 * batch_size``).
        mix_fraction: fraction of the buffer kept for mixing; ``0`` keeps the producer's order.
        paired: yield ``{timestep: tensor}`` (or ``{(hook, timestep): tensor}`` for several hooks)
            with rows aligned across keys, instead of one tensor mixing all keys.
        dtype: cast batches to this dtype.
    """

    def __init__(
        self,
        producer: Iterable[Chunk],
        *,
        batch_size: int,
        buffer_size: int | None = None,
        mix_fraction: float = 0.5,
        paired: bool = False,
        dtype: torch.dtype | None = None,
    ):
        self.batch_size = batch_size
        self.buffer_size = buffer_size or 8 * batch_size
        self.paired = paired
        self.dtype = dtype
        self._producer = iter(producer)
        self._first = next(self._producer, None)
        if self._first is None:
            raise ValueError("the activation producer yielded nothing")
        keys = list(self._first)
        self.single_hook = len({n for n, _ in keys}) == 1
        self.keys: list[BatchKey] = [_batch_key(k, self.single_hook) for k in keys]
        channels = {k: int(v.shape[-1]) for k, v in self._first.items()}
        if not paired and len(set(channels.values())) > 1:
            raise ValueError(
                f"hooks have different channel counts {channels}; use paired=True or one hook"
            )
        self.d_in = next(iter(channels.values()))
        self._iter = self._build(mix_fraction)

    def _chunks(self) -> Iterator[Chunk]:
        yield self._first  # type: ignore[misc]
        self._first = None
        yield from self._producer

    def _build(self, mix_fraction: float) -> Iterator[Batch]:
        if self.paired:
            renamed = (
                {_batch_key(k, self.single_hook): v for k, v in c.items()} for c in self._chunks()
            )
            return multi_hook_concat_split_iter(
                self.buffer_size, self.batch_size, renamed, self.keys, mix_fraction
            )
        flat = (torch.cat(list(c.values()), dim=0) for c in self._chunks())
        return mixing_buffer(self.buffer_size, self.batch_size, flat, mix_fraction)

    def __iter__(self) -> "DiffusionActivationSource":
        return self

    def __next__(self) -> Batch:
        batch = next(self._iter)
        if self.dtype is None:
            return batch
        if isinstance(batch, dict):
            return {k: v.to(self.dtype) for k, v in batch.items()}
        return batch.to(self.dtype)

    def check_sae(self, sae: Any) -> None:
        """``ValueError`` if the SAE's ``d_in`` differs from the streamed channel count."""
        if int(sae.cfg.d_in) != self.d_in:
            raise ValueError(
                f"SAE d_in={sae.cfg.d_in} but the hook has {self.d_in} channels; "
                f"build the SAE with d_in={self.d_in}"
            )

    # --- convenience constructors -------------------------------------------------------------
    @classmethod
    def noised(
        cls,
        denoiser: HookedDenoiser,
        scheduler: Any,
        latents: Iterable[Tensor | dict[str, Any]],
        hook_names: str | Sequence[str],
        timesteps: Sequence[int],
        *,
        batch_size: int,
        seed: int = 0,
        **kwargs: Any,
    ) -> "DiffusionActivationSource":
        """A source over :func:`noised_activations`."""
        producer = noised_activations(
            denoiser, scheduler, latents, hook_names, timesteps, seed=seed
        )
        return cls(producer, batch_size=batch_size, **kwargs)

    @classmethod
    def trajectories(
        cls,
        pipeline: HookedDiffusionPipeline,
        calls: Iterable[dict[str, Any]],
        hook_names: str | Sequence[str],
        timesteps: Sequence[Timestep],
        *,
        batch_size: int,
        cfg: str = "cond",
        device: str | torch.device | None = "cpu",
        **kwargs: Any,
    ) -> "DiffusionActivationSource":
        """A source over :func:`trajectory_activations` (``kwargs`` go to the constructor)."""
        producer = trajectory_activations(
            pipeline, calls, hook_names, timesteps, cfg=cfg, device=device
        )
        return cls(producer, batch_size=batch_size, **kwargs)


# --- disk shards --------------------------------------------------------------------------------
_META = "meta.json"


def _key_json(key: BatchKey) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _key_from_json(obj: Any) -> BatchKey:
    return (obj[0], obj[1]) if isinstance(obj, list) else obj


def save_activation_shards(
    source: Iterable[Batch],
    path: str | Path,
    n_batches: int,
    batches_per_shard: int = 64,
    metadata: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``n_batches`` batches of ``source`` to ``path/shard_XXXXX.safetensors`` + ``meta.json``
    (staged: the shards and ``meta.json`` appear together once all are written)."""
    from sae_causal_plugin._files import staged_dir

    root = Path(path)
    with staged_dir(root, what="activation folder") as stage:
        it = iter(source)
        shards: list[Path] = []
        keys: list[BatchKey] | None = None
        paired = False
        n_rows = 0
        remaining = n_batches
        while remaining > 0:
            batches = list(islice(it, min(batches_per_shard, remaining)))
            if not batches:
                break
            remaining -= len(batches)
            paired = isinstance(batches[0], dict)
            if paired:
                keys = list(batches[0])
                tensors = {
                    f"k{i}": torch.cat([b[k] for b in batches]).contiguous() for i, k in enumerate(keys)
                }
            else:
                tensors = {"activations": torch.cat(batches).contiguous()}
            n_rows += next(iter(tensors.values())).shape[0]
            shard = stage / f"shard_{len(shards):05d}.safetensors"
            save_file({k: v.cpu() for k, v in tensors.items()}, str(shard))
            shards.append(root / shard.name)
        meta = {
            "paired": paired,
            "keys": [_key_json(k) for k in keys] if keys else None,
            "n_rows": n_rows,
            "shards": [s.name for s in shards],
            **(metadata or {}),
        }
        (stage / _META).write_text(json.dumps(meta, indent=2))
    return shards


class ShardedActivationSource:
    """Batches read back from :func:`save_activation_shards` (same structure as when written).

    Args:
        path: the shard directory.
        batch_size: rows per batch.
        shuffle: shuffle rows within each shard (same permutation for all keys when paired).
        loop: start over after the last shard (for training longer than the cache).
        seed: seed of the shuffling.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int,
        *,
        shuffle: bool = True,
        loop: bool = False,
        seed: int = 0,
    ):
        self.root = Path(path)
        meta_path = self.root / _META
        if not meta_path.exists():
            raise ValueError(f"{self.root} has no {_META}; write it with save_activation_shards")
        self.meta = json.loads(meta_path.read_text())
        self.paired = bool(self.meta["paired"])
        self.keys = [_key_from_json(k) for k in self.meta["keys"]] if self.paired else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.loop = loop
        self._gen = torch.Generator().manual_seed(seed)
        self._iter = self._batches()

    def _batches(self) -> Iterator[Batch]:
        while True:
            for name in self.meta["shards"]:
                tensors = load_file(str(self.root / name))
                n = next(iter(tensors.values())).shape[0]
                order = torch.randperm(n, generator=self._gen) if self.shuffle else torch.arange(n)
                for start in range(0, n - self.batch_size + 1, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    if self.paired:
                        assert self.keys is not None
                        yield {k: tensors[f"k{i}"][idx] for i, k in enumerate(self.keys)}
                    else:
                        yield tensors["activations"][idx]
            if not self.loop:
                return

    def __iter__(self) -> "ShardedActivationSource":
        return self

    def __next__(self) -> Batch:
        return next(self._iter)


def cached_epochs(data: Float[Tensor, "rows channels"], key: ChunkKey, chunk: int,
                  generator: torch.Generator) -> Iterator[Chunk]:
    """Chunks ``{key: rows}`` of cached activations, reshuffled every pass, without end: a producer
    for :class:`DiffusionActivationSource` when the activations are already in memory."""
    while True:
        perm = torch.randperm(data.shape[0], generator=generator)
        for s in range(0, data.shape[0], chunk):
            yield {key: data[perm[s : s + chunk]]}


__all__ = [
    "DiffusionActivationSource",
    "ShardedActivationSource",
    "cached_epochs",
    "check_timesteps",
    "noised_activations",
    "save_activation_shards",
    "trajectory_activations",
]
