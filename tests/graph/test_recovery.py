"""recover_concept_graph on hierarchies with exactly known edges, plus input validation."""

from __future__ import annotations

import math

import pytest
import torch
from tests.helpers import identity_sae

from .conftest import HAND_EDGES, HAND_TRANSITIVE, hand_hierarchy_data
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from sae_causal_plugin.graph import CoFiringStats, recover_concept_graph
from sae_causal_plugin.graph.recovery import (
    drop_explained_parents,
    minimal_parent_edges,
    select_candidate_edges,
    transitive_reduction_edges,
)


def test_exact_edges_on_hand_built_hierarchy(hand_sae, hand_data):
    graph = recover_concept_graph(hand_sae, hand_data)
    assert set(graph.edges) == HAND_EDGES
    assert not HAND_TRANSITIVE & set(graph.edges)
    assert graph.levels() == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 0, 6: 0}
    fired = hand_data > 0
    for node in graph.concepts:
        assert graph.concept_attrs(node)["firing_count"] == int(fired[:, node].sum())
    stats = graph.edge_stats(3, 1)
    assert stats["p_parent_given_child"] == 1.0
    assert stats["count_both"] == stats["count_child"] == int(fired[:, 3].sum())
    assert math.isclose(stats["lift"], len(hand_data) / int(fired[:, 1].sum()))


def test_candidates_contain_transitive_and_dense_edges_that_pruning_removes(hand_sae, hand_data):
    stats = CoFiringStats(7)
    stats.update(hand_data)
    table = stats.edge_table()
    no_filter = select_candidate_edges(table, n_samples=len(hand_data), min_lift=0.0)
    raw = set(zip(no_filter["child"].tolist(), no_filter["parent"].tolist()))
    assert HAND_EDGES | HAND_TRANSITIVE <= raw
    assert {(c, 6) for c in range(6)} <= raw  # the dense latent 6 "explains" everything
    lifted = select_candidate_edges(table, n_samples=len(hand_data))
    cand = set(zip(lifted["child"].tolist(), lifted["parent"].tolist()))
    assert cand == HAND_EDGES | HAND_TRANSITIVE
    assert transitive_reduction_edges(cand) == HAND_EDGES
    # the dense latent becomes a universal parent without the lift filter
    graph = recover_concept_graph(hand_sae, hand_data, min_lift=0.0)
    assert (0, 6) in graph.edges and (5, 6) in graph.edges


def test_streamed_batches_topk_sae_and_no_pruning_agree(hand_sae, hand_data):
    reference = recover_concept_graph(hand_sae, hand_data)
    batches = (hand_data[s : s + 300] for s in range(0, len(hand_data), 300))
    streamed = recover_concept_graph(hand_sae, batches, batch_size=512, prune=False)
    assert streamed == reference
    topk = TopKSAE(TopKSAEConfig(d_in=7, d_sae=7, k=7))
    with torch.no_grad():
        topk.W_enc.copy_(torch.eye(7))
        topk.W_dec.copy_(torch.eye(7))
        topk.b_enc.zero_()
        topk.b_dec.zero_()
    assert recover_concept_graph(topk, hand_data, batch_size=1000) == reference


def test_min_support_and_parent_rate_ratio(hand_sae, hand_data):
    n_d = int((hand_data[:, 3] > 0).sum())
    graph = recover_concept_graph(hand_sae, hand_data, min_support=n_d + 1)
    assert 3 not in graph and (3, 1) not in graph.edges and (1, 0) in graph.edges
    # parents fire ~2x (1 -> 0, 3 -> 1) or ~2.5x (2 -> 0) more often than their children
    capped = recover_concept_graph(hand_sae, hand_data, max_parent_rate_ratio=1.5)
    assert capped.edges == []


