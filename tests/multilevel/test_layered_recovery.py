"""Layered recovery on a hand-built two-level example with known edges, layouts and bad input."""

import pytest
import torch

from sae_causal_plugin.graph import layered_graph_from_firing
from sae_causal_plugin.multilevel import recover_layered_graph
from tests.helpers import identity_sae

# fine latents 0..5; coarse 0 = fine0 OR fine1; coarse 1 = fine1 OR fine2 (fine1 has two parents);
# coarse 2 = fine3 AND fine4; fine 5 is a parent of nothing.
EDGES = {("L1:0", "L0:0"), ("L1:1", "L0:0"), ("L1:1", "L0:1"), ("L1:2", "L0:1"),
         ("L1:3", "L0:2"), ("L1:4", "L0:2")}


def hand_data(n: int = 6000, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.tensor([0.1, 0.15, 0.1, 0.4, 0.4, 0.2])
    fine = torch.rand(n, 6, generator=g) < p
    coarse = torch.stack([fine[:, 0] | fine[:, 1], fine[:, 1] | fine[:, 2], fine[:, 3] & fine[:, 4]], dim=1)
    return [coarse.float(), fine.float()]


def test_recovers_the_known_edges_with_statistics():
    data = hand_data()
    graph = recover_layered_graph([identity_sae(3), identity_sae(6)], data)
    assert set(graph.edges) == EDGES
    assert graph.concept_attrs("L0:1")["level"] == 0 and graph.concept_attrs("L1:5")["level"] == 1
    stats = graph.edge_stats("L1:1", "L0:0")
    assert stats["p_parent_given_child"] == pytest.approx(1.0)  # OR: a component implies the concept
    assert stats["count_both"] == stats["count_child"] == int(data[1][:, 1].sum())
    assert stats["lift"] > 1 and stats["level_gap"] == 1 and stats["cmi"] > 0
    and_stats = graph.edge_stats("L1:3", "L0:2")
    assert and_stats["p_child_given_parent"] == pytest.approx(1.0)  # AND: the concept implies each part
    assert and_stats["p_parent_given_child"] < 0.6


def test_token_aligned_and_feature_map_layouts_pair_positions():
    coarse, fine = hand_data(n=6000)
    flat = recover_layered_graph([identity_sae(3), identity_sae(6)], [coarse, fine])
    tokens = [coarse.reshape(600, 10, 3), fine.reshape(600, 10, 6)]
    assert set(recover_layered_graph([identity_sae(3), identity_sae(6)], tokens).edges) == set(flat.edges)
    maps = [x.reshape(150, 40, x.shape[-1]).reshape(150, 5, 8, x.shape[-1]).permute(0, 3, 1, 2)
            for x in (coarse, fine)]  # [batch, d, h, w]
    assert set(recover_layered_graph([identity_sae(3), identity_sae(6)], maps).edges) == EDGES


def test_misaligned_positions_lose_the_edges():
    coarse, fine = hand_data(n=6000)
    shuffled = fine[torch.randperm(6000, generator=torch.Generator().manual_seed(1))]
    graph = recover_layered_graph([identity_sae(3), identity_sae(6)], [coarse, shuffled])
    assert not set(graph.edges) & EDGES


def test_skip_level_edges_only_when_the_middle_level_misses_a_concept():
    coarse, fine = hand_data(n=6000)
    middle = fine.clone()
    middle[:, 4] = 0.0  # the middle level lost fine concept 4 (and fine 4 is copied to the bottom)
    bottom = fine
    firing = [coarse > 0, middle > 0, bottom > 0]
    adjacent = layered_graph_from_firing(firing, max_skip=1)
    assert ("L2:4", "L0:2") not in set(adjacent.edges)
    skipping = layered_graph_from_firing(firing, max_skip=2)
    assert ("L2:4", "L0:2") in set(skipping.edges)
    assert skipping.edge_stats("L2:4", "L0:2")["level_gap"] == 2
    assert ("L2:0", "L0:0") not in set(skipping.edges)  # explained by the middle level


def test_candidate_maps_restrict_the_adjacent_candidates():
    coarse, fine = hand_data()
    allowed = torch.zeros(6, 3)
    allowed[0, 0] = allowed[1, 0] = 1.0  # only fine 0, 1 may compose coarse 0; nothing else
    graph = layered_graph_from_firing([coarse > 0, fine > 0], candidate_maps=[allowed])
    assert set(graph.edges) == {("L1:0", "L0:0"), ("L1:1", "L0:0")}


def test_rarely_firing_latents_are_left_out():
    coarse, fine = hand_data()
    fine[:, 5] = 0.0
    fine[:3, 5] = 1.0
    graph = recover_layered_graph([identity_sae(3), identity_sae(6)], [coarse, fine], min_support=20)
    assert "L1:5" not in graph and "L1:0" in graph


@pytest.mark.parametrize("case,match", [
    ("one_level", "at least two"),
    ("count", "3 SAEs but paired_activations has 2 levels"),
    ("samples", "not paired"),
    ("positions", "not paired"),
    ("d_in", r"level_saes\[1\] has d_in=5"),
    ("not_a_list", "one activation tensor per level"),
    ("nan", "NaN"),
    ("threshold", "unknown thresholds"),
])
def test_bad_input_is_a_value_error(case, match):
    coarse, fine = hand_data(n=100)
    saes, acts, kwargs = [identity_sae(3), identity_sae(6)], [coarse, fine], {}
    if case == "one_level":
        saes, acts = saes[:1], acts[:1]
    elif case == "count":
        saes = saes + [identity_sae(6)]
    elif case == "samples":
        acts = [coarse, fine[:99]]
    elif case == "positions":
        acts = [coarse.reshape(10, 10, 3), fine.reshape(20, 5, 6)]
    elif case == "d_in":
        saes = [identity_sae(3), identity_sae(5)]
    elif case == "not_a_list":
        acts = coarse
    elif case == "nan":
        fine[0, 0] = float("nan")
    elif case == "threshold":
        kwargs = {"min_gian": 0.1}
    with pytest.raises(ValueError, match=match):
        recover_layered_graph(saes, acts, **kwargs)
