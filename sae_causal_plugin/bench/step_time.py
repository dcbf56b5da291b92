"""Training-step time of each hierarchical architecture against its SAELens base, equal width.

Steps of base and hierarchical SAE are interleaved in one run (base, ours, base, ours, ...) on
the same batches, after a warm-up, so drift in machine load hits both alike; the median step
times and their ratio are printed. Run ``python -m sae_causal_plugin.bench step-time --help``.

Each step is SAELens's trainer step: it passes the dead-latent mask and counts firing as
``SAETrainer`` does, so the base computes its auxiliary (dead-latent) loss whenever latents have
been silent for ``--dead-window`` steps. The default is the hierarchical SAEs' ``revival_window``
(50), under which they compute the same auxiliary loss: the ratio is the steady state of a long
run, where both have dead latents, and it measures what the minimality terms add.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from sae_lens.saes.sae import TrainStepInput

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run, synchronize

PAIRS = ("batchtopk", "topk", "jumprelu")


@dataclass
class StepTimeConfig:
    """The command line's options (``--json`` aside)."""

    d_in: int = 64
    """input width"""
    widths: tuple[int, ...] = field(default=(256,), metadata={"option": ["--width", "--widths"], "positive": True})
    """d_sae of both SAEs (one or more; each width is its own pair)"""
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
    dead_window: int = 50
    """steps without firing after which the base's latents are dead (SAELens dead_feature_window)"""
    device: str = device_field()
    """where both SAEs train (cpu, cuda or cuda:N; CUDA steps are timed after a synchronize)"""


def build_pair(name: str, d_in: int, d_sae: int, k: int, device: str = "cpu"):
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )

    import sae_causal_plugin as plugin

    sizes = dict(d_in=d_in, d_sae=d_sae, device=device)
    if name == "batchtopk":
        return (BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**sizes, k=k)),
                plugin.HierarchicalBatchTopKTrainingSAE(
                    plugin.HierarchicalBatchTopKTrainingSAEConfig(**sizes, k=k)))
    if name == "topk":
        return (TopKTrainingSAE(TopKTrainingSAEConfig(**sizes, k=k)),
                plugin.HierarchicalTopKTrainingSAE(
                    plugin.HierarchicalTopKTrainingSAEConfig(**sizes, k=k)))
    if name == "jumprelu":
        return (JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**sizes)),
                plugin.HierarchicalJumpReLUTrainingSAE(
                    plugin.HierarchicalJumpReLUTrainingSAEConfig(**sizes)))
    raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(PAIRS)}.")


def _coefficients(sae) -> dict[str, float]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in sae.get_coefficients().items()}


def _step(sae, opt, x: torch.Tensor, step: int, coefficients: dict[str, float],
          since_fired: torch.Tensor, dead_window: int) -> float:
    """One step as ``SAETrainer`` takes it (its dead mask and firing count); returns seconds."""
    synchronize(x.device)
    start = time.perf_counter()
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=coefficients, dead_neuron_mask=since_fired > dead_window,
        n_training_steps=step, is_logging_step=False))
    with torch.no_grad():
        since_fired += 1
        since_fired[out.feature_acts.bool().float().sum(-2).bool()] = 0
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    synchronize(x.device)
    return time.perf_counter() - start


def measure(name: str, d_in: int, d_sae: int, k: int, batch: int, steps: int, warmup: int,
            seed: int, dead_window: int = 50, device: str = "cpu") -> dict[str, Any]:
    torch.manual_seed(seed)
    base, ours = build_pair(name, d_in, d_sae, k, device)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-4) for m in (base, ours)]
    coeffs = [_coefficients(m) for m in (base, ours)]
    since_fired = [torch.zeros(d_sae, dtype=torch.long, device=device) for _ in (base, ours)]
    times: list[list[float]] = [[], []]
    for step in range(warmup + steps):
        x = torch.randn(batch, d_in, device=device).relu()
        order = (0, 1) if step % 2 == 0 else (1, 0)
        for i in order:
            t = _step((base, ours)[i], opts[i], x, step, coeffs[i], since_fired[i], dead_window)
            if step >= warmup:
                times[i].append(t)
    base_ms, ours_ms = (statistics.median(t) * 1e3 for t in times)
    return {"arch": name, "width": d_sae, "base_ms": base_ms, "hierarchical_ms": ours_ms, "ratio": ours_ms / base_ms}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench step-time", description=__doc__)
    add_dataclass_options(p, StepTimeConfig)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    c = config_from_args(p, a, StepTimeConfig)
    with isolated_run():
        rows = [measure(n, c.d_in, width, c.k, c.batch, c.steps, c.warmup, c.seed, c.dead_window, c.device)
                for width in c.widths for n in c.archs]
    for r in rows:
        print(f"{r['arch']:10s} width {r['width']:6d}  base {r['base_ms']:.2f} ms  hierarchical "
              f"{r['hierarchical_ms']:.2f} ms  ratio {r['ratio']:.3f}")
    if a.json:
        ratios = {f"{r['arch']}@{r['width']}": r["ratio"] for r in rows}
        config = {**vars(a), "archs": list(c.archs), "widths": list(c.widths)}
        print(json.dumps({"config": config, "ratios": ratios, "results": rows}))
    return rows


if __name__ == "__main__":
    main()
