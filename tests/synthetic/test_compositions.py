"""Selection rules and parent-set structure on tiny tensors, with exact expected values."""

import pytest
import torch

from sae_causal_plugin.synthetic import compose, relevant_components
from sae_causal_plugin.synthetic.compositions import assign_parent_sets, pad_parent_sets, witness_sets

# four samples of three fine concepts
FINE = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
# coarse 0 <- {0, 1}; coarse 1 <- {1, 2}; coarse 2 <- {2} (padded)
PARENTS = torch.tensor([[0, 1], [1, 2], [2, -1]])


def test_or_composition_exact():
    out = compose("or", FINE, PARENTS)
    expected = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(out, expected)


def test_and_composition_exact_and_padding_is_neutral():
    out = compose("and", FINE, PARENTS)
    expected = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(out, expected)


def test_threshold_composition_exact():
    weights = torch.tensor([[1.0, 2.0], [1.0, 1.0], [1.0, 0.0]])
    thresholds = torch.tensor([2.0, 2.0, 1.0])  # coarse 0 fires iff fine 1; coarse 1 = AND; coarse 2 = fine 2
    out = compose("threshold", FINE, PARENTS, weights, thresholds)
    expected = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(out, expected)


def test_unknown_composition_is_a_value_error():
    with pytest.raises(ValueError, match="composition 'xor' does not exist"):
        compose("xor", FINE, PARENTS)
    with pytest.raises(ValueError, match="needs weights"):
        compose("threshold", FINE, PARENTS)


def test_relevant_components_of_threshold_units():
    assert relevant_components(torch.tensor([1.0, 1.0]), 2.0).tolist() == [True, True]  # AND
    assert relevant_components(torch.tensor([1.0, 1.0]), 1.0).tolist() == [True, True]  # OR
    # w = (1.5, 0.5), threshold 1: the first alone decides, the second never matters
    assert relevant_components(torch.tensor([1.5, 0.5]), 1.0).tolist() == [True, False]
    # majority of three
    assert relevant_components(torch.tensor([1.0, 1.0, 1.0]), 2.0).tolist() == [True, True, True]


@pytest.mark.parametrize("n_coarse,n_fine,k", [(4, 12, 3), (4, 8, 3), (6, 6, 2)])
def test_parent_sets_are_distinct_and_balanced(n_coarse, n_fine, k):
    sets = assign_parent_sets(n_coarse, n_fine, k, torch.Generator().manual_seed(0))
    assert len(sets) == n_coarse and all(len(s) == k == len(set(s)) for s in sets)
    assert len({tuple(s) for s in sets}) == n_coarse
    uses = torch.bincount(torch.tensor([c for s in sets for c in s]), minlength=n_fine)
    slots = n_coarse * k
    assert int(uses.min()) == slots // n_fine and int(uses.max()) == -(-slots // n_fine)


def test_parent_sets_impossible_sizes_raise():
    with pytest.raises(ValueError, match="distinct sets"):
        assign_parent_sets(5, 2, 1, torch.Generator().manual_seed(0), max_tries=5)


def test_pad_parent_sets():
    assert pad_parent_sets([[3], [0, 2]], 3).tolist() == [[3, -1, -1], [0, 2, -1]]


def test_parent_sets_share_at_most_max_overlap_components():
    sets = assign_parent_sets(16, 24, 3, torch.Generator().manual_seed(0), max_overlap=1)
    assert all(len(set(a) & set(b)) <= 1 for i, a in enumerate(sets) for b in sets[i + 1:])
    uses = torch.bincount(torch.tensor([c for s in sets for c in s]), minlength=24)
    assert int(uses.min()) == int(uses.max()) == 2  # 48 slots over 24 concepts: every one shared
    with pytest.raises(ValueError, match="sharing at most 0"):
        assign_parent_sets(4, 6, 2, torch.Generator().manual_seed(0), max_tries=5, max_overlap=0)


def test_witness_sets_exact():
    # level 0: concept 0 <- level-1 {0, 1}; level 1 (over the finest three): PARENTS
    top = torch.tensor([[0, 1]])
    finest = lambda rows: torch.tensor(rows, dtype=torch.bool)  # noqa: E731
    assert torch.equal(witness_sets(["or", "or"], [top, PARENTS], 0, 0, 3),
                       finest([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]))
    assert torch.equal(witness_sets(["or", "and"], [top, PARENTS], 0, 0, 3),
                       finest([[1, 1, 0], [0, 1, 1]]))
    assert torch.equal(witness_sets(["and", "or"], [top, PARENTS], 0, 0, 3), finest([[1, 1, 0]]))
    for rows in (witness_sets(["or", "and"], [top, PARENTS], 0, 0, 3),):
        for row in rows:  # each witness alone switches the concept on
            mid = compose("and", row[None], PARENTS)
            assert compose("or", mid, top)[0, 0]
