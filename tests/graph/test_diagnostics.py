"""diagnose_hierarchy on the 14-feature synthetic hierarchy of conftest.synthetic_setup.

Feature numbering (breadth-first): roots 0, 1; children 2, 3 (of 0), 4, 5 (of 1); leaves
6, 7 (of 2), 8, 9 (of 3), 10, 11 (of 4), 12, 13 (of 5); 14, 15 outside the hierarchy.
Every firing has magnitude 1, so the conftest SAE's latents fire exactly with their features.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import torch
from sae_lens.synthetic import ConstantFiringProbabilityConfig, SyntheticModel, SyntheticModelConfig

import sae_causal_plugin
from sae_causal_plugin.graph import (
    ConceptGraph,
    HierarchyDiagnosis,
    diagnose_hierarchy,
    evaluate_hierarchy_recovery,
    true_hierarchy_graph,
)
from sae_causal_plugin.graph.diagnostics import WRONG_EDGE_KINDS

from tests.helpers import identity_sae


def _graph(*edges) -> ConceptGraph:
    g = ConceptGraph()
    for c, p in edges:
        g.add_edge(c, p)
    return g


def _unmatch(sae, latent: int) -> None:
    """Point ``latent``'s decoder row away from every feature (|cos| < 0.9)."""
    with torch.no_grad():
        sae.W_dec[latent] = torch.randn(32, generator=torch.Generator().manual_seed(3))


