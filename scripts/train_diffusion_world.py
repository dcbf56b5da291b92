"""Retrain the diffusion toy world's denoiser and write the shipped weights.

Trains the concept-conditioned ``UNet2DConditionModel`` and its concept embedding of
:mod:`sae_causal_plugin.worlds.diffusion_world` (x0-prediction, cosine schedule, AdamW, EMA; see
:mod:`sae_causal_plugin.worlds.diffusion_world.train`), then generates ``--eval-per-class`` images
of each of the 12 classes with 20 DDIM steps and reads them back with the rule-based detectors.
Fixed seeds; with ``--threads 1`` (the default) a rerun reproduces the weights bit for bit on the
same machine and library versions.

Usage::

    python scripts/train_diffusion_world.py [--steps 2000] [--seed 0] [--threads 1]
        [--out sae_causal_plugin/worlds/assets] [--json]

Writes ``diffusion_world_denoiser.safetensors`` (weights of the EMA model, float32),
``diffusion_world_config.json`` (architecture, scheduler, training summary, read-back accuracy)
and ``diffusion_world_samples.png`` (one row of generated samples per seed, 12 classes per row)
into ``--out``.  With ``--json`` the last line printed is one JSON object with ``train_seconds``,
``accuracy`` (fraction of generated images whose detected concepts equal the conditioning),
``per_concept`` and the output paths.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sae_causal_plugin.worlds.diffusion_world.model import (
    DiffusionWorldPipeline,
    assets_dir,
    save_pretrained,
)
from sae_causal_plugin.worlds.diffusion_world.train import (
    TrainConfig,
    readback_accuracy,
    sample_grid,
    train_denoiser,
)


def save_samples(pipe: DiffusionWorldPipeline, path: Path, rows: int = 3) -> None:
    """A PNG grid of generated samples: one row per noise seed, the 12 classes along each row."""
    from PIL import Image

    from sae_causal_plugin.worlds.diffusion_world import all_classes

    labels = all_classes().repeat(rows, 1)
    images = pipe(labels, generator=torch.Generator().manual_seed(1234))
    grid = sample_grid(images, ncol=all_classes().shape[0])
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    Image.fromarray(arr).resize((arr.shape[1] * 4, arr.shape[0] * 4), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> dict:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = reproducible)")
    p.add_argument("--out", default=None, help="output directory (default: the package's assets)")
    p.add_argument("--eval-per-class", type=int, default=20)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    if a.steps <= 0 or a.batch_size <= 0:
        p.error("--steps and --batch-size must be positive")
    torch.set_num_threads(a.threads)
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    unet, embedding, summary = train_denoiser(cfg)
    pipe = DiffusionWorldPipeline(unet, embedding)
    start = time.perf_counter()
    readback = readback_accuracy(pipe, per_class=a.eval_per_class, seed=a.seed + 100)
    print(f"read-back accuracy {readback['accuracy']:.4f} over {readback['n']} samples "
          f"({time.perf_counter() - start:.0f}s); per concept "
          + ", ".join(f"{c} {v:.3f}" for c, v in readback["per_concept"].items()))
    out = Path(a.out) if a.out else assets_dir()
    meta = {
        **summary,
        "readback": readback,
        "threads": a.threads,
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "diffusers": __import__("diffusers").__version__},
    }
    weights, config = save_pretrained(unet, embedding, out, meta)
    samples = out / "diffusion_world_samples.png"
    save_samples(pipe, samples)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB), {config}, {samples}")
    result = {"train_seconds": summary["train_seconds"], "accuracy": readback["accuracy"],
              "per_concept": readback["per_concept"], "n": readback["n"],
              "weights": str(weights), "config": str(config), "samples": str(samples)}
    if a.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
