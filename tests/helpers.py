"""Helpers shared across the test folders (plain functions; the shared fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import yaml
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

D_VOCAB = 40  # vocabulary of the tiny HookedTransformer of the ``model_dir`` fixture


def identity_sae(d: int) -> StandardSAE:
    """A ReLU SAE with W_enc = W_dec = I and zero biases: encode(x) = relu(x) exactly, so latent i
    fires exactly when x[i] > 0."""
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=d))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread for the block (tiny models run ~10x faster so on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def report_tables(page: str) -> dict[str, dict[str, list[str]]]:
    """The metrics and settings tables of a report page: ``{table: {key: [cells after the key]}}``."""
    import re

    out: dict[str, dict[str, list[str]]] = {}
    for name in ("metrics", "settings"):
        found = re.search(rf"<table class='{name}'>(.*?)</table>", page, flags=re.S)
        rows = re.findall(r"<tr><td><code>(.*?)</code></td>(.*?)</tr>", found.group(1)) if found else []
        out[name] = {key: re.findall(r"<td[^>]*>(.*?)</td>", rest) for key, rest in rows}
    return out


def assert_report_is_readable(page: str) -> None:
    """Every measurement described, no Python repr or None left in the text, pictures linked full size."""
    import re

    tables = report_tables(page)
    undescribed = [k for k, cells in tables["metrics"].items() if not cells[0].strip()]
    assert not undescribed, f"metrics without a description: {undescribed}"
    assert "seed" not in tables["metrics"]
    text = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
    for repr_mark in ("None", "{&#39;", "[&#39;", "{'", "['"):
        assert repr_mark not in text, f"{repr_mark!r} in the report text"
    assert '<a href="concept_graph.png"><img src="concept_graph.png"' in page
    assert '<a href="concept_graph.html">' in page  # the interactive page, linked
    steering = page.split("<h2>Steering</h2>", 1)[1]
    titles = re.findall(r"<h3>(.*?)</h3>", steering)
    assert titles and all("(failed)</span>" in t or "(worked)</span>" in t for t in titles), titles