def _seeded(seed, fn, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def _features(model, seed: int, n: int) -> torch.Tensor:
    """The feature firings a call with ``num_samples=n <= batch_size`` sees after ``torch.manual_seed(seed)``."""
    return _seeded(seed, model.sample_with_features, n)[1] > 0


def test_wrong_edges_by_kind(synthetic_setup):
    model, sae = synthetic_setup
    _unmatch(sae, 13)
    graph = _graph(
        (2, 0), ("L0:12", "L0:5"),  # correct (the str id uses the index after ':')
        (1, 4),  # reversed: feature 4 is a child of feature 1
        (6, 0),  # skip_to_ancestor: 0 is 6's grandparent
        (6, 7),  # sibling: both children of 2
        (8, 1), (14, 15),  # unrelated
        (13, 5),  # unmatched: latent 13 has no feature (a true edge all the same)
    )
    d = diagnose_hierarchy(graph, sae, model, num_samples=2000, min_cosine=0.9, print_report=False)
    assert d.wrong_edges == {"reversed": 1, "skip_to_ancestor": 1, "sibling": 1, "unrelated": 2, "unmatched": 1}
    assert list(d.wrong_edges) == list(WRONG_EDGE_KINDS)
    assert d.n_correct_edges == 2 and d.n_recovered_edges == 8 and d.n_recovered_edges_matched == 7
    assert (d.n_features, d.n_features_with_latent) == (16, 15)
    assert (d.n_hierarchy_features, d.n_hierarchy_features_with_latent) == (14, 13)
    assert (d.n_true_edges, d.n_true_edges_matched) == (12, 11)


def test_matched_precision_and_recall(synthetic_setup):
    model, sae = synthetic_setup
    _unmatch(sae, 6)
    graph = _graph((2, 0), (3, 0), (6, 2), (8, 0), (14, 15))
    d = diagnose_hierarchy(graph, sae, model, num_samples=2000, min_cosine=0.9, print_report=False)
    assert d.precision == 2 / 5 and d.recall == 2 / 12
    assert d.matched_precision == 2 / 4 and d.matched_recall == 2 / 11
    assert d.matched_f1 == pytest.approx(2 * 0.5 * (2 / 11) / (0.5 + 2 / 11))
    assert d.wrong_edges["unmatched"] == 1 and d.wrong_edges["skip_to_ancestor"] == 1
    assert d.n_observable_true_edges == 12


def test_true_dictionary_and_true_graph_are_perfect(synthetic_setup):
    model, sae = synthetic_setup
    d = diagnose_hierarchy(true_hierarchy_graph(model), sae, model, num_samples=3000, print_report=False)
    assert d.matched_precision == d.matched_recall == d.precision == d.recall == 1.0
    assert d.wrong_edges == dict.fromkeys(WRONG_EDGE_KINDS, 0)
    assert d.n_features_with_latent == 16 and d.n_true_edges_matched == 12
    assert d.absorption == 0.0 and d.absorption_factorised is None
    assert d.parent_with_child_recall == d.parent_without_child_recall == 1.0
    assert len(d.edge_firing) == 12 and all(e.child_latent == e.child_feature for e in d.edge_firing)


def test_parent_silent_when_one_child_is_present(synthetic_setup):
    model, sae = synthetic_setup
    fv = model.feature_dict.feature_vectors
    with torch.no_grad():  # latent 0 reads feature 0 minus 10 x feature 2: off whenever 2 fires
        sae.W_enc[:, 0] = fv[0] - 10 * fv[2]
    n = 3000
    d = _seeded(7, diagnose_hierarchy, ConceptGraph(), sae, model, num_samples=n, print_report=False)
    f = _features(model, 7, n)
    edges = {(e.child_feature, e.parent_feature): e for e in d.edge_firing}
    e20, e30, e41 = edges[2, 0], edges[3, 0], edges[4, 1]
    assert (e20.parent_with_child, e20.parent_without_child) == (0.0, 1.0)
    assert e20.n_with_child == int((f[:, 0] & f[:, 2]).sum())
    assert e20.n_without_child == int((f[:, 0] & ~f[:, 2]).sum())
    both03 = f[:, 0] & f[:, 3]
    assert e30.parent_with_child == int((both03 & ~f[:, 2]).sum()) / int(both03.sum())
    assert (e41.parent_with_child, e41.parent_without_child, e41.parent_latent) == (1.0, 1.0, 1)
    # pooled over edges: parent 0 is silent exactly in the samples where feature 2 fires
    with_child = sum(e.n_with_child for e in d.edge_firing)
    lost = int((f[:, 0] & f[:, 2] & f[:, 3]).sum()) + e20.n_with_child
    assert d.parent_with_child_recall == (with_child - lost) / with_child


class _LiftedCode:
    """A fake selection code: the SAE's code with each child's activation added to its parent."""

    def __init__(self, sae, edges) -> None:
        self.sae, self.edges, self.calls = sae, sorted(edges, reverse=True), 0  # leaves first

    def encode(self, x):
        self.calls += 1
        out = self.sae.encode(x).clone()
        for c, p in self.edges:
            out[:, p] += out[:, c]
        return out


def test_factorised_absorption_uses_the_code(synthetic_setup):
    model, sae = synthetic_setup
    with torch.no_grad():
        sae.threshold[0] = 100.0  # latent 0 (root feature 0) never fires
    edges = set(true_hierarchy_graph(model).edges)
    code = _LiftedCode(sae, edges)
    n = 3000
    d = _seeded(3, diagnose_hierarchy, ConceptGraph(), sae, model, code=code, num_samples=n, print_report=False)
    assert code.calls == 1 and d.absorption_factorised == 0.0
    f = _features(model, 3, n)
    expected = int(f[:, 2].sum() + f[:, 3].sum()) / int(sum(f[:, c].sum() for c, _ in edges))
    assert d.absorption == expected
    same = _seeded(3, evaluate_hierarchy_recovery, ConceptGraph(), sae, model, num_samples=n)
    assert same["absorption"] == d.absorption
    silent = SimpleNamespace(encode=lambda x: torch.zeros(len(x), 16))
    d = diagnose_hierarchy(ConceptGraph(), sae, model, code=silent, num_samples=n, batch_size=1000, print_report=False)
    assert d.absorption_factorised == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_cosine": -0.1}, "min_cosine"),
        ({"min_cosine": 1.5}, "min_cosine"),
        ({"num_samples": 0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
        ({"code": object()}, "code: object has no encode"),
        ({"sae": SimpleNamespace(encode=lambda x: x)}, "sae: needs a 2-D decoder matrix W_dec"),
        ({"sae": identity_sae(8)}, r"sae: d_in=8 .*hidden_dim=32"),
    ],
)
def test_bad_inputs_raise_before_sampling(synthetic_setup, monkeypatch, kwargs, match):
    model, sae = synthetic_setup

    def no_sampling(n):
        raise AssertionError("sampled before checking the inputs")

    monkeypatch.setattr(model, "sample_with_features", no_sampling)
    kwargs = dict(kwargs)
    use_sae = kwargs.pop("sae", sae)
    with pytest.raises(ValueError, match=match):
        diagnose_hierarchy(ConceptGraph(), use_sae, model, print_report=False, **kwargs)


def test_synthetic_model_without_hierarchy_raises():
    flat = SyntheticModel(SyntheticModelConfig(
        num_features=4, hidden_dim=8, firing_probability=ConstantFiringProbabilityConfig(probability=0.3), seed=0
    ))
    with pytest.raises(ValueError, match="synthetic_model has no hierarchy"):
        diagnose_hierarchy(ConceptGraph(), identity_sae(8), flat, print_report=False)


def test_to_dict_is_json_and_format_names_every_kind(synthetic_setup, capsys):
    model, sae = synthetic_setup
    graph = _graph((2, 0), (1, 4), (6, 0), (6, 7), (8, 1), (13, 99))
    d = diagnose_hierarchy(graph, sae, model, num_samples=500, batch_size=200)
    printed = capsys.readouterr().out
    assert printed.strip() == d.format()
    for kind in WRONG_EDGE_KINDS:
        assert f"    {kind} " in printed
    assert re.search(r"absorption \(factorised\) +n/a\n", printed)
    loaded = json.loads(json.dumps(d.to_dict()))
    assert loaded["wrong_edges"] == {"reversed": 1, "skip_to_ancestor": 1, "sibling": 1, "unrelated": 1, "unmatched": 1}
    assert loaded["absorption_factorised"] is None and loaded["matched_precision"] == 1 / 5
    assert set(loaded["edge_firing"][0]) == {
        "child_feature", "parent_feature", "child_latent", "parent_latent",
        "parent_with_child", "parent_without_child", "n_with_child", "n_without_child",
    }
    assert isinstance(loaded["edge_firing"][0]["parent_with_child"], float)
    # one sample: most rates have no support and are nan, which JSON still carries
    nan_d = _seeded(0, diagnose_hierarchy, graph, sae, model, num_samples=1, print_report=False)
    text = json.dumps(nan_d.to_dict())
    assert "NaN" in text and json.dumps(json.loads(text)) == text


def test_exported_from_the_package():
    assert sae_causal_plugin.diagnose_hierarchy is diagnose_hierarchy
    assert sae_causal_plugin.HierarchyDiagnosis is HierarchyDiagnosis
    assert {"diagnose_hierarchy", "HierarchyDiagnosis"} <= set(sae_causal_plugin.__all__)
