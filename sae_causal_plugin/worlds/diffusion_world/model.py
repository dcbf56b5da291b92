"""The diffusion world's denoiser: a tiny concept-conditioned ``UNet2DConditionModel`` and its pipeline.

* :class:`ConceptEmbedding`: strength vector ``[B, 8]`` -> ``encoder_hidden_states`` ``[B, 1, 32]``,
  one token: a learned bias plus the strength-weighted sum of one learned vector per concept.
* :func:`build_denoiser`: the UNet, built from :data:`UNET_CONFIG`.  Its down and up blocks are
  plain ``DownBlock2D`` / ``UpBlock2D``; the **only** cross-attention is in the mid block, so the
  concepts enter the network at ``mid_block.attentions.0`` (8x8 tokens, 32 channels), whose
  residual update (:data:`HOOK`) the benchmark's SAEs read and steer.
* :class:`DiffusionWorldPipeline`: DDIM sampling (20 steps by default) of ``[B, 3, 16, 16]``
  images in ``[0, 1]`` for given label vectors.  Its ``unet`` / ``scheduler`` attributes make it a
  pipeline that :class:`~sae_causal_plugin.diffusion.HookedDiffusionPipeline` and
  :class:`~sae_causal_plugin.diffusion.DiffusionSteering` accept.
* :func:`load_pretrained`: the shipped weights (``worlds/assets/diffusion_world_*``), trained by
  ``scripts/train_diffusion_world.py``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sae_causal_plugin.worlds.denoiser_training import SCHEDULER_CONFIG

from sae_causal_plugin.worlds.diffusion_world.concepts import (
    N_CONCEPTS,
    LabelLike,
    as_strengths,
    check_labels,
)
from sae_causal_plugin.worlds.diffusion_world.scenes import CHANNELS, SIZE, from_model

EMBED_DIM = 32

#: the UNet, as ``UNet2DConditionModel(**UNET_CONFIG)``.
UNET_CONFIG: dict[str, Any] = dict(
    sample_size=SIZE,
    in_channels=CHANNELS,
    out_channels=CHANNELS,
    layers_per_block=1,
    block_out_channels=(16, 32),
    down_block_types=("DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    cross_attention_dim=EMBED_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
)


DEFAULT_STEPS = 20
#: the hook the benchmark trains SAEs on and steers: the residual update of the mid block's
#: transformer, where the concept token is injected (8x8 tokens, 32 channels).
HOOK = "mid_block.attentions.0.hook_delta"

ASSET_PREFIX = "diffusion_world"
WEIGHTS_FILE = f"{ASSET_PREFIX}_denoiser.safetensors"
CONFIG_FILE = f"{ASSET_PREFIX}_config.json"


class ConceptEmbedding(nn.Module):
    """Strength vectors -> one conditioning token, the strength-weighted sum of concept vectors.

    ``[B, 8]`` -> ``[B, 1, dim]``: ``bias + sum_j strengths[:, j] * vectors[j]``.  With a single
    key, the mid block's cross-attention output is a linear map of this token, so concepts enter
    the UNet additively and only present concepts inject anything.
    """

    def __init__(self, dim: int = EMBED_DIM, seed: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        self.dim = dim
        self.vectors = nn.Parameter(torch.randn(N_CONCEPTS, dim, generator=g))
        self.bias = nn.Parameter(torch.randn(dim, generator=g))

    def forward(self, labels: Tensor) -> Tensor:
        lab = labels.to(self.vectors.device)
        if lab.ndim != 2 or lab.shape[1] != N_CONCEPTS:
            raise ValueError(f"labels must be [B, {N_CONCEPTS}], got shape {tuple(labels.shape)}")
        return (self.bias + lab.to(self.vectors.dtype) @ self.vectors)[:, None, :]


def build_denoiser(seed: int | None = 0) -> nn.Module:
    """A freshly initialised ``UNet2DConditionModel`` of :data:`UNET_CONFIG`.

    With a ``seed`` the initialisation comes from it and the caller's global torch RNG is left as
    found; ``seed=None`` draws from the global RNG as it stands (for a caller that seeded it itself).
    """
    from diffusers import UNet2DConditionModel

    if seed is None:
        return UNet2DConditionModel(**UNET_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**UNET_CONFIG)


def build_scheduler() -> Any:
    """The ``DDIMScheduler`` of :data:`SCHEDULER_CONFIG`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


