"""Spatial timestep graph: containment, minimal parent sets, persistence, bad input."""

import pytest
import torch

from sae_causal_plugin.graph.spatial import containment_counts, heatmap_iou, recover_spatial_timestep_graph

SIDE = 8
T = SIDE * SIDE


def _box(r0, r1, c0, c1):
    m = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m.flatten()


def _world(n=400, seed=0):
    """Two wholes (A top-left, B bottom-right), one region each, one part shared by both regions,
    one part of A's region only.  Level 0 latents: [A, B]; level 1: [regA, regB, A again];
    level 2: [shared, partA]."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.zeros(n, T, 2, dtype=torch.bool)
    f1 = torch.zeros(n, T, 3, dtype=torch.bool)
    f2 = torch.zeros(n, T, 2, dtype=torch.bool)
    for i in range(n):
        whole = int(torch.randint(0, 2, (1,), generator=g))
        dr = int(torch.randint(0, 2, (1,), generator=g))
        if whole == 0:
            f0[i, :, 0] = f1[i, :, 2] = _box(0 + dr, 4 + dr, 0, 4)
            region = _box(dr, 2 + dr, 0, 4)
            f1[i, :, 0] = region if torch.rand(1, generator=g) < 0.8 else False
            if f1[i, :, 0].any():
                if torch.rand(1, generator=g) < 0.5:
                    f2[i, :, 0] = _box(dr, 1 + dr, 0, 1)
                if torch.rand(1, generator=g) < 0.5:
                    f2[i, :, 1] = _box(dr, 1 + dr, 2, 3)
        else:
            f0[i, :, 1] = _box(4 - dr, 8 - dr, 4, 8)
            region = _box(4 - dr, 6 - dr, 4, 8)
            f1[i, :, 1] = region if torch.rand(1, generator=g) < 0.8 else False
            if f1[i, :, 1].any() and torch.rand(1, generator=g) < 0.5:
                f2[i, :, 0] = _box(4 - dr, 5 - dr, 5, 6)
    return {900: f0, 500: f1, 100: f2}


def test_hand_built_spatial_hierarchy_gives_the_exact_edges():
    g = recover_spatial_timestep_graph(_world())
    assert set(g.edges) == {
        ("t500:0", "t900:0"), ("t500:1", "t900:1"),           # regions -> wholes
        ("t100:0", "t500:0"), ("t100:0", "t500:1"),           # the shared part has both regions
        ("t100:1", "t500:0"),                                 # A's own part: the region, not "A again"
    }
    # "A again" at level 1 is A at level 0 seen twice: persistence, no edge
    assert not g.parents("t500:2")
    shared = g.edge_stats("t100:0", "t500:0")
    # each region holds the shared part in its own whole's images: about half its tokens each
    assert 0.3 < shared["containment"] < 0.7 and shared["gain"] == pytest.approx(shared["containment"])
    assert shared["coverage"] == pytest.approx(1.0) and shared["token_lift"] > 5


def test_a_child_outside_its_candidate_gets_no_parent():
    levels = _world()
    levels[100] = torch.roll(levels[100], shifts=SIDE * 3 + 3, dims=1)  # parts moved out of their regions
    g = recover_spatial_timestep_graph(levels)
    assert not g.parents("t100:1")


def test_containment_counts_and_iou():
    child = torch.zeros(2, 4, 1, dtype=torch.bool)
    parent = torch.zeros(2, 4, 2, dtype=torch.bool)
    child[0, :2, 0] = True
    parent[0, :3, 0] = True
    parent[1, :, 1] = True
    assert containment_counts(child, parent).tolist() == [[2.0, 0.0]]
    assert heatmap_iou(child[..., 0], parent[..., 0]) == pytest.approx(2 / 3)
    assert heatmap_iou(torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        heatmap_iou(child[..., 0], parent[:1, :, 0])


def test_bad_input_names_what_to_change():
    levels = _world(n=50)
    with pytest.raises(ValueError, match="at least two timesteps"):
        recover_spatial_timestep_graph({900: levels[900]})
    with pytest.raises(ValueError, match=r"\[n_images, n_tokens, d_sae\]"):
        recover_spatial_timestep_graph({900: levels[900], 500: levels[500][:, :, 0]})
    with pytest.raises(ValueError, match="same"):
        recover_spatial_timestep_graph({900: levels[900], 500: levels[500][:10]})
    with pytest.raises(ValueError, match="min_coverage"):
        recover_spatial_timestep_graph(levels, min_coverage=1.5)
    with pytest.raises(ValueError, match="min_support"):
        recover_spatial_timestep_graph(levels, min_support=0)


def test_the_heatmap_picture_draws_every_node_on_an_edge_with_its_level(tmp_path):
    from sae_causal_plugin.diffusion.token_graph import mean_heatmaps
    from sae_causal_plugin.graph.heatmaps import draw_heatmap_graph

    world = _world()
    g = recover_spatial_timestep_graph(world)
    maps = {}
    for t, f in world.items():
        m = mean_heatmaps(f, (SIDE, SIDE))
        maps.update({f"t{t}:{j}": m[j] for j in range(m.shape[0])})
    # a whole's mean map is its box, on average over its two offsets
    assert maps["t900:0"][0, 0] == pytest.approx(0.5, abs=0.1) and maps["t900:0"][2, 2] == 1.0
    drawn = draw_heatmap_graph(g, maps, tmp_path / "g.png", labels={"t900:0": "A"}, title="toy")
    assert set(drawn) == {n for e in g.edges for n in e} and (tmp_path / "g.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="grid"):
        mean_heatmaps(world[900], (4, 4))
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        draw_heatmap_graph(g, {"t900:0": torch.zeros(3)}, tmp_path / "x.png")
