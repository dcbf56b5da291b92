"""The hierarchical configs work unmodified in SAELens's three training paths (tiny sizes)."""

import json

import pytest
import torch
from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig, SAE
from sae_lens.training.sae_trainer import SAETrainer, SAETrainerConfig

from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAEConfig,
)

MINIMALITY_LOSSES = {"nested_loss", "compression_loss"}


def test_synthetic_sae_runner(tmp_path):
    from sae_lens.synthetic import HierarchyConfig, SyntheticModelConfig
    from sae_lens.synthetic.synthetic_sae_runner import SyntheticSAERunner, SyntheticSAERunnerConfig

    cfg = SyntheticSAERunnerConfig(
        synthetic_model=SyntheticModelConfig(
            num_features=32, hidden_dim=16, seed=0, bias=False,
            hierarchy=HierarchyConfig(total_root_nodes=4, branching_factor=2, max_depth=1)),
        sae=HierarchicalBatchTopKTrainingSAEConfig(d_in=16, d_sae=32, k=3),
        training_samples=60_000, batch_size=500, lr=1e-2, eval_samples=2_000, output_path=str(tmp_path / "out"),
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=5,
    )
    result = SyntheticSAERunner(cfg).run()
    assert result.final_eval is not None and 0.5 < result.final_eval.explained_variance <= 1.0
    loaded = SAE.load_from_disk(tmp_path / "out")
    assert loaded.cfg.architecture() == "jumprelu"
    assert loaded.cfg.metadata.training_architecture == "hierarchical_batchtopk"


class _Recorder:
    def __init__(self, provider):
        self.provider = provider
        self.seen = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.seen += 1
        return next(self.provider)


ALL_TERMS = dict(nested_coefficient=0.5, level_widths=[4, 12])


@pytest.mark.parametrize("cfg", [
    HierarchicalBatchTopKTrainingSAEConfig(d_in=12, d_sae=24, k=2, **ALL_TERMS),
    HierarchicalTopKTrainingSAEConfig(d_in=12, d_sae=24, k=2, **ALL_TERMS),
    HierarchicalJumpReLUTrainingSAEConfig(d_in=12, d_sae=24, **ALL_TERMS),
], ids=["batchtopk", "topk", "jumprelu"])
def test_sae_trainer_with_custom_data_provider_logs_each_minimality_term(cfg):
    from sae_lens.saes.sae import TrainingSAE

    torch.manual_seed(0)
    sae = TrainingSAE.from_dict(cfg.to_dict())

    def batches():
        while True:
            yield torch.randn(64, 12).relu()

    provider = _Recorder(batches())
    trainer_cfg = SAETrainerConfig(
        n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
        total_training_samples=64 * 40, device="cpu", autocast=False, lr=1e-3, lr_end=1e-3,
        lr_scheduler_name="constant", lr_warm_up_steps=0, adam_beta1=0.9, adam_beta2=0.999,
        lr_decay_steps=0, n_restart_cycles=1, train_batch_size_samples=64,
        dead_feature_window=10, feature_sampling_window=20,
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=2,
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider)
    logged = []
    original = trainer._train_step

    def spy(sae, sae_in):
        out = original(sae=sae, sae_in=sae_in)
        logged.append(set(out.losses))
        return out

    trainer._train_step = spy  # observe the losses dict SAELens itself logs
    trainer.fit()
    assert provider.seen >= 40
    assert MINIMALITY_LOSSES <= logged[-1]
    assert "compression" in trainer.coefficient_schedulers


def test_language_model_runner_with_tiny_model_and_in_memory_dataset(tmp_path):
    from datasets import Dataset
    from sae_lens import LanguageModelSAETrainingRunner
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    model = HookedTransformer(HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=16, d_head=8, n_heads=2, d_vocab=50, act_fn="relu",
        d_mlp=32, attn_only=False))
    tokens = torch.randint(1, 50, (64, 16))
    dataset = Dataset.from_dict({"input_ids": tokens.tolist()})
    cfg = LanguageModelSAERunnerConfig(
        sae=HierarchicalTopKTrainingSAEConfig(d_in=16, d_sae=32, k=3),
        model_name="tiny", hook_name="blocks.0.hook_resid_post", dataset_path="in-memory",
        is_dataset_tokenized=True, streaming=False, context_size=16, training_tokens=4096,
        train_batch_size_tokens=128, store_batch_size_prompts=8, n_batches_in_buffer=16,
        prepend_bos=False, device="cpu", output_path=str(tmp_path / "lm"), checkpoint_path=None,
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=2,
        dead_feature_window=5, feature_sampling_window=10, verbose=False,
    )
    sae = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=dataset).run()
    assert sae.cfg.architecture() == "hierarchical_topk"
    out_dirs = [p for p in (tmp_path / "lm").rglob("cfg.json")]
    assert out_dirs, "the runner saved no SAE"
    saved = out_dirs[0].parent
    assert json.loads((saved / "cfg.json").read_text())["architecture"] == "topk"
    assert json.loads((saved / "cfg.json").read_text())["metadata"]["training_architecture"] == "hierarchical_topk"