class DiffusionWorldPipeline:
    """Concept-conditioned DDIM sampling of diffusion-world scenes.

    Example:
        >>> pipe = load_pretrained()
        >>> images = pipe(["house", "chimney"], generator=torch.Generator().manual_seed(0))
        >>> detect_concepts(images)          # [1, 8] bool, house and chimney set

    Args:
        unet: the denoiser (see :func:`build_denoiser`).
        embedding: the :class:`ConceptEmbedding`.
        scheduler: a diffusers scheduler (default :func:`build_scheduler`).
    """

    do_classifier_free_guidance = False

    def __init__(self, unet: nn.Module, embedding: ConceptEmbedding, scheduler: Any = None):
        self.unet = unet.eval()
        self.embedding = embedding.eval()
        self.scheduler = scheduler if scheduler is not None else build_scheduler()

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def encode_labels(self, labels: LabelLike) -> Tensor:
        """``encoder_hidden_states`` for valid labels (``ValueError`` otherwise).

        Float tensors are strength vectors (:func:`.concepts.sample_strengths`); names, booleans
        and integer flags put present concepts at :data:`.concepts.DEFAULT_STRENGTH`.
        """
        check_labels(labels)
        strengths = as_strengths(labels)
        if strengths.ndim == 1:
            strengths = strengths[None]
        with torch.no_grad():
            return self.embedding(strengths.to(self.device))

    @torch.no_grad()
    def __call__(
        self,
        labels: LabelLike,
        num_inference_steps: int = DEFAULT_STEPS,
        generator: torch.Generator | None = None,
        latents: Tensor | None = None,
        eta: float = 0.0,
        output_type: str = "pt",
    ) -> Tensor:
        """Generate one image per label vector.

        Args:
            labels: label vectors ``[B, 8]`` (or concept names for one image).
            num_inference_steps: DDIM steps.
            generator: random source of the initial noise (and of ``eta`` noise).
            latents: explicit initial noise ``[B, 3, 16, 16]``.
            eta: DDIM ``eta`` (0 = deterministic).
            output_type: ``"pt"`` for ``[0, 1]`` images, ``"latent"`` for the raw ``[-1, 1]`` output.

        Returns:
            ``[B, 3, 16, 16]`` images.
        """
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pt' or 'latent', got {output_type!r}")
        cond = self.encode_labels(labels)
        b = cond.shape[0]
        shape = (b, CHANNELS, SIZE, SIZE)
        if latents is None:
            latents = torch.randn(shape, generator=generator).to(self.device)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        x = latents.to(self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.scheduler.timesteps:
            eps = self.unet(x, timestep=t, encoder_hidden_states=cond).sample
            x = self.scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
        return x if output_type == "latent" else from_model(x)


# --- weights ------------------------------------------------------------------------------------
def assets_dir() -> Path:
    """The package's ``worlds/assets`` folder."""
    return Path(str(resources.files("sae_causal_plugin.worlds") / "assets"))


def save_pretrained(
    unet: nn.Module,
    embedding: ConceptEmbedding,
    directory: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the weights (``safetensors``) and the config (``json``) into ``directory``."""
    from sae_causal_plugin._files import staged_dir

    root = Path(directory) if directory is not None else assets_dir()
    tensors = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    tensors.update(
        {f"embedding.{k}": v.detach().cpu().contiguous() for k, v in embedding.state_dict().items()}
    )
    config = {
        "unet": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_CONFIG.items()},
        "embed_dim": embedding.dim,
        "scheduler": SCHEDULER_CONFIG,
        "hook": HOOK,
        "default_steps": DEFAULT_STEPS,
        **(metadata or {}),
    }
    with staged_dir(root, what="model folder") as stage:  # weights and config appear together
        save_file(tensors, str(stage / WEIGHTS_FILE))
        (stage / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return root / WEIGHTS_FILE, root / CONFIG_FILE


def load_pretrained(
    directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> DiffusionWorldPipeline:
    """The trained denoiser and concept embedding as a :class:`DiffusionWorldPipeline`.

    Args:
        directory: where :func:`save_pretrained` wrote the files (default: the shipped assets).
        device: where to put the models.
    """
    from diffusers import UNet2DConditionModel

    root = Path(directory) if directory is not None else assets_dir()
    weights, cfg_path = root / WEIGHTS_FILE, root / CONFIG_FILE
    if not weights.is_file() or not cfg_path.is_file():
        raise FileNotFoundError(
            f"no trained diffusion world in {root} (need {WEIGHTS_FILE} and {CONFIG_FILE}); "
            "train it with `python scripts/train_diffusion_world.py`"
        )
    config = json.loads(cfg_path.read_text())
    tensors = load_file(str(weights))
    unet = UNet2DConditionModel(**config["unet"])
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    embedding = ConceptEmbedding(dim=int(config["embed_dim"]))
    embedding.load_state_dict(
        {k[10:]: v for k, v in tensors.items() if k.startswith("embedding.")}
    )
    from diffusers import DDIMScheduler

    pipe = DiffusionWorldPipeline(
        unet.to(device).eval(), embedding.to(device).eval(), DDIMScheduler(**config["scheduler"])
    )
    pipe.config = config  # type: ignore[attr-defined]
    return pipe


__all__ = [
    "CONFIG_FILE",
    "ConceptEmbedding",
    "DEFAULT_STEPS",
    "DiffusionWorldPipeline",
    "EMBED_DIM",
    "HOOK",
    "SCHEDULER_CONFIG",
    "UNET_CONFIG",
    "WEIGHTS_FILE",
    "assets_dir",
    "build_denoiser",
    "build_scheduler",
    "load_pretrained",
    "save_pretrained",
]
