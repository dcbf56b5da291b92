"""CoFiringStats against dense brute force; lossy-counting pruning guarantees."""

from __future__ import annotations

import math

import pytest
import torch

from sae_causal_plugin.graph import CoFiringStats


def random_fired(n: int, d: int, seed: int = 0, max_rate: float = 0.5) -> torch.Tensor:
    """Random firing with planted structure: latent j (odd) fires only with latent j-1."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.linspace(0.02, max_rate, d)
    fired = torch.rand(n, d, generator=g) < rates
    fired[:, 1::2] &= fired[:, 0::2][:, : fired[:, 1::2].shape[1]]
    return fired


def brute_force(fired: torch.Tensor) -> torch.Tensor:
    f = fired.long()
    return f.T @ f


def test_exact_counts_match_brute_force_dense_bool_and_float():
    fired = random_fired(1500, 40)
    stats = CoFiringStats(40)
    for s in range(0, 1500, 333):
        blk = fired[s : s + 333]
        stats.update(blk if s % 2 else blk.float() * torch.rand(blk.shape))
    assert stats.n_samples == 1500
    assert torch.equal(stats.firing_counts, fired.sum(0))
    assert torch.equal(stats.dense_cofiring(), brute_force(fired))
    expected_pairs = int(torch.triu(brute_force(fired) > 0, diagonal=1).sum())
    assert stats.n_pairs == expected_pairs


def test_index_and_sparse_forms_match_brute_force():
    fired = random_fired(600, 30, seed=3)
    # top-k index form: k = max row count, padded with arbitrary latents whose value is 0
    k = int(fired.sum(1).max())
    vals, idx = torch.topk(fired.float(), k, dim=1)
    by_index = CoFiringStats(30)
    by_index.update(idx, values=vals)
    # -1 padded form
    padded = torch.where(vals > 0, idx, torch.full_like(idx, -1))
    by_pad = CoFiringStats(30)
    by_pad.update(padded)
    by_sparse = CoFiringStats(30)
    by_sparse.update(fired.float().to_sparse())
    for s in (by_index, by_pad, by_sparse):
        assert torch.equal(s.dense_cofiring(), brute_force(fired))


def test_queries_match_brute_force():
    fired = random_fired(2000, 20, seed=1)
    stats = CoFiringStats(20)
    stats.update(fired)
    co, cnt = brute_force(fired).tolist(), fired.sum(0).tolist()
    table = stats.edge_table()
    order = torch.randperm(table["child"].numel(), generator=torch.Generator().manual_seed(0))
    for r in order[:50].tolist():
        c, p = int(table["child"][r]), int(table["parent"][r])
        assert table["count_both"][r] == co[c][p]
        assert math.isclose(float(table["p_parent_given_child"][r]), co[c][p] / cnt[c])
        assert math.isclose(float(table["p_child_given_parent"][r]), co[c][p] / cnt[p])
        lift = co[c][p] * 2000 / (cnt[c] * cnt[p])
        assert math.isclose(float(table["lift"][r]), lift)
        assert math.isclose(stats.conditional(c, p), co[c][p] / cnt[c])
        assert math.isclose(stats.lift(c, p), lift)
    assert stats.conditional(1, 0) == 1.0  # planted: 1 fires only with 0


def test_memory_grows_with_pairs_not_d_sae_squared():
    d = 200_000
    stats = CoFiringStats(d)
    idx = torch.tensor([[5, 17, 199_999], [5, 17, -1], [3, 4, 5]])
    stats.update(idx)
    assert stats.n_pairs == 6
    assert stats.memory_bytes() < 4 * d * 8  # per-latent counters + a few pairs, not d**2
    assert stats.conditional(17, 5) == 1.0 and stats.conditional(5, 17) == pytest.approx(2 / 3)


def test_pruning_never_drops_pairs_above_threshold():
    tau, eps = 0.6, 0.15
    fired = random_fired(8000, 60, seed=2, max_rate=0.2)
    pruned = CoFiringStats(60, min_conditional=tau, prune_eps=eps, prune_at_pairs=200)
    for s in range(0, 8000, 100):
        pruned.update(fired[s : s + 100])
    exact = brute_force(fired)
    cnt = fired.sum(0)
    n_exact_pairs = int(torch.triu(exact > 0, diagonal=1).sum())
    assert pruned.n_pairs < 0.75 * n_exact_pairs  # pruning really happened
    lo = pruned.dense_cofiring()
    p = pruned.pairs()
    upper = torch.zeros_like(exact)
    upper[p["i"], p["j"]] = p["count_both_upper"]
    stored = torch.zeros_like(exact, dtype=torch.bool)
    stored[p["i"], p["j"]] = True
    m = torch.minimum(cnt[:, None], cnt[None, :])
    iu = torch.triu(torch.ones(60, 60, dtype=torch.bool), diagonal=1)
    above = (exact >= tau * m) & (exact > 0) & iu
    assert above.any()
    assert (stored | ~above).all(), "a pair above the threshold was pruned"
    # lossy-counting invariants
    assert (lo[stored] <= exact[stored]).all() and (exact[stored] <= upper[stored]).all()
    assert ((upper - lo)[stored] <= eps * m[stored]).all()
    assert (exact[~stored & iu] <= eps * m[~stored & iu]).all()


def test_pruned_stats_find_the_same_candidates_as_exact():
    fired = random_fired(5000, 50, seed=4)
    exact, pruned = CoFiringStats(50), CoFiringStats(50, min_conditional=0.9)
    for s in range(0, 5000, 250):
        exact.update(fired[s : s + 250])
        pruned.update(fired[s : s + 250])

    def cands(stats: CoFiringStats, col: str) -> set[tuple[int, int]]:
        t = stats.edge_table()
        keep = t[col] >= 0.9
        return set(zip(t["child"][keep].tolist(), t["parent"][keep].tolist()))

    assert cands(pruned, "p_parent_given_child_upper") >= cands(exact, "p_parent_given_child")
    assert cands(exact, "p_parent_given_child")  # planted pairs exist


def test_invalid_arguments():
    with pytest.raises(ValueError, match="prune_eps"):
        CoFiringStats(10, min_conditional=0.5, prune_eps=0.6)
    with pytest.raises(ValueError, match="min_conditional"):
        CoFiringStats(10, min_conditional=1.5)
    stats = CoFiringStats(10)
    with pytest.raises(ValueError, match="latent indices"):
        stats.update(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="d_sae"):
        stats.update(torch.zeros(3, 11))


def test_chunked_paths_agree_with_single_shot():
    fired = random_fired(800, 25, seed=6)
    small = CoFiringStats(25, max_pairs_per_chunk=7)  # many row chunks per update
    small.update(fired)
    big = CoFiringStats(25)
    big.update(fired)
    assert torch.equal(small.dense_cofiring(), big.dense_cofiring())
    pieces = list(big.iter_edge_tables(chunk=13))
    assert len(pieces) > 1
    whole = big.edge_table()

    def rows(table: dict[str, torch.Tensor]) -> set[tuple[float, ...]]:
        return set(zip(*(table[k].tolist() for k in sorted(table))))

    joined = {k: torch.cat([p[k] for p in pieces]) for k in whole}
    assert len(joined["child"]) == len(whole["child"])
    assert rows(joined) == rows(whole)


def _state(stats: CoFiringStats) -> tuple:
    p = stats.pairs()
    return (stats.n_samples, stats.firing_counts.tolist(), p["i"].tolist(), p["j"].tolist(),
            p["count_both"].tolist(), p["count_both_upper"].tolist())


def test_buffered_updates_equal_brute_force_at_every_flush_size():
    fired = random_fired(3000, 40, seed=5, max_rate=0.3)
    for chunk in (1, 7, 10_000):  # flush after nearly every batch / after many batches
        stats = CoFiringStats(40, max_pairs_per_chunk=chunk * 20)
        for s in range(0, 3000, 64):
            stats.update(fired[s : s + 64])
        assert torch.equal(stats.dense_cofiring(), brute_force(fired))


def test_merged_shards_equal_one_pass_exactly():
    fired = random_fired(5000, 50, seed=6, max_rate=0.3)
    one = CoFiringStats(50)
    for s in range(0, 5000, 250):
        one.update(fired[s : s + 250])
    shards = [CoFiringStats(50) for _ in range(3)]
    for n, s in enumerate(range(0, 5000, 250)):
        shards[n % 3].update(fired[s : s + 250])
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert _state(merged) == _state(one)
    assert torch.equal(merged.dense_cofiring(), brute_force(fired))
    empty = CoFiringStats(50).merge(one)  # an empty shard changes nothing
    assert _state(empty) == _state(one)


def test_merged_pruned_shards_keep_the_lossy_counting_bounds():
    tau, eps = 0.6, 0.15
    fired = random_fired(8000, 60, seed=2, max_rate=0.2)
    shards = [CoFiringStats(60, min_conditional=tau, prune_eps=eps, prune_at_pairs=200) for _ in range(2)]
    for n, s in enumerate(range(0, 8000, 100)):
        shards[n % 2].update(fired[s : s + 100])
    merged = shards[0].merge(shards[1])
    exact, cnt = brute_force(fired), fired.sum(0)
    assert merged.n_samples == 8000 and torch.equal(merged.firing_counts, cnt)
    i, j = torch.triu_indices(60, 60, offset=1)
    lo, up = merged.lookup(i, j)
    truth = exact[i, j]
    assert bool((lo <= truth).all() and (truth <= up).all())
    m = torch.minimum(cnt[i], cnt[j]).double()
    assert bool(((up - lo).double() <= eps * m + 1e-9).all())
    keep = truth.double() >= tau * m  # a pair above the edge threshold for an endpoint is stored
    p = merged.pairs()
    stored = {(int(a), int(b)) for a, b in zip(p["i"], p["j"])}
    assert all((int(a), int(b)) in stored for a, b in zip(i[keep], j[keep]))


def test_merge_refuses_what_does_not_combine():
    a = CoFiringStats(10)
    with pytest.raises(ValueError, match="d_sae=12"):
        a.merge(CoFiringStats(12))
    with pytest.raises(ValueError, match="same min_conditional"):
        a.merge(CoFiringStats(10, min_conditional=0.5))
    with pytest.raises(ValueError, match="themselves"):
        a.merge(a)
    with pytest.raises(TypeError, match="CoFiringStats"):
        a.merge({"n_samples": 3})
    with pytest.raises(ValueError, match="prune_every"):
        CoFiringStats(10, prune_every=0)
    with pytest.raises(ValueError, match="prune_at_pairs"):
        CoFiringStats(10, prune_at_pairs=0)


def test_memory_bytes_counts_the_buffered_keys():
    stats = CoFiringStats(1000)
    stats.update(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert stats._pending and stats.memory_bytes() == (
        1000 * 8 + sum(t.numel() * t.element_size() for t in stats._pending))
    stats.n_pairs  # folds the buffer in
    assert not stats._pending and stats.memory_bytes() == 1000 * 8 + 6 * (8 + 4)
