"""Registration idempotence and save -> load in a fresh process that never imports the plugin."""

import importlib
import json
import subprocess
import sys
import textwrap

from pathlib import Path

import pytest
import torch
from sae_lens.saes.topk_sae import TopKTrainingSAE
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

import sae_causal_plugin
from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAE,
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAE,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAE,
    HierarchicalTopKTrainingSAEConfig,
)
from sae_causal_plugin.saes.registration import register_architectures

NAMES = ("hierarchical_batchtopk", "hierarchical_topk", "hierarchical_jumprelu")


def test_architectures_registered_for_training_and_inference():
    for name in NAMES:
        assert name in SAE_TRAINING_CLASS_REGISTRY
        assert name in SAE_CLASS_REGISTRY


def test_registration_is_idempotent_across_reload():
    register_architectures()
    importlib.reload(sae_causal_plugin)
    importlib.reload(sae_causal_plugin)
    cls, cfg_cls = SAE_TRAINING_CLASS_REGISTRY["hierarchical_topk"]
    assert cls.__name__ == "HierarchicalTopKTrainingSAE"
    assert cfg_cls.architecture() == "hierarchical_topk"


def test_foreign_registration_under_our_name_is_an_error():
    saved = SAE_TRAINING_CLASS_REGISTRY["hierarchical_topk"]
    SAE_TRAINING_CLASS_REGISTRY["hierarchical_topk"] = (torch.nn.Linear, torch.nn.Linear)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_architectures()
    finally:
        SAE_TRAINING_CLASS_REGISTRY["hierarchical_topk"] = saved


def test_config_round_trips_through_sae_lens_from_dict():
    from sae_lens.saes.sae import TrainingSAEConfig

    cfg = HierarchicalBatchTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2, compression_margin=0.3)
    again = TrainingSAEConfig.from_dict(cfg.to_dict())
    assert isinstance(again, HierarchicalBatchTopKTrainingSAEConfig)
    assert again.compression_margin == 0.3 and again.k == 2


def _trained(sae, d_in, steps=30):
    """A few optimisation steps through the SAE's own training forward pass."""
    from sae_lens.saes.sae import TrainStepInput

    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    torch.manual_seed(0)
    coeffs = {k: (v.value if hasattr(v, "value") else v) for k, v in sae.get_coefficients().items()}
    for step in range(steps):
        x = torch.randn(64, d_in).relu()
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients=coeffs, dead_neuron_mask=None, n_training_steps=step,
            is_logging_step=False))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return sae


@pytest.mark.parametrize("make", [
    lambda: HierarchicalBatchTopKTrainingSAE(HierarchicalBatchTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2)),
    lambda: HierarchicalTopKTrainingSAE(HierarchicalTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2)),
    lambda: HierarchicalJumpReLUTrainingSAE(HierarchicalJumpReLUTrainingSAEConfig(d_in=8, d_sae=16)),
], ids=NAMES)
def test_saved_sae_loads_in_stock_sae_lens_without_the_plugin(tmp_path, make):
    sae = _trained(make(), 8)
    sae.eval()
    out_dir = tmp_path / "sae"
    sae.save_inference_model(out_dir)
    x = torch.randn(32, 8).relu()
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import json, sys, torch
        from sae_lens import SAE
        sae = SAE.load_from_disk({str(out_dir)!r})
        assert "sae_causal_plugin" not in sys.modules
        x = torch.load({str(tmp_path / 'x.pt')!r})
        torch.save({{"W_dec": sae.W_dec.detach(), "enc": sae.encode(x).detach()}}, {str(tmp_path / 'out.pt')!r})
        print(json.dumps({{"arch": sae.cfg.architecture()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    stock = torch.load(tmp_path / "out.pt")
    # same decoder (up to the decoder-norm fold SAELens applies when saving)
    from sae_lens import SAE
    mine = SAE.load_from_disk(out_dir)
    assert torch.allclose(stock["W_dec"], mine.W_dec)
    unit_saved = stock["W_dec"] / stock["W_dec"].norm(dim=-1, keepdim=True)
    unit_train = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    assert torch.allclose(unit_saved, unit_train.detach(), atol=1e-5)
    arch = json.loads(proc.stdout.strip().splitlines()[-1])["arch"]
    assert arch in ("jumprelu", "topk")
    if arch == "topk":  # TopK encodings are batch-independent: the stock SAE reproduces them
        fired_train = sae.encode(x) != 0
        assert torch.equal(stock["enc"] != 0, fired_train)
    assert sorted(p.name for p in out_dir.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    details = json.loads((out_dir / "cfg.json").read_text())["metadata"]["training_architecture_details"]
    assert details["compression_margin"] == sae.cfg.compression_margin


def test_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    sae = HierarchicalTopKTrainingSAE(HierarchicalTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2))
    target = tmp_path / "sae"

    def broken(self, path):
        (Path(path) / "cfg.json").write_text("{")  # half of the folder written, then the disk fills
        raise OSError("disk full")

    monkeypatch.setattr(TopKTrainingSAE, "save_inference_model", broken)
    with pytest.raises(OSError, match="disk full"):
        sae.save_inference_model(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
