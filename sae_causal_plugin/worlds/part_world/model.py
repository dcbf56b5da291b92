"""The part-whole world's denoiser: a tiny ``UNet2DConditionModel`` with spatial cross-attention.

* :class:`ConceptTokens`: strength vectors ``[B, 22]`` -> ``encoder_hidden_states``
  ``[B, 23, 32]``: one token per concept (its learned vector times its strength, zero when absent)
  and a scene token that is always there and sums up the scene (a learned bias plus the
  strength-weighted sum of a second learned vector per concept).
* :func:`build_denoiser`: the UNet of :data:`UNET_CONFIG`.  Cross-attention sits in the 16x16
  blocks (``down_blocks.0``, ``up_blocks.1``) and the 8x8 mid block, so every image token can
  attend to the concept tokens: concepts enter where they are drawn.  Both attention layers of
  each transformer block attend to the tokens (``only_cross_attention``: no self-attention, which
  the convolutions make up for at 16x16 and which costs a quarter of the training time).
* :class:`PartWorldPipeline`: DDIM sampling of layered ``[B, 22, 16, 16]`` scenes in ``[0, 1]``; its
  ``unet`` / ``scheduler`` attributes make it a pipeline that
  :class:`~sae_causal_plugin.diffusion.HookedDiffusionPipeline` accepts.
* :func:`load_pretrained` / :func:`save_pretrained`: the shipped weights
  (``worlds/assets/part_world_*``), trained by ``scripts/train_part_world.py``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sae_causal_plugin.worlds.denoiser_training import SCHEDULER_CONFIG

from sae_causal_plugin.worlds.part_world.concepts import N_CONCEPTS, SIZE
from sae_causal_plugin.worlds.part_world.scenes import CHANNELS, from_model, scene_noise

EMBED_DIM = 32
UNET_CONFIG: dict[str, Any] = dict(
    sample_size=SIZE,
    in_channels=CHANNELS,
    out_channels=CHANNELS,
    layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    cross_attention_dim=EMBED_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
    only_cross_attention=True,
)
DEFAULT_STEPS = 20
ASSET_PREFIX = "part_world"
WEIGHTS_FILE = f"{ASSET_PREFIX}_denoiser.safetensors"
CONFIG_FILE = f"{ASSET_PREFIX}_config.json"


class ConceptTokens(nn.Module):
    """Strength vectors ``[B, 22]`` -> ``[B, 23, dim]``: per concept ``strength * vector``, then the scene
    token ``scene + strengths @ summary``."""

    def __init__(self, dim: int = EMBED_DIM, seed: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        self.dim = dim
        self.vectors = nn.Parameter(torch.randn(N_CONCEPTS, dim, generator=g))
        self.scene = nn.Parameter(torch.randn(dim, generator=g))
        self.summary = nn.Parameter(torch.randn(N_CONCEPTS, dim, generator=g))

    def forward(self, strengths: Float[Tensor, "b c"]) -> Float[Tensor, "b t d"]:
        s = strengths.to(self.vectors.device, self.vectors.dtype)
        if s.ndim != 2 or s.shape[1] != N_CONCEPTS:
            raise ValueError(f"strengths must be [B, {N_CONCEPTS}], got shape {tuple(strengths.shape)}")
        tokens = s[:, :, None] * self.vectors[None]
        scene = self.scene + s @ self.summary
        return torch.cat([tokens, scene[:, None]], 1)


def build_denoiser(seed: int | None = 0) -> nn.Module:
    """A fresh ``UNet2DConditionModel(**UNET_CONFIG)`` (seeded without touching the global RNG,
    or from the global RNG as it stands with ``seed=None``)."""
    from diffusers import UNet2DConditionModel

    if seed is None:
        return UNet2DConditionModel(**UNET_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**UNET_CONFIG)


def build_scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def strengths_of(labels: Tensor, strength: float = 0.8) -> Float[Tensor, "b c"]:
    """Bool / 0-1 labels ``[B, 22]`` as strength vectors (present concepts at ``strength``);
    float labels with values other than 0 and 1 are taken as strengths already."""
    if labels.ndim == 1:
        labels = labels[None]
    if labels.ndim != 2 or labels.shape[1] != N_CONCEPTS:
        raise ValueError(f"labels must be [B, {N_CONCEPTS}], got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or bool(((labels == 0) | (labels == 1)).all()):
        return labels.float() * strength
    return labels.float()


class PartWorldPipeline:
    """Concept-conditioned DDIM sampling of part-whole scenes (where things go comes from the noise)."""

    do_classifier_free_guidance = False

    def __init__(self, unet: nn.Module, tokens: ConceptTokens, scheduler: Any = None):
        self.unet = unet.eval()
        self.tokens = tokens.eval()
        self.scheduler = scheduler if scheduler is not None else build_scheduler()

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def encode_labels(self, labels: Tensor) -> Tensor:
        with torch.no_grad():
            return self.tokens(strengths_of(labels).to(self.device))

    @torch.no_grad()
    def __call__(self, labels: Tensor, num_inference_steps: int = DEFAULT_STEPS,
                 generator: torch.Generator | None = None, latents: Tensor | None = None,
                 output_type: str = "pt") -> Tensor:
        """One layered scene ``[B, 22, 16, 16]`` per label vector (``output_type="latent"``: the raw ``[-1, 1]`` output)."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pt' or 'latent', got {output_type!r}")
        cond = self.encode_labels(labels)
        shape = (cond.shape[0], CHANNELS, SIZE, SIZE)
        if latents is None:
            latents = scene_noise(shape[0], generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        x = latents.to(self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.scheduler.timesteps:
            out = self.unet(x, timestep=t, encoder_hidden_states=cond).sample
            x = self.scheduler.step(out, t, x, eta=0.0).prev_sample
        return x if output_type == "latent" else from_model(x)


def assets_dir() -> Path:
    return Path(str(resources.files("sae_causal_plugin.worlds") / "assets"))


def save_pretrained(unet: nn.Module, tokens: ConceptTokens, directory: str | Path | None = None,
                    metadata: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the weights (``safetensors``, float32) and the config (``json``) into ``directory``, together."""
    from sae_causal_plugin._files import staged_dir

    root = Path(directory) if directory is not None else assets_dir()
    tensors = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    tensors.update({f"tokens.{k}": v.detach().cpu().contiguous() for k, v in tokens.state_dict().items()})
    config = {"unet": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_CONFIG.items()},
              "embed_dim": tokens.dim, "scheduler": SCHEDULER_CONFIG, "default_steps": DEFAULT_STEPS,
              **(metadata or {})}
    with staged_dir(root, what="model folder") as stage:
        save_file(tensors, str(stage / WEIGHTS_FILE))
        (stage / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return root / WEIGHTS_FILE, root / CONFIG_FILE


def load_pretrained(directory: str | Path | None = None, device: str | torch.device = "cpu") -> PartWorldPipeline:
    """The trained denoiser and concept tokens (default: the shipped assets) as a :class:`PartWorldPipeline`."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    root = Path(directory) if directory is not None else assets_dir()
    weights, cfg_path = root / WEIGHTS_FILE, root / CONFIG_FILE
    if not weights.is_file() or not cfg_path.is_file():
        raise FileNotFoundError(f"no trained part world in {root} (need {WEIGHTS_FILE} and {CONFIG_FILE}); "
                                "train it with `python scripts/train_part_world.py`")
    config = json.loads(cfg_path.read_text())
    tensors = load_file(str(weights))
    unet = UNet2DConditionModel(**config["unet"])
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    tokens = ConceptTokens(dim=int(config["embed_dim"]))
    tokens.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("tokens.")})
    pipe = PartWorldPipeline(unet.to(device), tokens.to(device), DDIMScheduler(**config["scheduler"]))
    pipe.config = config  # type: ignore[attr-defined]
    return pipe


__all__ = ["CONFIG_FILE", "ConceptTokens", "DEFAULT_STEPS", "EMBED_DIM", "PartWorldPipeline", "SCHEDULER_CONFIG",
           "UNET_CONFIG", "WEIGHTS_FILE", "assets_dir", "build_denoiser", "build_scheduler", "load_pretrained",
           "save_pretrained", "strengths_of"]
