"""torch.distributed for graph recovery: shards of the stream, collectives that fail together.

:func:`process_group` starts the process group ``torchrun`` describes (environment ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), gloo on CPU and NCCL on GPU, with a timeout on
every collective, and tears it down again. :class:`ProcessGroupShards` is the
:class:`~sae_causal_plugin.graph.shards.Shards` of one rank. :func:`shard_slice` gives a rank its
contiguous block of rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from sae_causal_plugin.graph.cofiring import CoFiringStats

T = TypeVar("T")

_REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}

#: Seconds a collective waits for the other ranks before it fails (``--dist-timeout``).
DEFAULT_TIMEOUT_S = 600.0


class RankFailed(RuntimeError):
    """Another rank (or this one) failed a step; raised on every rank alike."""


def reduce_over_ranks(tensor: Tensor, op: str) -> Tensor:
    """``tensor`` reduced (``"sum"``, ``"max"``, ``"min"``) over the default group, on every rank."""
    out = tensor.clone()
    dist.all_reduce(out, op=_REDUCE_OPS[op])
    return out


def launched_by_torchrun() -> bool:
    """Whether the environment describes more than one process (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(timeout_s: float = DEFAULT_TIMEOUT_S, device: str = "cpu") -> Iterator[ProcessGroupShards]:
    """Join the process group of the environment for the duration of the block.

    gloo for ``device="cpu"``, NCCL for CUDA devices (each rank on ``cuda:LOCAL_RANK``). A group
    someone else started is used as it is and left running.
    """
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    started_here = not dist.is_initialized()
    if started_here:
        for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set; start the command with torchrun")
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=float(timeout_s)))
    try:
        yield ProcessGroupShards()
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


class ProcessGroupShards:
    """This rank's shard of the stream; the collectives of graph recovery over the default group."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise ValueError("torch.distributed is not initialised; use process_group() or torchrun")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")

    def together(self, step: Callable[[], T]) -> T:
        """Run ``step``; if any rank raised, raise on every rank.

        Bad input (``ValueError``, a missing file) becomes a ``ValueError`` everywhere, naming the
        rank(s) and their messages; anything else a :class:`RankFailed`.
        """
        failure: tuple[bool, str] | None = None
        try:
            result = step()
        except Exception as err:  # noqa: BLE001 - reported to every rank, then raised
            failure = (isinstance(err, (ValueError, FileNotFoundError, NotADirectoryError))
                       or type(err).__name__ == "UserError", f"{type(err).__name__}: {err}")
            local: Exception | None = err
        else:
            local = None
        failures = self.all_gather(failure)
        bad = [(r, f) for r, f in enumerate(failures) if f is not None]
        if not bad:
            return result
        message = "; ".join(f"rank {r} of {self.world_size}: {text}" for r, (_, text) in bad)
        if any(user for _, (user, _) in bad):
            raise ValueError(message) from local
        raise RankFailed(message) from local

    def all_gather(self, value: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def all_sum(self, tensor: Tensor) -> Tensor:
        return reduce_over_ranks(tensor.to(self._device), "sum").to(tensor.device)

    def reduce_stats(self, stats: CoFiringStats) -> CoFiringStats | None:
        gathered: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(stats.to("cpu"), gathered, dst=0)
        if self.rank != 0:
            return None
        assert gathered is not None
        merged = gathered[0]
        for other in gathered[1:]:
            merged.merge(other)
        return merged


def shard_slice(n_rows: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous block of ``n_rows`` rows (sizes differ by at most one)."""
    base, extra = divmod(n_rows, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
