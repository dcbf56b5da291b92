"""Stable Diffusion v1.4: the paper's reading points, and a tiny pipeline of the same shape.

* :data:`SD14`: hooks ``down_blocks.2.attentions.1`` and ``up_blocks.1.attentions.{0,1,2}`` (16x16
  transformer blocks at 512 px), timesteps 899 / 500 / 100 (mapped to the nearest steps of the
  schedule, :func:`~.token_graph.nearest_schedule_timesteps`), SAEs of width 5120.
* :func:`load_sd14`: the real pipeline (needs the hub or a local copy; guarded, never used by a test).
* :func:`tiny_sd14_pipeline`: a ``StableDiffusionPipeline`` built from config with SD v1.4's block
  layout (three cross-attention down blocks, two layers each, three cross-attention up blocks of
  three layers), so every hook name of :data:`SD14` exists and the same code runs end to end on a CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TokenGraphPreset:
    """Where and how a real model is read: model id, hooks, level timesteps, SAE width and k."""

    model: str
    hooks: tuple[str, ...]
    timesteps: tuple[int, ...]
    d_sae: int
    k: float
    num_inference_steps: int
    guidance_scale: float


SD14 = TokenGraphPreset(
    model="CompVis/stable-diffusion-v1-4",
    hooks=("down_blocks.2.attentions.1.hook_out", "up_blocks.1.attentions.0.hook_out",
           "up_blocks.1.attentions.1.hook_out", "up_blocks.1.attentions.2.hook_out"),
    timesteps=(899, 500, 100),
    d_sae=5120,
    k=32.0,  # our choice: about 2 % of the 1280 channels active per token
    num_inference_steps=50,
    guidance_scale=7.5,
)


def load_sd14(model: str = SD14.model, *, device: str = "cuda", dtype: torch.dtype = torch.float16) -> Any:
    """The real SD v1.4 pipeline (DDIM scheduler, no safety checker); a clear error when it cannot be loaded."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except Exception as err:  # offline, gated, or a wrong path: say what to do
        raise RuntimeError(f"could not load {model!r} ({type(err).__name__}: {err}). It needs the Hugging Face hub "
                           "or a local copy: pass the directory of a downloaded snapshot, or use "
                           "tiny_sd14_pipeline() to check the workflow offline.") from err
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _letter_tokenizer(max_length: int) -> Any:
    """A ``CLIPTokenizer`` over single lowercase letters, written to a temporary folder (no download)."""
    from transformers import CLIPTokenizer

    d = tempfile.mkdtemp(prefix="tiny_clip_tok_")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in "abcdefghijklmnopqrstuvwxyz":
            vocab[c + suffix] = len(vocab)
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), model_max_length=max_length)


def tiny_sd14_pipeline(seed: int = 0, sample_size: int = 16) -> Any:
    """A randomly initialised ``StableDiffusionPipeline`` with SD v1.4's UNet layout, a few kB of weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _letter_tokenizer(16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(8, 8, 16, 16), norm_num_groups=4, cross_attention_dim=16, attention_head_dim=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ).eval()
        vae = AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            norm_num_groups=4, layers_per_block=1).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
            num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=16)).eval()
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False, steps_offset=1, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


__all__ = ["SD14", "TokenGraphPreset", "load_sd14", "tiny_sd14_pipeline"]
