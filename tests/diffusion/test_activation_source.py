"""Activation streams for SAELens: noised latents, trajectories, pairing, SAETrainer, shards."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import DDPMScheduler
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, SAETrainer
from sae_lens.config import SAETrainerConfig

from sae_causal_plugin.diffusion import (
    DiffusionActivationSource,
    HookedDiffusionPipeline,
    ShardedActivationSource,
    hook_denoiser,
    noised_activations,
    save_activation_shards,
    to_tokens,
    trajectory_activations,
)
from .tiny import tiny_unet2d

MID = "mid_block.hook_out"


@pytest.fixture(scope="module")
def unet():
    return hook_denoiser(tiny_unet2d(sample_size=8))


@pytest.fixture(scope="module")
def scheduler():
    return DDPMScheduler(num_train_timesteps=1000)


def _latents(n_batches: int | None = None, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    it = itertools.count() if n_batches is None else range(n_batches)
    for _ in it:
        yield torch.randn(batch, 3, 8, 8, generator=g)


def test_noised_chunk_matches_manual_forward_noising(unet, scheduler):
    x0 = next(_latents(1))
    chunk = next(noised_activations(unet, scheduler, [x0], MID, [899, 100], seed=3))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.full((2,), 100, dtype=torch.long)
    with torch.no_grad():
        _, cache = unet.run_with_cache(
            scheduler.add_noise(x0, noise, t), timestep=t, names_filter=MID
        )
    assert set(chunk) == {(MID, 899), (MID, 100)}
    assert chunk[MID, 100].shape == (2 * 4 * 4, 16)  # B*H*W tokens, 16 channels
    assert torch.equal(chunk[MID, 100], to_tokens(cache[MID]))
    assert not torch.equal(chunk[MID, 899], chunk[MID, 100])


def test_to_tokens_layout():
    fmap = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    tok = to_tokens(fmap)
    assert tok.shape == (8, 3) and torch.equal(tok[5], fmap[1, :, 0, 1])
    assert to_tokens(torch.zeros(2, 5, 4)).shape == (10, 4)


def test_paired_batches_align_tokens_across_timesteps(unet, scheduler):
    chunks = list(noised_activations(unet, scheduler, _latents(2), MID, [899, 500, 100]))
    src = DiffusionActivationSource(
        iter(chunks), batch_size=8, buffer_size=32, mix_fraction=0.5, paired=True
    )
    full = {t: torch.cat([c[MID, t] for c in chunks]) for t in (899, 500, 100)}
    for _ in range(3):
        batch = next(src)
        assert set(batch) == {899, 500, 100} and batch[899].shape == (8, 16)
        rows = [int((full[899] == r).all(1).nonzero()[0]) for r in batch[899]]
        assert torch.equal(batch[500], full[500][rows]) and torch.equal(batch[100], full[100][rows])


def test_flat_source_trains_batchtopk_sae(unet, scheduler):
    src = DiffusionActivationSource.noised(
        unet, scheduler, _latents(), MID, [899, 100], batch_size=32, buffer_size=128
    )
    assert src.d_in == 16
    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=16, d_sae=32, k=4))
    src.check_sae(sae)
    before = sae.W_dec.detach().clone()
    cfg = SAETrainerConfig(
        total_training_samples=4 * 32, train_batch_size_samples=32, lr=1e-3, lr_end=1e-3
    )
    trainer = SAETrainer(cfg, sae, src)
    trained = trainer.fit()
    assert trainer.n_training_steps == 4 and trainer.n_training_samples == 128
    assert not torch.equal(trained.W_dec.detach(), before)


def test_trajectory_source(ddpm_pipe):
    hp = HookedDiffusionPipeline(ddpm_pipe)
    calls = (
        {
            "batch_size": 1,
            "num_inference_steps": 4,
            "generator": torch.Generator().manual_seed(i),
            "output_type": "np",
        }
        for i in range(3)
    )
    src = DiffusionActivationSource.trajectories(
        hp, calls, MID, [750, 250], batch_size=8, paired=True, mix_fraction=0.0
    )
    batch = next(src)
    assert set(batch) == {750, 250} and batch[750].shape == (8, 16)
    _, cache = hp.run_with_cache(
        batch_size=1,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        names_filter=MID,
    )
    assert torch.equal(batch[250], to_tokens(cache[MID, 250])[:8])


def test_shard_round_trip(tmp_path, unet, scheduler):
    src = DiffusionActivationSource.noised(unet, scheduler, _latents(4), MID, [500], batch_size=8)
    batches = [next(src) for _ in range(3)]
    shards = save_activation_shards(
        iter(batches), tmp_path / "flat", n_batches=3, batches_per_shard=2, metadata={"hook": MID}
    )
    assert [s.name for s in shards] == ["shard_00000.safetensors", "shard_00001.safetensors"]
    back = list(ShardedActivationSource(tmp_path / "flat", batch_size=8, shuffle=False))
    assert len(back) == 3 and all(torch.equal(a, b) for a, b in zip(back, batches))
    assert ShardedActivationSource(tmp_path / "flat", batch_size=8).meta["hook"] == MID

    paired = DiffusionActivationSource.noised(
        unet, scheduler, _latents(4), MID, [899, 100], batch_size=8, paired=True
    )
    pb = [next(paired) for _ in range(2)]
    save_activation_shards(iter(pb), tmp_path / "paired", n_batches=2)
    shuffled = next(ShardedActivationSource(tmp_path / "paired", batch_size=16, shuffle=True))
    full = {t: torch.cat([b[t] for b in pb]) for t in (899, 100)}
    rows = [int((full[899] == r).all(1).nonzero()[0]) for r in shuffled[899]]
    assert sorted(rows) == list(range(16)) and torch.equal(shuffled[100], full[100][rows])
    looped = ShardedActivationSource(tmp_path / "paired", batch_size=16, loop=True)
    assert len([next(looped) for _ in range(3)]) == 3


def test_bad_input(unet, scheduler, tmp_path):
    with pytest.raises(
        ValueError, match=r"outside the scheduler's range: use integers in \[0, 999\]"
    ):
        noised_activations(unet, scheduler, _latents(1), MID, [1000])
    with pytest.raises(ValueError, match="Closest names"):
        noised_activations(unet, scheduler, _latents(1), "mid_block.hook_ot", [10])
    with pytest.raises(ValueError, match="different channel counts"):
        DiffusionActivationSource.noised(
            unet, scheduler, _latents(1), [MID, "down_blocks.0.hook_out"], [10], batch_size=4
        )
    src = DiffusionActivationSource.noised(unet, scheduler, _latents(1), MID, [10], batch_size=4)
    with pytest.raises(ValueError, match="build the SAE with d_in=16"):
        src.check_sae(BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2)))
    with pytest.raises(ValueError, match="no meta.json"):
        ShardedActivationSource(tmp_path, batch_size=4)


def test_trajectory_bad_timestep(ddpm_pipe):
    hp = HookedDiffusionPipeline(ddpm_pipe)
    with pytest.raises(ValueError, match="outside the scheduler's range"):
        trajectory_activations(hp, [{}], MID, [5000])


def test_conditional_latents_and_several_hooks(unet_cond, scheduler):
    model, kw = unet_cond  # UNet2DConditionModel, 4 latent channels, 16x16
    hooked = hook_denoiser(model)
    batches = [{"latents": kw["sample"], "encoder_hidden_states": kw["encoder_hidden_states"]}] * 2
    names = ["mid_block.hook_out", "down_blocks.1.hook_out"]  # both 32 channels, 8x8
    src = DiffusionActivationSource.noised(
        hooked, scheduler, batches, names, [500, 50], batch_size=16, paired=True
    )
    batch = next(src)
    assert set(batch) == {(n, t) for n in names for t in (500, 50)}
    assert all(v.shape == (16, 32) for v in batch.values())
    flat = DiffusionActivationSource.noised(hooked, scheduler, batches, names, [500], batch_size=16)
    assert next(flat).shape == (16, 32)


def test_cached_epochs_reshuffle_every_pass_and_cover_every_row():
    from sae_causal_plugin.diffusion.activations import cached_epochs

    data = torch.arange(10.0)[:, None]
    chunks = cached_epochs(data, ("h", 500), 4, torch.Generator().manual_seed(0))
    first = torch.cat([next(chunks)["h", 500] for _ in range(3)])
    second = torch.cat([next(chunks)["h", 500] for _ in range(3)])
    assert sorted(first.flatten().tolist()) == sorted(second.flatten().tolist()) == list(range(10))
    assert not torch.equal(first, second)
