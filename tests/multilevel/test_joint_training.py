"""Joint training glue: SAELens losses dict, shared batches, save/load round trip, bad input."""

import json

import pytest
import torch
from sae_lens import SAE, BatchTopKTrainingSAEConfig, StandardTrainingSAEConfig, TopKTrainingSAEConfig

from sae_causal_plugin.multilevel import (
    CrossLevelConfig,
    MultiLevelTrainer,
    load_multilevel,
    make_level_saes,
    save_multilevel,
    train_level_saes,
    trainer_config,
)
from sae_causal_plugin.synthetic import HierarchicalSelectionConfig, HierarchicalSelectionModel

WORLD = HierarchicalSelectionModel(HierarchicalSelectionConfig([3, 6], parents=2, hidden_dims=[6, 8],
                                                               max_prob=0.3, min_prob=0.1), seed=0)


def level_cfgs(k=(0.8, 1.2), dims=(6, 8), widths=(3, 6)):
    return [BatchTopKTrainingSAEConfig(d_in=d, d_sae=w, k=kk) for d, w, kk in zip(dims, widths, k)]


def test_cross_level_terms_appear_in_saelens_losses_and_train_the_map():
    saes = make_level_saes(level_cfgs(), CrossLevelConfig(selection_warm_up_steps=0))
    before = saes[0].cross_selection_logits.detach().clone()
    outputs = {}
    original = saes[0].training_forward_pass

    def spy(step_input):
        outputs["coarse"] = original(step_input)
        return outputs["coarse"]

    saes[0].training_forward_pass = spy
    train_level_saes(saes, WORLD.batches(64, seed=1), total_samples=64 * 5, batch_size=64)
    losses = outputs["coarse"].losses
    assert {"cross_selection_loss", "cross_selection_fit_loss", "cross_graph_sparsity_loss"} <= set(losses)
    assert not torch.equal(before, saes[0].cross_selection_logits.detach())
    assert saes[1].cross_selection_logits is None  # the finest level has no map
    assert set(saes[1].cross_readouts) == {"0"}
    assert set(saes[0].cross_readouts) == {"1"}  # default: read out every other level
    coarser = make_level_saes(level_cfgs(), CrossLevelConfig(explain_levels="coarser"))
    assert set(coarser[1].cross_readouts) == {"0"} and not len(coarser[0].cross_readouts)
    assert saes[0].cross_selection_map().shape == (6, 3)


def test_baseline_runs_the_same_loop_without_cross_level_terms():
    saes = make_level_saes(level_cfgs(), CrossLevelConfig().independent())
    assert saes[0].cross_selection_logits is None and not len(saes[1].cross_readouts)
    assert not any(name.startswith("cross") for name in saes[0].get_coefficients())
    train_level_saes(saes, WORLD.batches(64, seed=1), total_samples=64 * 3, batch_size=64)


def test_each_level_reads_the_same_paired_batch():
    saes = make_level_saes(level_cfgs())
    seen = []
    original = saes[1].training_forward_pass

    def spy(step_input):
        seen.append((step_input.sae_in.clone(), saes[1].context.batch[1].clone()))
        return original(step_input)

    saes[1].training_forward_pass = spy
    train_level_saes(saes, WORLD.batches(32, seed=2), total_samples=32 * 3, batch_size=32)
    assert len(seen) == 3 and all(torch.equal(a, b) for a, b in seen)


def _trained_weights(batches, cfgs=None):
    torch.manual_seed(0)
    saes = make_level_saes(cfgs or level_cfgs())
    before = [s.W_dec.detach().clone() for s in saes]
    train_level_saes(saes, batches, total_samples=40 * 2, batch_size=40, progress=False)
    return before, [s.W_dec.detach().clone() for s in saes]


def test_token_aligned_batches_are_flattened_for_training():
    def token_batches():
        for x in WORLD.batches(40, seed=3):
            yield [xi.reshape(4, 10, -1) for xi in x]

    _, from_tokens = _trained_weights(token_batches())
    before, from_rows = _trained_weights(WORLD.batches(40, seed=3))
    # [batch, pos, d] batches train exactly as the same rows given flat
    assert all(torch.equal(a, b) for a, b in zip(from_tokens, from_rows))
    assert not any(torch.equal(a, b) for a, b in zip(before, from_rows))


