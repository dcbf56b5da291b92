"""Scores and diagnosis of layered graphs against a known world, on hand-built tensors and graphs."""

import math

import torch

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.multilevel import edge_scores, layered_diagnosis, merged_latents


def graph(edges, sizes=(2, 3)):
    g = ConceptGraph()
    for level, n in enumerate(sizes):
        for i in range(n):
            g.add_concept(f"L{level}:{i}", level=level)
    for child, parent in edges:
        g.add_edge(child, parent)
    return g


def test_merged_latents_finds_a_two_concept_mix_only():
    targets = torch.eye(4)
    rows = torch.stack([
        torch.tensor([1.0, 0, 0, 0]),               # pure concept 0
        torch.tensor([0, 1.0, 1.0, 0]) / math.sqrt(2),  # concepts 1 + 2 merged
        torch.tensor([0, 0, 0.2, 1.0]),             # mostly concept 3: not a merge
        torch.tensor([0.5, 0.5, 0.5, 0.5]),         # spread over four: not a two-concept merge
    ])
    assert merged_latents(rows, targets) == [(1, 1, 2)]


def test_layered_diagnosis_separates_dictionary_and_graph_step():
    truth = graph([("L1:0", "L0:0"), ("L1:1", "L0:0"), ("L1:2", "L0:1")])
    # latents renamed 1:1 at level 1; level 0 has only latent 0 (-> concept 0); latent 1 unmatched
    matchings = [{0: 0}, {0: 0, 1: 1, 2: 2}]
    recovered = graph([("L1:0", "L0:0"), ("L1:2", "L0:0"), ("L1:2", "L0:1")])
    decoders = [torch.tensor([[1.0, 0.0], [0.7, 0.7]]), torch.eye(3)]
    features = [torch.eye(2), torch.eye(3)]
    d = layered_diagnosis(recovered, truth, matchings, decoders, features)
    assert d["concepts_with_latent"] == [1, 3] and d["concepts"] == [2, 3]
    assert d["merged_latents"] == [1, 0]
    assert d["edges_lost_to_dictionary"] == 1  # L1:2 -> L0:1: concept L0:1 has no latent
    assert d["recovered_unmatched"] == 1  # the edge into latent L0:1
    assert d["graph_missed"] == 1  # L1:1 -> L0:0, both ends matched, not found
    assert d["graph_wrong"] == 1  # L1:2 -> L0:0
    assert d["matched_precision"] == 0.5 and d["matched_recall"] == 0.5
    scores = edge_scores(recovered, truth, matchings)
    assert scores["edge_precision"] == 1 / 3 and scores["edge_recall"] == 1 / 3 and scores["shd"] == 4.0
