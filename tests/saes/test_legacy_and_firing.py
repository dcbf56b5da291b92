"""Folders and configs written before the config cleanup still load; the firing thresholds did not move.

``data/legacy_sae`` (with its ``hierarchy.json``) and ``data/legacy_training_cfg.json`` were written
by the code before the selection terms and the hierarchy tracking were removed: a tiny
``hierarchical_batchtopk`` SAE with the nested term on. The expected thresholds below were computed
with the six ``firing_threshold`` methods the SAE classes had before they were merged.
"""

import json
from pathlib import Path

import pytest
import torch
from sae_lens import SAE, BatchTopKTrainingSAEConfig, JumpReLUTrainingSAEConfig, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainingSAE

from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAE,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAE,
    HierarchicalTopKTrainingSAEConfig,
)
from sae_causal_plugin.cli.errors import UserError
from sae_causal_plugin.multilevel.sae import (
    CrossLevelBatchTopKTrainingSAE,
    CrossLevelJumpReLUTrainingSAE,
    CrossLevelTopKTrainingSAE,
)

DATA = Path(__file__).parent / "data"


def test_legacy_sae_folder_with_hierarchy_json_loads_in_sae_lens_and_the_cli():
    from sae_causal_plugin.cli.sae_dirs import load_sae_dir

    assert (DATA / "legacy_sae" / "hierarchy.json").is_file()
    for sae in (SAE.load_from_disk(str(DATA / "legacy_sae")), load_sae_dir(str(DATA / "legacy_sae"))):
        assert sae.cfg.architecture() == "jumprelu" and sae.cfg.d_sae == 16
        torch.manual_seed(0)
        codes = sae.encode(torch.randn(4, 8).relu())
        # figures of the same folder loaded before the cleanup
        assert int((codes > 0).sum()) == 21
        assert codes.sum().item() == pytest.approx(0.12647105753421783, abs=1e-6)


def test_legacy_training_config_loads_when_its_removed_terms_were_off():
    legacy = json.loads((DATA / "legacy_training_cfg.json").read_text())
    assert {"selection_coefficient", "hierarchy_update_every", "selection_edges"} <= set(legacy)
    sae = TrainingSAE.from_dict(legacy)
    assert isinstance(sae, HierarchicalBatchTopKTrainingSAE)
    assert (sae.cfg.nested_coefficient, sae.cfg.level_widths, sae.cfg.compression_margin) == (3.0, [4, 12], 0.3)
    assert not hasattr(sae.cfg, "hierarchy_update_every")


@pytest.mark.parametrize("name", ["selection_coefficient", "graph_sparsity_coefficient"])
def test_legacy_config_that_switched_a_removed_term_on_is_refused_saying_what_to_change(name):
    legacy = {**json.loads((DATA / "legacy_training_cfg.json").read_text()), name: 0.1}
    with pytest.raises(ValueError, match=rf"{name}=0.1 switches on .* delete {name} from the config"):
        TrainingSAE.from_dict(legacy)


def test_train_config_file_drops_removed_keys_that_were_off_and_refuses_those_that_were_on(tmp_path):
    from sae_causal_plugin.cli.config import load_train_config

    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model_name": "m", "hook_name": "h", "dataset_path": "d",
                                "hierarchy_update_every": 0, "sae": {"d_sae": 32, "selection_edges": "map"}}))
    assert load_train_config(path).sae == {"d_sae": 32}
    path.write_text(json.dumps({"model_name": "m", "hook_name": "h", "dataset_path": "d",
                                "sae": {"d_sae": 32, "selection_coefficient": 0.1}}))
    with pytest.raises(UserError, match="'sae.selection_coefficient': selection_coefficient=0.1 switches on"):
        load_train_config(path)


# torch.manual_seed(0); torch.randn(3, 5): the pre-activations every case below sees
PRE = torch.tensor([
    [1.5409960746765137, -0.293428897857666, -2.1787893772125244, 0.5684312582015991, -1.0845223665237427],
    [-1.3985954523086548, 0.40334683656692505, 0.8380263447761536, -0.7192575931549072, -0.40334352850914],
    [-0.5966353416442871, 0.18203648924827576, -0.8566746115684509, 1.1006041765213013, -1.0711873769760132],
])
JUMPRELU_THRESHOLD = torch.tensor(
    [0.06135062128305435, -0.2831587493419647, 0.1865573227405548, -0.4459976553916931, -0.7545538544654846]).exp()


@pytest.mark.parametrize("make", [
    lambda: HierarchicalTopKTrainingSAE(HierarchicalTopKTrainingSAEConfig(d_in=4, d_sae=5, k=2)),
    lambda: CrossLevelTopKTrainingSAE(TopKTrainingSAEConfig(d_in=4, d_sae=5, k=2)),
], ids=["hierarchical", "cross_level"])
def test_topk_firing_threshold_is_each_samples_kth_largest(make):
    threshold = make().firing_threshold(PRE)
    assert threshold.shape == (3, 1)
    assert threshold.flatten().tolist() == pytest.approx(
        [0.5684312582015991, 0.40334683656692505, 0.18203648924827576], abs=1e-7)


@pytest.mark.parametrize("make", [
    lambda: HierarchicalBatchTopKTrainingSAE(HierarchicalBatchTopKTrainingSAEConfig(d_in=4, d_sae=5, k=2)),
    lambda: CrossLevelBatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=4, d_sae=5, k=2)),
], ids=["hierarchical", "cross_level"])
def test_batchtopk_firing_threshold_is_the_running_scalar_in_the_inputs_dtype(make):
    sae = make()
    sae.topk_threshold.fill_(0.3)
    threshold = sae.firing_threshold(PRE)
    assert threshold.shape == () and threshold.item() == pytest.approx(0.30000001192092896, abs=1e-7)
    assert sae.firing_threshold(PRE.double()).dtype == torch.float64


@pytest.mark.parametrize("make", [
    lambda: HierarchicalJumpReLUTrainingSAE(HierarchicalJumpReLUTrainingSAEConfig(d_in=4, d_sae=5)),
    lambda: CrossLevelJumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=4, d_sae=5)),
], ids=["hierarchical", "cross_level"])
def test_jumprelu_firing_threshold_is_the_learned_per_latent_threshold(make):
    sae = make()
    with torch.no_grad():
        sae.threshold.copy_(JUMPRELU_THRESHOLD)
    threshold = sae.firing_threshold(PRE)
    assert threshold.shape == (5,)
    assert threshold.tolist() == pytest.approx(
        [1.0632716417312622, 0.7534002065658569, 1.2050937414169312, 0.6401852965354919, 0.4702203571796417],
        abs=1e-7)
