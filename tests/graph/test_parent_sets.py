"""Conditional mutual information and minimal parent sets on exact binary data."""

import itertools

import pytest
import torch

from sae_causal_plugin.graph.parent_sets import conditional_entropy, conditional_mutual_information, minimal_parent_set


def all_assignments(k: int, repeat: int = 1) -> torch.Tensor:
    rows = torch.tensor(list(itertools.product((0, 1), repeat=k)), dtype=torch.bool)
    return rows.repeat(repeat, 1)


def test_cmi_exact_values():
    x = all_assignments(2)  # four equally likely rows
    a, b = x[:, 0], x[:, 1]
    assert conditional_entropy(a, x[:, :0]) == pytest.approx(1.0)
    cmi = conditional_mutual_information(a, x, x[:, :0])
    assert cmi.tolist() == pytest.approx([1.0, 0.0])  # I(a; a) = 1 bit, I(a; b) = 0
    xor = a ^ b
    # XOR: independent of a alone, fully determined given b
    assert conditional_mutual_information(xor, a[:, None], x[:, :0]).item() == pytest.approx(0.0)
    assert conditional_mutual_information(xor, a[:, None], b[:, None]).item() == pytest.approx(1.0)
    assert conditional_entropy(xor, x) == pytest.approx(0.0)


@pytest.mark.parametrize("rule", ["or", "and"])
def test_minimal_parent_set_finds_exactly_the_components(rule):
    x = all_assignments(4, repeat=8)
    target = (x[:, 0] | x[:, 2]) if rule == "or" else (x[:, 0] & x[:, 2])
    decoy = x[:, 0] & x[:, 1]  # correlated with the target, but redundant given its parents
    candidates = torch.cat([x, decoy[:, None]], dim=1)
    result = minimal_parent_set(target, candidates)
    assert sorted(result.parents) == [0, 2]
    assert result.residual == pytest.approx(0.0)
    assert all(c > 0 for c in result.cmi)


def test_shrink_removes_a_parent_made_redundant_later():
    x = all_assignments(3, repeat=4)
    target = x[:, 0] | x[:, 1]
    proxy = target.clone()  # a candidate identical to the target is picked first ...
    proxy[::7] = ~proxy[::7]  # ... but is noisy, so the true parents end up explaining it all
    result = minimal_parent_set(target, torch.cat([proxy[:, None], x], dim=1), min_gain=0.05)
    assert sorted(result.parents) == [1, 2]


def test_tiers_open_only_when_the_adjacent_level_does_not_explain():
    x = all_assignments(3, repeat=4)
    target = x[:, 0] | x[:, 1]
    tiers = torch.tensor([0, 1, 1])  # x1 is a skip-level candidate
    explained = minimal_parent_set(target, x, tiers=tiers, max_residual=0.99)
    assert explained.parents == [0]  # residual share <= 0.99: the far tier stays closed
    opened = minimal_parent_set(target, x, tiers=tiers, max_residual=0.0)
    assert sorted(opened.parents) == [0, 1]


def test_constant_target_has_no_parents():
    x = all_assignments(3)
    assert minimal_parent_set(torch.zeros(8, dtype=torch.bool), x).parents == []
