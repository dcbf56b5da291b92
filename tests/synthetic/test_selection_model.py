"""The generator: pairing across levels, exact observations, true graph, save/load, bad input."""

import pytest
import torch

from sae_causal_plugin.synthetic import (
    HierarchicalSelectionConfig,
    HierarchicalSelectionModel,
    compose,
    zipf_probabilities,
)


def tiny_model(**overrides) -> HierarchicalSelectionModel:
    cfg = HierarchicalSelectionConfig(**{"concepts_per_level": [2, 3], "parents": 2, "max_prob": 0.5,
                                         "min_prob": 0.5, **overrides})
    model = HierarchicalSelectionModel(cfg, seed=0)
    # hand-set structure: coarse 0 <- {0, 1}, coarse 1 <- {1, 2}; identity directions
    model.parent_index[0] = torch.tensor([[0, 1], [1, 2]])
    model.feature_vectors = [torch.eye(2), torch.eye(3)]
    return model


def test_levels_are_paired_and_coarse_concepts_are_exact_selections():
    model = tiny_model(composition="or", magnitude_range=(1.0, 1.0))
    batch = model.sample(64, seed=1)
    fine, coarse = batch.concepts[1], batch.concepts[0]
    assert torch.equal(coarse[:, 0], fine[:, 0] | fine[:, 1])
    assert torch.equal(coarse[:, 1], fine[:, 1] | fine[:, 2])
    # identity directions, unit magnitudes, no noise: x_l is exactly the presence of level l
    assert torch.equal(batch.activations[1], fine.float())
    assert torch.equal(batch.activations[0], coarse.float())


def test_and_world_exact_row():
    model = tiny_model(composition="and", magnitude_range=(1.0, 1.0))
    fine = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    coarse = compose("and", fine, model.parent_index[0])
    assert coarse.tolist() == [[True, False], [False, True], [True, True], [False, False]]


def test_leakage_adds_the_other_level_exactly():
    model = tiny_model(leakage=0.5, magnitude_range=(1.0, 1.0))
    batch = model.sample(32, seed=2)
    a0, a1 = batch.magnitudes
    expected0 = a0 @ model.feature_vectors[0] + 0.5 * a1 @ model.leakage_vectors[(0, 1)]
    expected1 = a1 @ model.feature_vectors[1] + 0.5 * a0 @ model.leakage_vectors[(1, 0)]
    assert torch.allclose(batch.activations[0], expected0)
    assert torch.allclose(batch.activations[1], expected1)


def test_noise_and_tanh_change_the_observation():
    clean = tiny_model(magnitude_range=(1.0, 1.0)).sample(16, seed=3)
    bent = tiny_model(magnitude_range=(1.0, 1.0), nonlinearity="tanh").sample(16, seed=3)
    assert torch.allclose(bent.activations[1], torch.tanh(clean.activations[1]))
    noisy = tiny_model(magnitude_range=(1.0, 1.0), noise=0.5).sample(16, seed=3)
    assert not torch.allclose(noisy.activations[1], clean.activations[1])
    assert torch.equal(noisy.concepts[1], clean.concepts[1])


def test_structure_depends_on_seed_and_is_reproducible():
    cfg = HierarchicalSelectionConfig([6, 18, 36], parents=3)
    a, b = HierarchicalSelectionModel(cfg, seed=4), HierarchicalSelectionModel(cfg, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parent_index, b.parent_index))
    assert torch.equal(a.sample(8, seed=0).activations[2], b.sample(8, seed=0).activations[2])
    c = HierarchicalSelectionModel(cfg, seed=5)
    assert not all(torch.equal(x, y) for x, y in zip(a.parent_index, c.parent_index))


def test_true_graph_matches_parent_sets_and_multi_parent_share():
    cfg = HierarchicalSelectionConfig([4, 8], parents=3)  # 12 slots over 8 concepts: 4 shared
    model = HierarchicalSelectionModel(cfg, seed=0)
    graph = model.true_graph()
    expected = {(f"L1:{c}", f"L0:{j}") for j, s in enumerate(model.parent_sets(0)) for c in s}
    assert set(graph.edges) == expected and len(expected) == 12
    assert graph.concept_attrs("L1:0")["level"] == 1 and graph.concept_attrs("L0:3")["level"] == 0
    assert model.multi_parent_share(1) == pytest.approx(0.5)
    tree = HierarchicalSelectionModel(HierarchicalSelectionConfig([4, 12], parents=3), seed=0)
    assert tree.multi_parent_share(1) == 0.0


