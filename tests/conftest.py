"""Fixtures shared by several test folders: a tiny HookedTransformer saved to a folder, a dataset of
token ids, an SAE trained on them by the command line, torch on one thread."""

import random

import pytest
import torch

from sae_causal_plugin.cli.main import main
from tests.helpers import D_VOCAB, single_thread, train_config, write_yaml

@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_causal_plugin.cli.models import save_hooked_transformer

    torch.manual_seed(0)
    model = HookedTransformer(HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=24, d_head=8, n_heads=2, d_vocab=D_VOCAB, act_fn="relu",
        d_mlp=32))
    return save_hooked_transformer(model, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory):
    """Documents as space-separated token ids (the tiny model has no tokenizer)."""
    rng = random.Random(0)
    lines = [" ".join(str(rng.randrange(1, D_VOCAB)) for _ in range(rng.randrange(8, 30)))
             for _ in range(300)]
    path = tmp_path_factory.mktemp("data") / "docs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def trained_sae(model_dir, dataset_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    out = root / "sae"
    config = write_yaml(root / "train.yaml", train_config(model_dir, dataset_file, out))
    assert main(["train", str(config)]) == 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a whole module (request it from an autouse fixture or ``usefixtures``)."""
    with single_thread():
        yield


@pytest.fixture(autouse=True)
def _torch_seeded():
    """Every test starts from ``torch.manual_seed(0)`` (so no test needs its own first-line seed); the
    caller's global torch RNG is put back afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
