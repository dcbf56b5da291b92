"""Tiny fixtures for the command line: a HookedTransformer saved to a folder, a dataset, a trained SAE."""

import random

import pytest
import torch
import yaml

from sae_causal_plugin.cli.main import main

D_VOCAB = 40


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


def train_config(model_dir, dataset_file, out, **changes):
    cfg = {
        "architecture": "hierarchical_topk",
        "model_name": str(model_dir),
        "hook_name": "blocks.0.hook_resid_post",
        "dataset_path": str(dataset_file),
        "context_size": 16,
        "training_tokens": 4096,
        "train_batch_size_tokens": 128,
        "store_batch_size_prompts": 8,
        "n_batches_in_buffer": 16,
        "n_batches_for_norm_estimate": 2,
        "dead_feature_window": 5,
        "feature_sampling_window": 10,
        "n_eval_batches": 1,
        "prepend_bos": False,
        "verbose": False,
        "lr": "3e-3",  # YAML 1.1 reads this as a string; the loader accepts it as a number
        "output_path": str(out),
        "sae": {"d_sae": 32, "k": 3},
    }
    cfg.update(changes)
    return cfg


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def trained_sae(model_dir, dataset_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    out = root / "sae"
    config = write_yaml(root / "train.yaml", train_config(model_dir, dataset_file, out))
    assert main(["train", str(config)]) == 0
    return out
