"""Streaming, sparse co-firing statistics of SAE latents (pure tensor maths).

:class:`CoFiringStats` counts, in one pass over a stream of encoded batches,

* ``firing_counts[i]``: samples in which latent ``i`` fired, and
* ``co(i, j)``: samples in which ``i`` and ``j`` fired together, **only for pairs that
  actually co-fire**.  An unordered pair ``{i, j}`` (``i < j``) is stored as the int64
  key ``i * d_sae + j`` in a sorted array, next to its count.  Each batch is reduced with
  ``torch.unique(return_counts=True)`` (the floor: one sort of the batch's pair keys) and
  buffered; the buffer is folded into the running arrays (one ``unique`` over the buffer,
  then a linear ``searchsorted`` merge) once it holds as many keys as the store, so each
  stored pair is rewritten O(log n) times over a run instead of once per batch.

Memory therefore grows with the number of distinct co-firing pairs, never with
``d_sae ** 2``; between prunings, store and buffer grow to at most :data:`PRUNE_GROWTH`
times what the last pruning left.  Statistics of separate shards combine exactly with
:meth:`CoFiringStats.merge`.

**Bounded memory (lossy counting).**  With ``min_conditional`` (or ``prune_eps``) set,
the store is pruned from time to time in the style of Manku & Motwani's
lossy counting, applied per pair with the budget ``B = floor(eps * m)`` where
``m = min(firing_counts[i], firing_counts[j])`` (``m`` never decreases):

* every stored pair keeps ``co`` (co-firings counted since it was (re)inserted) and
  ``delta`` (an upper bound on the co-firings missed before that, equal to the budget
  ``B`` at the last pruning when it was inserted);
* a pruning step deletes a pair when ``co + delta <= B``.

Pruning runs whenever the store and its buffer hold :data:`PRUNE_GROWTH` times what the last
pruning left (folding the buffer in and pruning in one pass) or, with an explicit ``prune_every``,
after every ``prune_every``-th batch; the invariants below hold for any schedule.

Invariants (proved by induction over pruning steps): for a stored pair
``co <= co_true <= co + delta`` with ``delta <= eps * m``; for an absent pair
``co_true <= eps * m``.  Hence, if ``eps < min_conditional``, **no pair whose conditional
rate** ``co_true / firing_counts[c]`` **reaches** ``min_conditional`` **for either
endpoint** ``c`` **is ever dropped** (``co_true >= min_conditional * m > eps * m``), and
its conditional rate is known to within ``eps``.  The default ``eps`` is
``min_conditional / 10`` (:data:`DEFAULT_PRUNE_FRACTION`).  Pruning only starts to bite
for pairs with ``m >= 1 / eps``; rarely firing latents keep all their pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

#: ``prune_eps = DEFAULT_PRUNE_FRACTION * min_conditional`` when only ``min_conditional`` is given.
DEFAULT_PRUNE_FRACTION = 0.1

_INT32_MAX = 2**31 - 1

#: with the default schedule, the store (with its buffer) is pruned once it is this many times the
#: size the last pruning left (or ``prune_at_pairs``).
PRUNE_GROWTH = 4


def padded_indices_from_fired(
    fired: Bool[Tensor, "batch d_sae"],
) -> Int[Tensor, "batch k"]:
    """Turn a dense fired mask into row-wise latent indices padded with ``-1``."""
    rows, cols = fired.nonzero(as_tuple=True)
    return _pad_rows(rows, cols, fired.shape[0])


def _pad_rows(rows: Tensor, cols: Tensor, n_rows: int) -> Int[Tensor, "batch k"]:
    """Row-sorted ``(rows, cols)`` coordinates -> ``[n_rows, k_max]`` indices, ``-1`` padded."""
    per_row = torch.bincount(rows, minlength=n_rows)
    k = int(per_row.max().item()) if n_rows > 0 and rows.numel() > 0 else 0
    out = torch.full((n_rows, k), -1, dtype=torch.int64, device=cols.device)
    if rows.numel():
        starts = torch.cumsum(per_row, 0) - per_row
        pos = torch.arange(rows.numel(), device=rows.device) - starts[rows]
        out[rows, pos] = cols.to(torch.int64)
    return out


def to_padded_indices(
    x: Tensor, d_sae: int, values: Tensor | None = None
) -> Int[Tensor, "batch k"]:
    """Normalise any supported firing input to ``[batch, k]`` int64 indices (``-1`` = none).

    Accepted forms:

    * dense ``bool`` or floating ``[batch, d_sae]`` (fired = ``x != 0``), e.g. ``sae.encode(x)``;
    * a sparse COO ``[batch, d_sae]`` tensor (fired = stored value ``!= 0``);
    * integer ``[batch, k]`` latent indices (e.g. from ``torch.topk``) with ``-1`` as
      padding; if ``values`` (same shape) is given, entries whose value is ``0`` are
      ignored (a TopK latent whose pre-activation was clipped by the ReLU did not fire).
    """
    if x.ndim != 2:
        raise ValueError(f"fired must be 2-D [batch, d_sae] or [batch, k], got shape {tuple(x.shape)}")
    if x.is_sparse:
        if x.shape[1] != d_sae:
            raise ValueError(f"fired: expected {d_sae} latents, got {x.shape[1]}")
        x = x.coalesce()
        keep = x.values() != 0
        rows, cols = x.indices()[0][keep], x.indices()[1][keep]
        return _pad_rows(rows, cols, x.shape[0])
    if x.dtype == torch.bool or x.is_floating_point():
        if x.shape[1] != d_sae:
            raise ValueError(
                f"fired: dense input must have d_sae={d_sae} columns, got {x.shape[1]}; "
                "pass integer top-k indices for the index form"
            )
        return padded_indices_from_fired(x if x.dtype == torch.bool else x != 0)
    if x.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        idx = x.to(torch.int64)
        if values is not None:
            if values.shape != x.shape:
                raise ValueError(f"values must have the shape of the indices {tuple(x.shape)}, got {tuple(values.shape)}")
            idx = torch.where(values.to(idx.device) != 0, idx, torch.full_like(idx, -1))
        if idx.numel() and (int(idx.min()) < -1 or int(idx.max()) >= d_sae):
            raise ValueError(f"latent indices must lie in [0, {d_sae}) (or be -1 for padding)")
        return idx
    raise TypeError(f"unsupported dtype {x.dtype} for fired input")


def _dedupe_sorted_rows(idx: Int[Tensor, "batch k"]) -> Int[Tensor, "batch k"]:
    """Sort each row ascending (``-1`` first) and blank repeated indices."""
    idx, _ = idx.sort(dim=1)
    if idx.shape[1] > 1:
        dup = (idx[:, 1:] == idx[:, :-1]) & (idx[:, 1:] >= 0)
        if bool(dup.any()):
            idx[:, 1:][dup] = -1
            idx, _ = idx.sort(dim=1)
    return idx


def iter_batch_pair_keys(
    idx: Int[Tensor, "batch k"], d_sae: int, max_pairs_per_chunk: int = 2**22
) -> Iterator[Int[Tensor, " n_pairs"]]:
    """Per row chunk: the keys ``i * d_sae + j`` (``i < j``) of every co-firing pair of every row,
    unsorted, one per (row, pair).  A chunk holds at most ``max_pairs_per_chunk`` candidate pairs.

    ``idx`` must be row-sorted with ``-1`` padding first (see :func:`_dedupe_sorted_rows`).
    """
    b, k = idx.shape
    if k < 2 or b == 0:
        return
    ta, tb = torch.triu_indices(k, k, offset=1, device=idx.device)
    rows_per_chunk = max(1, max_pairs_per_chunk // ta.numel())
    for s in range(0, b, rows_per_chunk):
        blk = idx[s : s + rows_per_chunk]
        a = blk[:, ta]
        valid = a >= 0  # rows are sorted, so a valid `a` implies a valid, larger `b`
        key = a.mul_(d_sae).add_(blk[:, tb])[valid]
        del a, valid
        if key.numel():
            yield key


class CoFiringStats:
    """Streaming firing and sparse co-firing counts for ``d_sae`` latents.

    Args:
        d_sae: number of latents.
        min_conditional: smallest conditional firing rate ``P(parent | child)`` that will
            be queried for edges.  When set (and ``prune_eps`` is not), pruning is enabled
            with ``prune_eps = min_conditional * DEFAULT_PRUNE_FRACTION``.  ``None``
            (default) keeps exact counts for every co-firing pair.
        prune_eps: lossy-counting budget ``eps`` in ``(0, 1)``; must be below
            ``min_conditional`` for the no-loss guarantee (see module docstring).
        prune_every: prune after every ``prune_every``-th :meth:`update`; ``None`` (default) prunes
            whenever the store and its buffer hold ``PRUNE_GROWTH`` (4) times what the last pruning
            left (bounded memory, linear total work).
        prune_at_pairs: with ``prune_every=None``, the store size at which pruning starts (the
            store is pruned once it holds ``PRUNE_GROWTH * max(prune_at_pairs, pairs left by the last
            pruning)``).
        device: where the statistics live (default CPU).
        max_pairs_per_chunk: bound on the candidate pairs materialised at once.

    Example:
        >>> stats = CoFiringStats(d_sae=4)
        >>> stats.update(torch.tensor([[True, True, False, False], [True, False, False, True]]))
        >>> stats.conditional(1, 0)  # P(0 fires | 1 fires)
        1.0
    """

    def __init__(
        self,
        d_sae: int,
        *,
        min_conditional: float | None = None,
        prune_eps: float | None = None,
        prune_every: int | None = None,
        prune_at_pairs: int = 2**20,
        device: str | torch.device | None = None,
        max_pairs_per_chunk: int = 2**22,
    ) -> None:
        if not isinstance(d_sae, int) or d_sae < 1:
            raise ValueError(f"d_sae must be a positive int, got {d_sae!r}")
        if min_conditional is not None and not 0.0 <= min_conditional <= 1.0:
            raise ValueError(f"min_conditional must lie in [0, 1], got {min_conditional}")
        if prune_eps is None and min_conditional is not None and min_conditional > 0:
            prune_eps = DEFAULT_PRUNE_FRACTION * min_conditional
        if prune_eps is not None:
            if not 0.0 < prune_eps < 1.0:
                raise ValueError(f"prune_eps must lie in (0, 1), got {prune_eps}")
            if min_conditional is not None and prune_eps >= min_conditional:
                raise ValueError(
                    f"prune_eps={prune_eps} must be below min_conditional={min_conditional}, "
                    "otherwise pairs above the edge threshold could be pruned"
                )
        if prune_every is not None and (isinstance(prune_every, bool) or not isinstance(prune_every, int)
                                        or prune_every < 1):
            raise ValueError(f"prune_every must be a positive int or None, got {prune_every!r}")
        self.d_sae = d_sae
        self.min_conditional = min_conditional
        self.prune_eps = prune_eps
        self.prune_every = prune_every
        if isinstance(prune_at_pairs, bool) or not isinstance(prune_at_pairs, int) or prune_at_pairs < 1:
            raise ValueError(f"prune_at_pairs must be a positive int, got {prune_at_pairs!r}")
        self.prune_at_pairs = prune_at_pairs
        self.max_pairs_per_chunk = max_pairs_per_chunk
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_samples = 0
        self.n_updates = 0
        self.firing_counts: Int[Tensor, " d_sae"] = torch.zeros(d_sae, dtype=torch.int64, device=self.device)
        self._keys: Int[Tensor, " n_pairs"] = torch.empty(0, dtype=torch.int64, device=self.device)
        self._count_dtype = torch.int32
        self._co: Int[Tensor, " n_pairs"] = torch.empty(0, dtype=self._count_dtype, device=self.device)
        self._delta: Int[Tensor, " n_pairs"] | None = None
        self._count_at_prune: Int[Tensor, " d_sae"] | None = None
        if self.pruning:
            self._delta = torch.empty(0, dtype=self._count_dtype, device=self.device)
            self._count_at_prune = torch.zeros(d_sae, dtype=torch.int64, device=self.device)
        self._pending: list[Tensor] = []  # pair keys of the batches not yet folded in (raw, unsorted)
        self._pending_keys = 0
        self._pairs_after_prune = 0

    def to(self, device: str | torch.device) -> CoFiringStats:
        """These statistics on ``device`` (folded in first); returns ``self``."""
        self._flush()
        self.device = torch.device(device)
        for name in ("firing_counts", "_keys", "_co", "_delta", "_count_at_prune"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))
        return self

    # ------------------------------------------------------------------ properties
    @property
    def pruning(self) -> bool:
        """Whether lossy-counting pruning is enabled."""
        return self.prune_eps is not None

    @property
    def n_pairs(self) -> int:
        """Number of stored (unordered) co-firing pairs."""
        self._flush()
        return int(self._keys.numel())

    def memory_bytes(self) -> int:
        """Bytes held by the pair store, its buffer and the per-latent counters."""
        tensors = [self._keys, self._co, self.firing_counts, self._delta, self._count_at_prune]
        tensors += self._pending
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def update(
        self,
        fired: Bool[Tensor, "batch d_sae"] | Float[Tensor, "batch d_sae"] | Int[Tensor, "batch k"],
        values: Float[Tensor, "batch k"] | None = None,
    ) -> None:
        """Add one batch.  See :func:`to_padded_indices` for the accepted input forms."""
        idx = to_padded_indices(fired, self.d_sae, values).to(self.device)
        n = idx.shape[0]
        if n == 0:
            return
        idx = _dedupe_sorted_rows(idx)
        if self.n_samples + n > _INT32_MAX and self._count_dtype == torch.int32:
            self._upcast()
        flat = idx[idx >= 0]
        self.firing_counts += torch.bincount(flat, minlength=self.d_sae)
        self.n_samples += n
        for keys in iter_batch_pair_keys(idx, self.d_sae, self.max_pairs_per_chunk):
            self._pending.append(keys)
            self._pending_keys += keys.numel()
        self.n_updates += 1
        if self.pruning and self.prune_every is not None:
            if self.n_updates % self.prune_every == 0:
                self.prune()
        elif self.pruning and (self._keys.numel() + self._pending_keys
                               >= PRUNE_GROWTH * max(self._pairs_after_prune, self.prune_at_pairs)):
            self._flush(prune=True)
        elif self._pending_keys >= max(self._keys.numel(), self.max_pairs_per_chunk):
            self._flush()

    def _flush(self, prune: bool = False) -> int:
        """Fold the buffered pair keys into the store (one ``unique`` over the buffer, then a linear
        merge).  With ``prune``, prune in the same pass: stored pairs get the buffer's counts, the store
        is pruned, and only the new pairs that this pruning step keeps are placed.  Returns how many
        pairs the pruning dropped (stored ones and new ones)."""
        keys = counts = None
        if self._pending:
            parts, self._pending, self._pending_keys = self._pending, [], 0
            keys, counts = torch.unique(torch.cat(parts) if len(parts) > 1 else parts[0], sorted=True,
                                        return_counts=True)
            del parts
        if not prune:
            if keys is not None:
                self._merge(keys, counts)
            return 0
        if keys is None:
            return self._prune_store()
        counts = counts.to(self._count_dtype)
        r = self._keys.numel()
        found = torch.zeros(keys.numel(), dtype=torch.bool, device=keys.device)
        if r:
            pos = torch.searchsorted(self._keys, keys)
            found = self._keys[pos.clamp(max=r - 1)] == keys
            found &= pos < r
            self._co.index_add_(0, pos[found], counts[found])
            del pos
        assert self._count_at_prune is not None
        last_base = self._count_at_prune
        dropped = self._prune_store()
        new_keys, new_counts = keys[~found], counts[~found]
        del keys, counts, found
        delta = self._budget(new_keys, last_base)  # absent since the last pruning: missed at most that
        keep = new_counts.to(torch.int64) + delta > self._budget(new_keys, self.firing_counts)
        self._merge(new_keys[keep], new_counts[keep], delta=delta[keep])
        return dropped + int(new_keys.numel() - keep.sum())

    def _upcast(self) -> None:
        self._count_dtype = torch.int64
        self._co = self._co.to(torch.int64)
        if self._delta is not None:
            self._delta = self._delta.to(torch.int64)

    def _budget(self, keys: Int[Tensor, " n"], counts: Int[Tensor, " d_sae"]) -> Int[Tensor, " n"]:
        """``floor(eps * min(counts[i], counts[j]))`` for each pair key (``floor`` is monotone, so it is
        the smaller of the two latents' own budgets: one gather each, no per-pair float work)."""
        per_latent = torch.floor(counts.to(torch.float64) * float(self.prune_eps)).to(torch.int32)
        i = torch.div(keys, self.d_sae, rounding_mode="floor")
        j = keys - i * self.d_sae
        return torch.minimum(per_latent[i], per_latent[j]).to(torch.int64)

    def _merge(self, keys: Int[Tensor, " m"], counts: Int[Tensor, " m"], delta: Tensor | None = None) -> None:
        """Merge sorted unique ``keys`` with ``counts`` into the running sorted store.  With pruning, a
        new pair's missed-count bound is ``delta`` when given (it is added to a stored pair's), else the
        budget at the last pruning."""
        if keys.numel() == 0:
            return
        counts = counts.to(self._count_dtype)
        r = self._keys.numel()
        if r == 0:
            found = torch.zeros(keys.numel(), dtype=torch.bool, device=keys.device)
            pos = torch.zeros_like(keys)
        else:
            pos = torch.searchsorted(self._keys, keys)
            found = self._keys[pos.clamp(max=r - 1)] == keys
            found &= pos < r
            self._co.index_add_(0, pos[found], counts[found])
            if delta is not None and self._delta is not None:
                self._delta.index_add_(0, pos[found], delta[found].to(self._count_dtype))
        if bool(found.all()):
            return
        new = ~found
        new_keys, new_counts, ins = keys[new], counts[new], pos[new]
        new_delta = delta[new] if delta is not None else None
        del found, pos, new
        m = new_keys.numel()
        new_pos = ins + torch.arange(m, device=ins.device)  # slots in the merged array
        old_slot = torch.ones(r + m, dtype=torch.bool, device=keys.device)
        old_slot[new_pos] = False
        old_pos = old_slot.nonzero().squeeze(1)  # once, for every array placed
        del old_slot

        def place(old: Tensor, fresh: Tensor) -> Tensor:
            out = torch.empty(r + m, dtype=old.dtype, device=old.device)
            out.index_copy_(0, old_pos, old)
            out.index_copy_(0, new_pos, fresh)
            return out

        if self._delta is not None:
            assert self._count_at_prune is not None
            if new_delta is None:
                new_delta = self._budget(new_keys, self._count_at_prune)
            self._delta = place(self._delta, new_delta.to(self._count_dtype))
        self._keys = place(self._keys, new_keys)
        self._co = place(self._co, new_counts)

    @torch.no_grad()
    def prune(self) -> int:
        """Fold the buffer in and drop pairs with ``co + delta <= floor(eps * m)``; returns how many
        pairs were dropped."""
        if not self.pruning:
            raise RuntimeError("pruning is disabled: construct with min_conditional or prune_eps")
        return self._flush(prune=True)

    def _prune_store(self, chunk: int = 2**22) -> int:
        """The pruning step on the stored pairs (the counts now become the budget base of pairs
        inserted later); returns how many were dropped."""
        assert self._delta is not None
        r = self._keys.numel()
        keep = torch.empty(r, dtype=torch.bool, device=self.device)
        for s in range(0, r, chunk):
            e = min(r, s + chunk)
            upper = self._co[s:e].to(torch.int64) + self._delta[s:e]
            keep[s:e] = upper > self._budget(self._keys[s:e], self.firing_counts)
        self._count_at_prune = self.firing_counts.clone()
        dropped = r - int(keep.sum())
        if dropped:
            self._keys, self._co, self._delta = self._keys[keep], self._co[keep], self._delta[keep]
        self._pairs_after_prune = self._keys.numel()
        return dropped

    @torch.no_grad()
    def merge(self, other: CoFiringStats) -> CoFiringStats:
        """Add the statistics of ``other`` (another shard of the same stream) into these; returns ``self``.

        Without pruning the result equals one pass over both shards exactly.  With pruning the
        lossy-counting bounds add up: a pair's missed-count bound is the sum of each shard's (its
        ``delta`` where it is stored, its last budget where it is not), so ``co <= co_true <= co + delta``
        and every pair whose conditional rate reaches ``min_conditional`` is kept.

        Raises:
            ValueError: ``other`` counts another number of latents or prunes with another ``eps``.
        """
        if not isinstance(other, CoFiringStats):
            raise TypeError(f"can only merge another CoFiringStats, got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge statistics into themselves; merge a copy")
        if other.d_sae != self.d_sae:
            raise ValueError(f"cannot merge statistics of d_sae={other.d_sae} into d_sae={self.d_sae}")
        if other.prune_eps != self.prune_eps:
            raise ValueError(f"cannot merge statistics pruned with eps={other.prune_eps} into eps={self.prune_eps}; "
                             "build every shard's CoFiringStats with the same min_conditional / prune_eps")
        self._flush()
        other._flush()
        ok, oco = other._keys.to(self.device), other._co.to(self.device)
        if self.n_samples + other.n_samples > _INT32_MAX and self._count_dtype == torch.int32:
            self._upcast()
        if self.pruning:
            assert self._delta is not None and self._count_at_prune is not None
            assert other._delta is not None and other._count_at_prune is not None
            other_cap = other._count_at_prune.to(self.device)
            # each side's bound on what it missed, for the pairs the other side stores
            mine_missing_theirs = self._absent_bound(ok, self._keys, self._count_at_prune)
            theirs_missing_mine = self._absent_bound(self._keys, ok, other_cap)
            self._delta = self._delta + theirs_missing_mine.to(self._count_dtype)
            self._merge(ok, oco, delta=other._delta.to(self.device).to(torch.int64) + mine_missing_theirs)
            self._count_at_prune = self._count_at_prune + other_cap
        else:
            self._merge(ok, oco)
        self.firing_counts += other.firing_counts.to(self.device)
        self.n_samples += other.n_samples
        self.n_updates += other.n_updates
        return self

    def _absent_bound(self, keys: Tensor, stored: Tensor, count_at_prune: Tensor) -> Tensor:
        """For each of ``keys``: 0 where ``stored`` holds it, else the budget at the last pruning."""
        bound = self._budget(keys, count_at_prune)
        if stored.numel():
            pos = torch.searchsorted(stored, keys).clamp(max=stored.numel() - 1)
            bound[stored[pos] == keys] = 0
        return bound

    # ------------------------------------------------------------------ queries
    def pairs(self, start: int = 0, stop: int | None = None) -> dict[str, Tensor]:
        """Stored unordered pairs ``[start:stop]``: ``i < j``, ``count_both``, ``count_both_upper``."""
        self._flush()
        keys = self._keys[start:stop]
        i = torch.div(keys, self.d_sae, rounding_mode="floor")
        co = self._co[start:stop].to(torch.int64)
        upper = co + self._delta[start:stop] if self._delta is not None else co
        return {"i": i, "j": keys - i * self.d_sae, "count_both": co, "count_both_upper": upper}

    def lookup(
        self, a: Int[Tensor, " n"], b: Int[Tensor, " n"]
    ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"]]:
        """Co-firing count (lower, upper bound) for arbitrary pairs ``(a[k], b[k])``.

        Exact (lower == upper) without pruning.  Absent pairs get ``0`` and, with
        pruning, the budget at the last pruning step as upper bound.
        """
        self._flush()
        a = torch.as_tensor(a, dtype=torch.int64, device=self.device).reshape(-1)
        b = torch.as_tensor(b, dtype=torch.int64, device=self.device).reshape(-1)
        keys = torch.minimum(a, b) * self.d_sae + torch.maximum(a, b)
        lo = torch.zeros_like(keys)
        up = torch.zeros_like(keys)
        if self._count_at_prune is not None:
            up = self._budget(keys, self._count_at_prune)
        r = self._keys.numel()
        if r:
            pos = torch.searchsorted(self._keys, keys).clamp(max=r - 1)
            hit = (self._keys[pos] == keys) & (a != b)
            lo[hit] = self._co[pos[hit]].to(torch.int64)
            up[hit] = lo[hit] + (self._delta[pos[hit]] if self._delta is not None else 0)
        same = a == b
        lo[same] = self.firing_counts[a[same]]
        up[same] = lo[same]
        return lo, up

    def conditional(self, child: int, parent: int, upper: bool = False) -> float:
        """``P(parent fires | child fires)`` (``nan`` if ``child`` never fired)."""
        lo, up = self.lookup(torch.tensor([child]), torch.tensor([parent]))
        n_child = int(self.firing_counts[child])
        if n_child == 0:
            return math.nan
        return float((up if upper else lo)[0]) / n_child

    def lift(self, a: int, b: int) -> float:
        """``P(a, b) / (P(a) P(b))`` (``nan`` if either latent never fired)."""
        lo, _ = self.lookup(torch.tensor([a]), torch.tensor([b]))
        ca, cb = int(self.firing_counts[a]), int(self.firing_counts[b])
        if ca == 0 or cb == 0:
            return math.nan
        return float(lo[0]) * self.n_samples / (ca * cb)

    def iter_edge_tables(self, chunk: int = 2**19) -> Iterator[dict[str, Tensor]]:
        """:meth:`edge_table` in pieces of at most ``chunk`` stored pairs (bounded memory)."""
        for s in range(0, max(self.n_pairs, 1), chunk):
            yield self.edge_table(s, s + chunk)

    def edge_table(self, start: int = 0, stop: int | None = None) -> dict[str, Tensor]:
        """Both orientations of the stored pairs ``[start:stop]``, as columns of equal length.

        Keys: ``child``, ``parent``, ``count_child``, ``count_parent``, ``count_both``,
        ``count_both_upper``, ``p_parent_given_child``, ``p_parent_given_child_upper``,
        ``p_child_given_parent``, ``lift``.  Rates use the counted (lower) co-firings.
        Materialises ~160 bytes per pair: use :meth:`iter_edge_tables` for large stores.
        """
        p = self.pairs(start, stop)
        child = torch.cat([p["i"], p["j"]])
        parent = torch.cat([p["j"], p["i"]])
        co = torch.cat([p["count_both"], p["count_both"]]).to(torch.float64)
        co_up = torch.cat([p["count_both_upper"], p["count_both_upper"]]).to(torch.float64)
        n_c = self.firing_counts[child].to(torch.float64)
        n_p = self.firing_counts[parent].to(torch.float64)
        return {
            "child": child,
            "parent": parent,
            "count_child": n_c.to(torch.int64),
            "count_parent": n_p.to(torch.int64),
            "count_both": co.to(torch.int64),
            "count_both_upper": co_up.to(torch.int64),
            "p_parent_given_child": co / n_c,
            "p_parent_given_child_upper": co_up / n_c,
            "p_child_given_parent": co / n_p,
            "lift": co * self.n_samples / (n_c * n_p),
        }

    def dense_cofiring(self) -> Int[Tensor, "d_sae d_sae"]:
        """Dense ``[d_sae, d_sae]`` co-firing matrix (diagonal = firing counts); small d_sae only."""
        self._flush()
        out = torch.zeros(self.d_sae, self.d_sae, dtype=torch.int64, device=self.device)
        p = self.pairs()
        out[p["i"], p["j"]] = p["count_both"]
        out[p["j"], p["i"]] = p["count_both"]
        out.diagonal().copy_(self.firing_counts)
        return out

    def __repr__(self) -> str:
        extra: dict[str, Any] = {"prune_eps": self.prune_eps} if self.pruning else {}
        return (
            f"CoFiringStats(d_sae={self.d_sae}, n_samples={self.n_samples}, "
            f"n_pairs={self.n_pairs}{''.join(f', {k}={v}' for k, v in extra.items())})"
        )
