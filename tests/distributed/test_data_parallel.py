"""Data-parallel training inside SAELens's trainer: two gloo ranks end with one process's weights."""

from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sae_lens import LoggingConfig
from sae_lens.saes.sae import TrainingSAE
from sae_lens.training.sae_trainer import SAETrainer, SAETrainerConfig

from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAEConfig,
    HierarchicalJumpReLUTrainingSAEConfig,
    HierarchicalTopKTrainingSAEConfig,
)
from sae_causal_plugin.distributed import data_parallel

GLOBAL_BATCH, STEPS, D_IN = 64, 60, 12
TERMS = dict(nested_coefficient=0.5, level_widths=[4, 12], revival_window=5, compression_max_pairs=8)
CONFIGS = {
    "batchtopk": lambda: HierarchicalBatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=24, k=2, **TERMS),
    "topk": lambda: HierarchicalTopKTrainingSAEConfig(d_in=D_IN, d_sae=24, k=2, **TERMS),
    "jumprelu": lambda: HierarchicalJumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=24, **TERMS),
}


def _global_batches():
    g = torch.Generator().manual_seed(3)
    scale = torch.linspace(0.2, 2.0, D_IN)  # unequal directions: some latents die, revival runs
    return [(torch.randn(GLOBAL_BATCH, D_IN, generator=g) * scale).relu() for _ in range(STEPS)]


def _train(arch: str, batches: list[torch.Tensor]) -> TrainingSAE:
    torch.manual_seed(0)
    sae = TrainingSAE.from_dict(CONFIGS[arch]().to_dict())
    rows = batches[0].shape[0]
    trainer_cfg = SAETrainerConfig(
        n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
        total_training_samples=rows * len(batches), device="cpu", autocast=False, lr=3e-3, lr_end=3e-3,
        lr_scheduler_name="constant", lr_warm_up_steps=0, adam_beta1=0.9, adam_beta2=0.999,
        lr_decay_steps=0, n_restart_cycles=1, train_batch_size_samples=rows,
        dead_feature_window=10, feature_sampling_window=20,
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=2,
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(batches))
    if dist.is_initialized():
        with data_parallel(sae):
            trainer.fit()
    else:
        trainer.fit()
    return sae


def _rank(rank: int, world: int, tmp: str, arch: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    torch.set_num_threads(1)
    try:
        part = GLOBAL_BATCH // world
        mine = [b[rank * part:(rank + 1) * part] for b in _global_batches()]
        sae = _train(arch, mine)
        torch.save({k: v.detach() for k, v in sae.state_dict().items()}, Path(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_two_ranks_end_with_the_weights_of_one_process(tmp_path, arch):
    torch.set_num_threads(1)
    single = _train(arch, _global_batches())
    assert (single.since_fired > 5).any(), "no latent died: the revival path went untested"
    mp.spawn(_rank, args=(2, str(tmp_path), arch), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    start = TrainingSAE.from_dict(CONFIGS[arch]().to_dict()).state_dict()
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], value.detach(), rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.allclose(single.W_dec, start["W_dec"])


def test_data_parallel_needs_a_process_group():
    sae = TrainingSAE.from_dict(CONFIGS["topk"]().to_dict())
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        with data_parallel(sae):
            pass
