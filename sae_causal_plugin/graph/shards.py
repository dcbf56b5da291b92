"""The steps of graph recovery that need the other shards of the activation stream.

:func:`~.recovery.recover_concept_graph` counts one stream. Split over several processes, each
counts its own shard and a few steps must see all of them: the factorisation's firing counts over
the stream's first rows, a check that every shard held rows of the same width, and the final
reduction of the co-firing statistics. :class:`Shards` names those steps; :class:`OneShard` is the
one-process case (each step is the identity), and
:class:`sae_causal_plugin.distributed.ProcessGroupShards` runs them over ``torch.distributed``.
Nothing here imports ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from torch import Tensor

from .cofiring import CoFiringStats

T = TypeVar("T")


class Shards(Protocol):
    """One process's view of a stream split into ``world_size`` contiguous shards, in rank order."""

    rank: int
    world_size: int

    def together(self, step: Callable[[], T]) -> T:
        """Run ``step`` here; if it raised on any rank, raise on every rank (no rank left waiting)."""
        ...

    def all_gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a small picklable object)."""
        ...

    def all_sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over ranks, on every rank."""
        ...

    def reduce_stats(self, stats: CoFiringStats) -> CoFiringStats | None:
        """All ranks' statistics merged in rank order on rank 0; ``None`` on the others."""
        ...


class OneShard:
    """The whole stream in this one process."""

    rank = 0
    world_size = 1

    def together(self, step: Callable[[], T]) -> T:
        return step()

    def all_gather(self, value: Any) -> list[Any]:
        return [value]

    def all_sum(self, tensor: Tensor) -> Tensor:
        return tensor

    def reduce_stats(self, stats: CoFiringStats) -> CoFiringStats | None:
        return stats


def head_share(head_rows: list[int], rank: int, n_rows: int) -> int:
    """How many of its first rows ``rank`` adds to the stream's first ``n_rows`` rows.

    ``head_rows[r]`` is how many rows rank ``r`` holds at the front of its shard (at most
    ``n_rows``); shards follow each other in rank order.
    """
    before = sum(head_rows[:rank])
    return max(0, min(head_rows[rank], n_rows - before))
