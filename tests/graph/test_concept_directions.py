"""Least-squares concept directions: the reading point's linear separability, on plain tensors."""

import pytest
import torch

from sae_causal_plugin.graph.concept_directions import concept_directions


def _rows(directions: torch.Tensor, noise: float, n: int = 4000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    present = torch.rand(n, directions.shape[0], generator=g) < 0.3
    acts = present.float() @ directions + 0.5 + noise * torch.randn(n, directions.shape[1], generator=g)
    return acts, present


def test_orthogonal_concepts_are_recovered_with_r2_one_and_no_coherence():
    directions = 3.0 * torch.eye(8)[:5]
    fit = concept_directions(*_rows(directions, noise=0.0))
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.max_abs_cos == pytest.approx(0.0, abs=1e-9)
    assert fit.condition == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(fit.directions, directions, atol=1e-5)
    assert set(fit.figures()) == {"r2", "max_abs_cos", "condition", "n_rows"}


def test_collinear_concepts_and_unexplained_variance_show_in_the_figures():
    base = torch.eye(8)[:5]
    directions = base.clone()
    directions[1] = 0.98 * base[0] + 0.2 * base[1]  # nearly the same direction as concept 0
    fit = concept_directions(*_rows(directions, noise=1.0))
    assert fit.max_abs_cos > 0.95
    assert fit.condition > 5  # orthogonal directions: 1
    assert fit.r2 < 0.3  # unit noise in 8 dims swamps unit-norm concepts present 30 % of the time
    clean = concept_directions(*_rows(base, noise=0.05))
    assert clean.r2 > 0.9 and clean.max_abs_cos < 0.05


def test_bad_input_is_refused_with_what_to_change():
    acts, present = _rows(torch.eye(4), noise=0.1, n=200)
    with pytest.raises(ValueError, match="same rows"):
        concept_directions(acts[:10], present)
    with pytest.raises(ValueError, match="bool"):
        concept_directions(acts, present.float())
    with pytest.raises(ValueError, match="more activation rows"):
        concept_directions(acts[:4], present[:4])
    nan = acts.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN values \\(first at row 3\\)"):
        concept_directions(nan, present)
    never = present.clone()
    never[:, 2] = False
    with pytest.raises(ValueError, match=r"concepts \[2\] are present on no row or on every row"):
        concept_directions(acts, never)
