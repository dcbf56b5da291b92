"""Tiny diffusers models and pipelines built from config, shared by the diffusion tests."""

from __future__ import annotations

import pytest
import torch

from . import tiny


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every diffusion test module runs single-threaded (tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def denoisers() -> dict:
    """One tiny model per supported denoiser class, with example inputs."""
    out = {}
    for name, build in tiny.TINY_DENOISERS.items():
        model = build()
        out[name] = (model, tiny.example_inputs(model, batch_size=2))
    return out


@pytest.fixture(scope="session")
def unet_cond(denoisers):
    return denoisers["UNet2DConditionModel"]


@pytest.fixture(scope="session")
def sd_pipe():
    return tiny.tiny_sd_pipeline()


@pytest.fixture(scope="session")
def ddpm_pipe():
    return tiny.tiny_ddpm_pipeline()


@pytest.fixture(scope="session")
def dit_pipe():
    return tiny.tiny_dit_pipeline()


@pytest.fixture
def sd_call():
    """Keyword arguments of a 3-step 16x16 generation with a fixed generator (fresh per use)."""

    def make(seed: int = 0, **over):
        kw = dict(prompt="a cat", num_inference_steps=3, height=16, width=16, output_type="latent")
        kw["generator"] = torch.Generator().manual_seed(seed)
        kw.update(over)
        return kw

    return make