def test_threshold_world_keeps_only_relevant_parents():
    cfg = HierarchicalSelectionConfig([6, 12], parents=3, composition="threshold", threshold_fraction=0.5)
    model = HierarchicalSelectionModel(cfg, seed=1)
    batch = model.sample(4000, seed=0)
    for j, parents in enumerate(model.parent_sets(0)):
        for c in parents:  # flipping each kept parent changes the concept in some sample
            flipped = batch.concepts[1].clone()
            flipped[:, c] = ~flipped[:, c]
            again = compose("threshold", flipped, model.parent_index[0], model.composition_weights[0],
                            model.composition_thresholds[0])
            assert (again[:, j] != batch.concepts[0][:, j]).any()


def test_zipf_probabilities_span_the_range():
    p = zipf_probabilities(5, 0.4, 0.01, 1.0)
    assert p[0].item() == pytest.approx(0.4) and p[-1].item() == pytest.approx(0.01)
    assert torch.all(p[:-1] >= p[1:])


def test_correlated_sampling_keeps_marginals():
    cfg = HierarchicalSelectionConfig([2, 6], parents=2, correlation=0.6, max_prob=0.3, min_prob=0.1)
    model = HierarchicalSelectionModel(cfg, seed=0)
    rates = model.sample(20000, seed=0).concepts[1].float().mean(0)
    assert torch.allclose(rates, model.firing_probabilities, atol=0.02)


def test_merged_pairs_co_occur_and_stay_exact_selections():
    cfg = HierarchicalSelectionConfig([8, 16, 24], parents=3, max_overlap=1, merged_pairs=2, merge_rate=1.0)
    model = HierarchicalSelectionModel(cfg, seed=0)
    batch = model.sample(4000, seed=1)
    coarse = batch.concepts[0]
    for a, b in model.merged_pairs.tolist():  # both pairs, although one pair's merge touches the other's
        assert not set(model.parent_sets(0)[a]) & set(model.parent_sets(0)[b])  # their parts differ
        assert torch.equal(coarse[:, a], coarse[:, b]) and coarse[:, a].any()
    (a, b), _ = model.merged_pairs.tolist()
    for level in range(2):  # every coarse concept is still its rule of its components
        assert torch.equal(batch.concepts[level], compose("or", batch.concepts[level + 1], model.parent_index[level]))
    plain = HierarchicalSelectionModel(HierarchicalSelectionConfig([8, 16, 24], parents=3, max_overlap=1), seed=0)
    apart = plain.sample(4000, seed=1).concepts[0]
    assert (apart[:, a] != apart[:, b]).float().mean() > 0.2  # without the merge they often differ
    assert torch.equal(plain.feature_vectors[0], model.feature_vectors[0])  # the rest of the world is unchanged


def test_save_load_round_trip(tmp_path):
    cfg = HierarchicalSelectionConfig([3, 6, 9], parents=2, composition=["or", "threshold"], leakage=0.2,
                                      noise=0.1, correlation=0.3, merged_pairs=1)
    model = HierarchicalSelectionModel(cfg, seed=7)
    model.save(tmp_path / "world")
    loaded = HierarchicalSelectionModel.load_from_disk(tmp_path / "world")
    assert loaded.cfg == model.cfg and loaded.seed == 7
    for name, value in model._tensors().items():
        assert torch.equal(value, loaded._tensors()[name]), name
    a, b = model.sample(32, seed=9), loaded.sample(32, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(a.activations, b.activations))
    assert model.true_graph() == loaded.true_graph()


def test_load_keeps_saved_weights_not_the_seed(tmp_path):
    model = tiny_model()
    model.save(tmp_path / "w")
    loaded = HierarchicalSelectionModel.load_from_disk(tmp_path / "w")
    assert loaded.parent_index[0].tolist() == [[0, 1], [1, 2]]
    assert torch.equal(loaded.feature_vectors[1], torch.eye(3))


@pytest.mark.parametrize("kwargs,match", [
    (dict(concepts_per_level=[4]), "at least two levels"),
    (dict(concepts_per_level=[4, 8], composition="xor"), "composition 'xor' does not exist"),
    (dict(concepts_per_level=[4, 8, 8], composition=["or"]), "one name, or one per coarse level"),
    (dict(concepts_per_level=[4, 2], parents=3), "parents=3 exceeds"),
    (dict(concepts_per_level=[4, 8], hidden_dims=[4]), "hidden_dims"),
    (dict(concepts_per_level=[4, 8], nonlinearity="gelu"), "nonlinearity"),
    (dict(concepts_per_level=[4, 8], noise=-1.0), "noise"),
    (dict(concepts_per_level=[4, 8], merged_pairs=3), "merged_pairs must be an integer from 0 to 2"),
    (dict(concepts_per_level=[4, 8], merge_rate=1.5), "merge_rate"),
])
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalSelectionConfig(**kwargs)


def test_load_from_an_empty_directory_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="save"):
        HierarchicalSelectionModel.load_from_disk(tmp_path)