def test_save_and_load_round_trip(tmp_path):
    saes = make_level_saes(level_cfgs())
    train_level_saes(saes, WORLD.batches(64, seed=1), total_samples=64 * 3, batch_size=64)
    save_multilevel(saes, tmp_path / "run")
    loaded, maps = load_multilevel(tmp_path / "run")
    assert all(isinstance(s, SAE) for s in loaded) and loaded[0].cfg.architecture() == "jumprelu"
    unit = torch.nn.functional.normalize
    for a, b in zip(saes, loaded):  # SAELens folds decoder norms into the encoder when saving
        assert torch.allclose(unit(a.W_dec.detach(), dim=1), unit(b.W_dec.detach(), dim=1), atol=1e-6)
    assert torch.allclose(maps[0], saes[0].cross_selection_map().detach()) and maps[1] is None
    # the stock SAELens directory holds no cross-level tensors
    plain = SAE.load_from_disk(str(tmp_path / "run" / "level_0"))
    assert not any(k.startswith("cross") for k in plain.state_dict())
    meta = json.loads((tmp_path / "run" / "level_0" / "cross_level.json").read_text())
    assert meta["selection_shape"] == [6, 3] and meta["fine_level"] == 1


def test_topk_levels_train_too():
    cfgs = [TopKTrainingSAEConfig(d_in=6, d_sae=3, k=1), TopKTrainingSAEConfig(d_in=8, d_sae=6, k=2)]
    torch.manual_seed(0)
    saes = make_level_saes(cfgs)
    before = [s.W_dec.detach().clone() for s in saes]
    trained = train_level_saes(saes, WORLD.batches(32, seed=1), total_samples=32 * 2, batch_size=32, progress=False)
    assert [s.cfg.architecture() for s in trained] == ["topk", "topk"]
    assert not any(torch.equal(a, s.W_dec.detach()) for a, s in zip(before, trained))
    assert saes[0].cross_selection_map().shape == (6, 3)  # the cross-level map works on TopK levels too


@pytest.mark.parametrize("case,match", [
    ("one_level", "at least two levels"),
    ("samples", "not paired"),
    ("d_in", r"level_saes\[1\] has d_in=8 but data batch\[1\] has width 5"),
    ("levels", "3 levels"),
    ("architecture", "architecture 'standard'"),
    ("cross", "selection_coefficient must be"),
])
def test_bad_input_fails_before_training(case, match):
    cfgs, cross = level_cfgs(), CrossLevelConfig()
    batches = WORLD.batches(16, seed=0)
    if case == "one_level":
        with pytest.raises(ValueError, match=match):
            make_level_saes(cfgs[:1])
        return
    if case == "architecture":
        with pytest.raises(ValueError, match=match):
            make_level_saes([StandardTrainingSAEConfig(d_in=6, d_sae=3), cfgs[1]])
        return
    if case == "cross":
        with pytest.raises(ValueError, match=match):
            make_level_saes(cfgs, CrossLevelConfig(selection_coefficient=-1.0))
        return
    saes = make_level_saes(cfgs, cross)
    if case == "samples":
        batches = iter([[torch.randn(16, 6), torch.randn(15, 8)]])
    elif case == "d_in":
        batches = iter([[torch.randn(16, 6), torch.randn(16, 5)]])
    elif case == "levels":
        batches = iter([[torch.randn(16, 6), torch.randn(16, 8), torch.randn(16, 8)]])
    with pytest.raises(ValueError, match=match):
        MultiLevelTrainer(saes, batches, trainer_config(64, 16))
    assert saes[0].n_steps == 0


def test_k_anneals_from_start_multiple_to_configured_k():
    saes = make_level_saes(level_cfgs(), CrossLevelConfig(k_start_mult=3.0, k_anneal_stop=0.5))
    sae = saes[1]
    sae.total_steps = 100
    expected = {0: 3.6, 25: 2.4, 50: 1.2, 90: 1.2}  # k = 1.2 * (3 - 2 * min(1, step / 50))
    for step, k in expected.items():
        sae.n_steps = step
        sae.anneal_k()
        assert sae.activation_fn.k == pytest.approx(k)


def test_k_annealing_is_kept_by_the_independent_baseline_and_validated():
    assert CrossLevelConfig(k_start_mult=2.0).independent().k_start_mult == 2.0
    with pytest.raises(ValueError, match="k_start_mult must be"):
        CrossLevelConfig(k_start_mult=0.5).validate()
