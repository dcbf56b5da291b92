"""Training-step time of each hierarchical architecture against its SAELens base, equal width.

Steps of base and hierarchical SAE are interleaved in one run (base, ours, base, ours, ...) on
the same batches, after a warm-up, so drift in machine load hits both alike; the median step
times and their ratio are printed. Run ``python -m sae_causal_plugin.bench step-time --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from sae_lens.saes.sae import TrainStepInput

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, isolated_run

PAIRS = ("batchtopk", "topk", "jumprelu")


@dataclass
class StepTimeConfig:
    """The command line's options (``--json`` aside)."""

    d_in: int = 64
    """input width"""
    width: int = 256
    """d_sae of both SAEs"""
    k: int = 7
    """L0 (k) of both SAEs"""
    batch: int = 1024
    """rows per training step"""
    steps: int = 200
    """timed steps per SAE"""
    warmup: int = 20
    """untimed steps first"""
    seed: int = 0
    """seed of the SAEs and the batches"""
    archs: tuple[Literal["batchtopk", "topk", "jumprelu"], ...] = PAIRS
    """architectures to time"""


def build_pair(name: str, d_in: int, d_sae: int, k: int):
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )

    import sae_causal_plugin as plugin

    if name == "batchtopk":
        return (BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)),
                plugin.HierarchicalBatchTopKTrainingSAE(
                    plugin.HierarchicalBatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)))
    if name == "topk":
        return (TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)),
                plugin.HierarchicalTopKTrainingSAE(
                    plugin.HierarchicalTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)))
    if name == "jumprelu":
        return (JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae)),
                plugin.HierarchicalJumpReLUTrainingSAE(
                    plugin.HierarchicalJumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae)))
    raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(PAIRS)}.")


def _coefficients(sae) -> dict[str, float]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in sae.get_coefficients().items()}


def _step(sae, opt, x: torch.Tensor, step: int, coefficients: dict[str, float]) -> float:
    start = time.perf_counter()
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=coefficients, dead_neuron_mask=None, n_training_steps=step,
        is_logging_step=False))
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(name: str, d_in: int, d_sae: int, k: int, batch: int, steps: int, warmup: int,
            seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    base, ours = build_pair(name, d_in, d_sae, k)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-4) for m in (base, ours)]
    coeffs = [_coefficients(m) for m in (base, ours)]
    times: list[list[float]] = [[], []]
    for step in range(warmup + steps):
        x = torch.randn(batch, d_in).relu()
        order = (0, 1) if step % 2 == 0 else (1, 0)
        for i in order:
            t = _step((base, ours)[i], opts[i], x, step, coeffs[i])
            if step >= warmup:
                times[i].append(t)
    base_ms, ours_ms = (statistics.median(t) * 1e3 for t in times)
    return {"arch": name, "base_ms": base_ms, "hierarchical_ms": ours_ms, "ratio": ours_ms / base_ms}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench step-time", description=__doc__)
    add_dataclass_options(p, StepTimeConfig)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    c = config_from_args(p, a, StepTimeConfig)
    with isolated_run():
        rows = [measure(n, c.d_in, c.width, c.k, c.batch, c.steps, c.warmup, c.seed) for n in c.archs]
    for r in rows:
        print(f"{r['arch']:10s} base {r['base_ms']:.2f} ms  hierarchical {r['hierarchical_ms']:.2f} ms"
              f"  ratio {r['ratio']:.3f}")
    if a.json:
        print(json.dumps({"config": {**vars(a), "archs": list(c.archs)}, "results": rows}))
    return rows


if __name__ == "__main__":
    main()
