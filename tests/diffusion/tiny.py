"""Test scaffolding: tiny diffusers denoisers and pipelines built from config (no model hub), with
example inputs for one forward call of each.

Used only by tests/diffusion (the package itself never needs it: the toy world ships its own
trained denoiser, and the diffusion-overhead benchmark builds its two timed models itself).  Every
builder takes a ``seed`` so weights are reproducible.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch
from torch import Tensor, nn


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def tiny_unet2d(sample_size: int = 16, seed: int = 0) -> nn.Module:
    """Unconditional ``UNet2DModel``: 2 levels (8, 16 channels), one attention level, RGB in/out."""
    from diffusers import UNet2DModel

    _seeded(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()


def tiny_unet2d_condition(
    block_out_channels: tuple[int, ...] = (16, 32),
    cross_attention_dim: int = 32,
    sample_size: int = 16,
    layers_per_block: int = 1,
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim: int = 4,
    seed: int = 0,
) -> nn.Module:
    """Text-conditional ``UNet2DConditionModel``, by default with cross-attention on the top level."""
    from diffusers import UNet2DConditionModel

    _seeded(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers_per_block,
        block_out_channels=block_out_channels,
        down_block_types=down_block_types,
        up_block_types=up_block_types,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=4,
    ).eval()


def tiny_dit(sample_size: int = 8, num_layers: int = 2, seed: int = 0) -> nn.Module:
    """Class-conditional ``DiTTransformer2DModel`` (adaLN-zero), 4 latent channels, 16-dim tokens."""
    from diffusers import DiTTransformer2DModel

    _seeded(seed)
    return DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=num_layers,
        sample_size=sample_size,
        patch_size=2,
        norm_num_groups=4,
    ).eval()


def tiny_pixart(sample_size: int = 8, seed: int = 0) -> nn.Module:
    """Text-conditional ``PixArtTransformer2DModel`` (adaLN-single) with 8-dim captions."""
    from diffusers import PixArtTransformer2DModel

    _seeded(seed)
    return PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=16,
        sample_size=sample_size,
        patch_size=2,
        caption_channels=8,
        norm_num_groups=4,
    ).eval()


def tiny_sd3(sample_size: int = 8, seed: int = 0) -> nn.Module:
    """``SD3Transformer2DModel`` (MMDiT, joint text/image blocks)."""
    from diffusers import SD3Transformer2DModel

    _seeded(seed)
    return SD3Transformer2DModel(
        sample_size=sample_size,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=8,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
        pos_embed_max_size=16,
    ).eval()


def tiny_flux(seed: int = 0) -> nn.Module:
    """``FluxTransformer2DModel`` with one double-stream and one single-stream block."""
    from diffusers import FluxTransformer2DModel

    _seeded(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=8,
        pooled_projection_dim=8,
        axes_dims_rope=(4, 4, 8),
    ).eval()


#: builder of a tiny model for every supported denoiser class, keyed by class name.
TINY_DENOISERS = {
    "UNet2DModel": tiny_unet2d,
    "UNet2DConditionModel": tiny_unet2d_condition,
    "DiTTransformer2DModel": tiny_dit,
    "PixArtTransformer2DModel": tiny_pixart,
    "SD3Transformer2DModel": tiny_sd3,
    "FluxTransformer2DModel": tiny_flux,
}


def example_inputs(
    model: nn.Module, batch_size: int = 2, seed: int = 0, timestep: int = 500
) -> dict[str, Any]:
    """Keyword arguments for one forward call of a tiny denoiser built above."""
    g = torch.Generator().manual_seed(seed)
    name = type(model).__name__
    cfg = model.config
    t = torch.full((batch_size,), timestep, dtype=torch.long)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g)

    if name == "UNet2DModel":
        s = cfg.sample_size
        return {"sample": rand(batch_size, cfg.in_channels, s, s), "timestep": t}
    if name == "UNet2DConditionModel":
        s = cfg.sample_size
        return {
            "sample": rand(batch_size, cfg.in_channels, s, s),
            "timestep": t,
            "encoder_hidden_states": rand(batch_size, 5, cfg.cross_attention_dim),
        }
    if name == "DiTTransformer2DModel":
        s = cfg.sample_size
        return {
            "hidden_states": rand(batch_size, cfg.in_channels, s, s),
            "timestep": t,
            "class_labels": torch.arange(batch_size) % 10,
        }
    if name == "PixArtTransformer2DModel":
        s = cfg.sample_size
        return {
            "hidden_states": rand(batch_size, cfg.in_channels, s, s),
            "timestep": t,
            "encoder_hidden_states": rand(batch_size, 5, cfg.caption_channels),
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        }
    if name == "SD3Transformer2DModel":
        s = cfg.sample_size
        return {
            "hidden_states": rand(batch_size, cfg.in_channels, s, s),
            "timestep": t.float(),
            "encoder_hidden_states": rand(batch_size, 5, cfg.joint_attention_dim),
            "pooled_projections": rand(batch_size, cfg.pooled_projection_dim),
        }
    if name == "FluxTransformer2DModel":
        h = w = 4
        img_ids = torch.zeros(h, w, 3)
        img_ids[..., 1] = torch.arange(h)[:, None]
        img_ids[..., 2] = torch.arange(w)[None, :]
        return {
            "hidden_states": rand(batch_size, h * w, cfg.in_channels),
            "timestep": t.float() / 1000.0,
            "encoder_hidden_states": rand(batch_size, 5, cfg.joint_attention_dim),
            "pooled_projections": rand(batch_size, cfg.pooled_projection_dim),
            "img_ids": img_ids.reshape(-1, 3),
            "txt_ids": torch.zeros(5, 3),
        }
    raise ValueError(f"no example inputs for {name}")


def tiny_clip_tokenizer(max_length: int = 16) -> Any:
    """A ``CLIPTokenizer`` over single lowercase letters, built in a temp dir (no download)."""
    from transformers import CLIPTokenizer

    d = tempfile.mkdtemp(prefix="tiny_clip_tok_")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for suffix in ("", "</w>"):
        for c in letters:
            vocab[c + suffix] = len(vocab)
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(
        os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), model_max_length=max_length
    )


def tiny_vae(seed: int = 0) -> nn.Module:
    """``AutoencoderKL`` with 4 latent channels and a 2x downsampling."""
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    ).eval()


def tiny_sd_pipeline(seed: int = 0, scheduler: str = "ddim") -> Any:
    """A ``StableDiffusionPipeline`` of tiny components (CFG doubles the batch as [uncond, cond])."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = tiny_unet2d_condition(sample_size=8, seed=seed)
    vae = tiny_vae(seed)
    tokenizer = tiny_clip_tokenizer()
    _seeded(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=16,
        )
    ).eval()
    sched_cls = DDIMScheduler if scheduler == "ddim" else DDPMScheduler
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sched_cls(num_train_timesteps=1000, clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ddpm_pipeline(seed: int = 0, ddim: bool = False) -> Any:
    """An unconditional ``DDPMPipeline`` (or ``DDIMPipeline``) around :func:`tiny_unet2d`."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

    unet = tiny_unet2d(sample_size=8, seed=seed)
    if ddim:
        pipe = DDIMPipeline(
            unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        )
    else:
        pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_dit_pipeline(seed: int = 0) -> Any:
    """A class-conditional ``DiTPipeline`` (CFG doubles the batch as [cond, uncond])."""
    from diffusers import DDIMScheduler, DiTPipeline

    transformer = tiny_dit(sample_size=4, seed=seed)
    pipe = DiTPipeline(
        transformer=transformer,
        vae=tiny_vae(seed),
        scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False),
        id2label={i: f"class{i}" for i in range(10)},
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


__all__ = [
    "TINY_DENOISERS",
    "example_inputs",
    "tiny_clip_tokenizer",
    "tiny_ddpm_pipeline",
    "tiny_dit",
    "tiny_dit_pipeline",
    "tiny_flux",
    "tiny_pixart",
    "tiny_sd3",
    "tiny_sd_pipeline",
    "tiny_unet2d",
    "tiny_unet2d_condition",
    "tiny_vae",
]
