"""evaluate_hierarchy_recovery against a SAELens SyntheticModel hierarchy."""

from __future__ import annotations

import torch

from sae_causal_plugin.graph import (
    ConceptGraph,
    evaluate_hierarchy_recovery,
    recover_concept_graph,
    true_hierarchy_graph,
)

# generate_hierarchy(2 roots, branching 2, depth 2) numbers features breadth-first
TRUE_EDGES = {(2, 0), (3, 0), (4, 1), (5, 1), (6, 2), (7, 2), (8, 3), (9, 3), (10, 4), (11, 4), (12, 5), (13, 5)}


def test_true_hierarchy_graph(synthetic_setup):
    model, _ = synthetic_setup
    truth = true_hierarchy_graph(model)
    assert set(truth.edges) == TRUE_EDGES
    assert truth.levels()[0] == 0 and truth.levels()[2] == 1 and truth.levels()[13] == 2
    assert 14 not in truth and 15 not in truth  # features outside the hierarchy


def test_perfect_sae_gives_perfect_scores(synthetic_setup):
    model, sae = synthetic_setup
    graph = recover_concept_graph(sae, model.sample(20_000))
    assert set(graph.edges) == TRUE_EDGES
    res = evaluate_hierarchy_recovery(graph, sae, model, num_samples=4000)
    assert res["precision"] == 1.0 and res["recall"] == 1.0 and res["f1"] == 1.0
    assert res["absorption"] == 0.0
    assert res["n_true_edges"] == 12 and res["n_recovered_edges"] == 12 and res["n_matched"] == 16


def test_wrong_and_missing_edges_lower_the_scores(synthetic_setup):
    model, sae = synthetic_setup
    graph = ConceptGraph()
    for c, p in sorted(TRUE_EDGES)[:6]:
        graph.add_edge(c, p)
    graph.add_edge(14, 15)  # not a true edge
    graph.add_edge("L0:13", "L0:1")  # str ids use the index after ':'; 13 -> 1 is a grandparent edge
    res = evaluate_hierarchy_recovery(graph, sae, model, num_samples=2000)
    assert res["n_correct_edges"] == 6
    assert res["precision"] == 6 / 8
    assert res["recall"] == 6 / 12


def test_unmatched_latents_count_as_false_positives(synthetic_setup):
    model, sae = synthetic_setup
    with torch.no_grad():
        sae.W_dec[2] = torch.randn(32, generator=torch.Generator().manual_seed(3))
    graph = ConceptGraph()
    graph.add_edge(2, 0)
    graph.add_edge(3, 0)
    res = evaluate_hierarchy_recovery(graph, sae, model, num_samples=1000, min_cosine=0.9)
    assert res["n_matched"] == 15
    assert res["precision"] == 0.5


def test_absorption_detects_a_silent_parent_latent(synthetic_setup):
    model, sae = synthetic_setup
    with torch.no_grad():
        sae.threshold[0] = 100.0  # latent 0 (feature 0, a root) never fires
    res = evaluate_hierarchy_recovery(ConceptGraph(), sae, model, num_samples=4000)
    assert 0.0 < res["absorption"] < 1.0
    _, feats = model.sample_with_features(20_000)
    fired = feats > 0
    share = (fired[:, 2].sum() + fired[:, 3].sum()) / sum(fired[:, c].sum() for c, _ in TRUE_EDGES)
    assert abs(res["absorption"] - float(share)) < 0.05
    assert res["precision"] == 0.0 and res["recall"] == 0.0