def test_min_activation_ignores_weak_firings(hand_sae, hand_data):
    noisy = hand_data.clone()
    weak = (torch.rand(noisy.shape, generator=torch.Generator().manual_seed(9)) < 0.3) & (noisy == 0)
    noisy[weak] = 0.2  # weak spurious firings everywhere break "child only with parent"
    assert set(recover_concept_graph(hand_sae, noisy).edges) != HAND_EDGES
    assert set(recover_concept_graph(hand_sae, noisy, min_activation=0.5).edges) == HAND_EDGES


def test_transitive_reduction_and_explained_parents_are_pure():
    assert transitive_reduction_edges({(3, 1), (1, 0), (3, 0), (4, 0)}) == {(3, 1), (1, 0), (4, 0)}
    coarse = {0: 100, 1: 50, 2: 60, 3: 10}
    # 3 has parents 1 and 0; P(0 | 1) = 0.85 is just under the 0.9 threshold
    kept = drop_explained_parents({(3, 1), (3, 0)}, {(1, 0): 0.85}, coarse, min_conditional=0.9)
    assert kept == {(3, 1)}
    # genuine multiple parents: P(2 | 1) is low, both parents stay
    kept = drop_explained_parents({(3, 1), (3, 2)}, {(1, 2): 0.2}, coarse)
    assert kept == {(3, 1), (3, 2)}
    # explain_margin = 0 leaves the near-transitive edge in place
    assert minimal_parent_edges(
        {(3, 1), (3, 0)}, coarse, lambda q: {(1, 0): 0.85}, explain_margin=0.0
    ) == {(3, 1), (3, 0)}
    with pytest.raises(ValueError, match="cycle"):
        transitive_reduction_edges({(1, 2), (2, 1)})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_conditional": 1.5}, "min_conditional"),
        ({"min_conditional": -0.1}, "min_conditional"),
        ({"explain_margin": 2.0}, "explain_margin"),
        ({"prune_eps": 1.2}, "prune_eps"),
        ({"prune_eps": 0.95}, "prune_eps"),
        ({"min_support": 0}, "min_support"),
        ({"min_lift": -1.0}, "min_lift"),
        ({"max_parent_rate_ratio": 0.5}, "max_parent_rate_ratio"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_activation": -0.5}, "min_activation"),
    ],
)
def test_bad_thresholds_raise_value_error_naming_the_argument(kwargs, name):
    sae = identity_sae(4)
    with pytest.raises(ValueError, match=name):
        recover_concept_graph(sae, torch.rand(10, 4), **kwargs)


def test_bad_activations_raise_value_error():
    sae = identity_sae(4)
    with pytest.raises(ValueError, match=r"activations: wrong d_in.*expected 4.*got 5"):
        recover_concept_graph(sae, torch.rand(10, 5))
    with pytest.raises(ValueError, match=r"activations: wrong d_in in batch 1"):
        recover_concept_graph(sae, [torch.rand(10, 4), torch.rand(10, 3)])
    bad = torch.rand(10, 4)
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="activations: found NaN"):
        recover_concept_graph(sae, bad)
    bad[3, 2] = float("inf")
    with pytest.raises(ValueError, match="activations: found Inf"):
        recover_concept_graph(sae, [torch.rand(5, 4), bad])
    with pytest.raises(ValueError, match="activations: empty"):
        recover_concept_graph(sae, torch.empty(0, 4))
    with pytest.raises(ValueError, match="activations: empty"):
        recover_concept_graph(sae, [])
    with pytest.raises(ValueError, match="activations: .*ndim=3"):
        recover_concept_graph(sae, torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="activations: .*ndim=1"):
        recover_concept_graph(sae, torch.rand(4))


def test_stats_device_and_return_stats(hand_sae):
    data = hand_hierarchy_data(n=1000, seed=5)
    graph, stats = recover_concept_graph(hand_sae, data, device="cpu", return_stats=True, prune_every=2)
    assert stats.n_samples == 1000 and stats.prune_every == 2
    assert graph.meta["n_samples"] == 1000 and graph.meta["min_conditional"] == 0.9
