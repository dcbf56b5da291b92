"""summarise_latents: seeded known values on plain tensors, and bad input refused."""

from __future__ import annotations

import pytest
import torch

from sae_causal_plugin.graph import ConceptGraph, summarise_latents


def small() -> tuple[torch.Tensor, torch.Tensor, ConceptGraph]:
    codes = torch.tensor([[2.0, 0.0, 0.0],
                          [1.0, 3.0, 0.0],
                          [0.0, 0.5, 0.0],
                          [4.0, 0.0, 0.0]])
    decoder = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    graph = ConceptGraph()
    graph.add_concept(0, label="animal (#0)")
    graph.add_edge(1, 0)
    return codes, decoder, graph


def test_known_values():
    codes, decoder, graph = small()
    rows = summarise_latents(codes, decoder, graph, {0: ("animal", 0.9)}, top_k=2)
    assert [r.latent for r in rows] == [0, 1, 2]
    a, b, c = rows
    assert (a.firing_rate, b.firing_rate, c.firing_rate) == (0.75, 0.5, 0.0)
    assert (a.decoder_norm, b.decoder_norm, c.decoder_norm) == (5.0, 1.0, 2.0)
    assert (a.concept, a.firing_f1, b.concept, b.firing_f1) == ("animal", 0.9, None, None)
    assert a.children == ("#1",) and a.parents == () and b.parents == ("animal (#0)",)
    assert a.top_rows == (3, 0) and a.top_values == (4.0, 2.0)
    assert b.top_rows == (1, 2) and c.top_rows == ()  # a latent that never fires has no contexts
    assert c.parents == c.children == ()  # not in the graph


def test_nodes_map_latents_onto_graph_nodes():
    codes, decoder, _ = small()
    graph = ConceptGraph()
    graph.add_edge("t101:1", "t501:0", p_parent_given_child=1.0)
    rows = summarise_latents(codes, decoder, graph, {"t101:1": ("window", 0.8)},
                             nodes=["t101:0", "t101:1", "t101:2"])
    assert rows[1].parents == ("t501:0",) and rows[1].concept == "window" and rows[0].concept is None
    with pytest.raises(ValueError, match="one node per latent"):
        summarise_latents(codes, decoder, graph, {}, nodes=["a"])


@pytest.mark.parametrize("change, message", [
    (lambda c, d: (c[:, :2], d), "same d_sae"),
    (lambda c, d: (c[:0], d), "no rows"),
    (lambda c, d: (c.index_fill(0, torch.tensor([0]), float("nan")), d), "NaN"),
])
def test_bad_input(change, message):
    codes, decoder, graph = small()
    codes, decoder = change(codes, decoder)
    with pytest.raises(ValueError, match=message):
        summarise_latents(codes, decoder, graph, {})
    with pytest.raises(ValueError, match="top_k"):
        summarise_latents(*small()[:2], graph, {}, top_k=0)
