"""Retrain the part-whole world's denoiser and write the shipped weights.

Trains the ``UNet2DConditionModel`` and concept tokens of :mod:`sae_causal_plugin.worlds.part_world`
(:mod:`sae_causal_plugin.worlds.part_world.train`), then generates ``--eval`` scenes of fresh layouts
with 20 DDIM steps and reads them back with the rule-based detectors.  Fixed seeds; with the same
``--threads`` a rerun on the same machine and library versions reproduces the weights.

Usage::

    python scripts/train_part_world.py [--steps 3000] [--seed 0] [--threads 2]
        [--out sae_causal_plugin/worlds/assets] [--json]

Writes ``part_world_denoiser.safetensors`` (EMA weights, float32), ``part_world_config.json``
(architecture, scheduler, training summary, read-back accuracy) and ``part_world_samples.png``
into ``--out``.  With ``--json`` the last line printed is one JSON object with ``train_seconds``,
``accuracy``, ``per_concept`` and the output paths.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sae_causal_plugin.worlds.denoiser_training import sample_grid, save_png
from sae_causal_plugin.worlds.part_world.concepts import sample_layout
from sae_causal_plugin.worlds.part_world.model import PartWorldPipeline, assets_dir, save_pretrained
from sae_causal_plugin.worlds.part_world.scenes import composite
from sae_causal_plugin.worlds.part_world.train import TrainConfig, readback_accuracy, train_denoiser


def main(argv: list[str] | None = None) -> dict:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="output directory (default: the package's assets)")
    p.add_argument("--eval", type=int, default=400, help="generated scenes to read back")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    if a.steps <= 0 or a.batch_size <= 0 or a.eval <= 0 or a.threads <= 0:
        p.error("--steps, --batch-size, --eval and --threads must be positive")
    torch.set_num_threads(a.threads)
    unet, tokens, summary = train_denoiser(TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed))
    pipe = PartWorldPipeline(unet, tokens)
    start = time.perf_counter()
    readback = readback_accuracy(pipe, n=a.eval, seed=a.seed + 100)
    print(f"read-back accuracy {readback['accuracy']:.4f} over {readback['n']} scenes "
          f"({time.perf_counter() - start:.0f}s); worst concepts "
          + ", ".join(f"{c} {v:.3f}" for c, v in sorted(readback["per_concept"].items(), key=lambda kv: kv[1])[:5]))
    out = Path(a.out) if a.out else assets_dir()
    meta = {**summary, "threads": a.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "readback": readback}
    weights, config = save_pretrained(unet, tokens, out, metadata=meta)
    labels = sample_layout(36, torch.Generator().manual_seed(1234)).labels
    samples = out / "part_world_samples.png"
    save_png(sample_grid(composite(pipe(labels, generator=torch.Generator().manual_seed(1234))), ncol=12), str(samples))
    result = {"train_seconds": summary["train_seconds"], "accuracy": readback["accuracy"],
              "per_concept": readback["per_concept"], "weights": str(weights), "config": str(config),
              "samples": str(samples), "weights_mb": round(weights.stat().st_size / 2**20, 2)}
    print(f"train {summary['train_seconds']:.0f}s, weights {result['weights_mb']} MB -> {out}")
    if a.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
