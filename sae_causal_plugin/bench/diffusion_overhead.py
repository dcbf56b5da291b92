"""Overhead of the diffusion hook points with no hooks attached, against the raw model and nnsight.

For each denoiser (a 2-level ``UNet2DConditionModel`` at 32x32, batch 4, and a
``DiTTransformer2DModel``, both built from config, no model hub) the benchmark times, interleaved
in one run:

* ``raw``: the diffusers model called directly;
* ``hooked``: the same model (shared weights) through :func:`hook_denoiser`, no hooks attached;
* ``nnsight``: ``nnsight.NNsight`` on a copy of the model (same weights), ``with
  nn_model.trace(...)`` saving the output.  A copy, because ``NNsight`` replaces the ``forward``
  of every submodule of the model it wraps, which would also slow the ``raw`` timing.

Each repetition runs the three in a rotating order after a warm-up; the reported ratio is the
median over repetitions of ``variant_time / raw_time``.  Outputs must be ``torch.equal``.

Usage::

    python -m sae_causal_plugin.bench diffusion-overhead [--repeats 30] [--seed 0] [--threads 1] [--json]

With ``--json`` the last line printed is one JSON object with keys ``ratio`` and ``nnsight_ratio``
(per denoiser class name) and ``identical``.  Targets: hooked/raw <= 1.02 and no worse than
nnsight's ratio.  nnsight comes with the ``bench`` extra (``pip install 'sae-causal-plugin[bench]'``);
without it the nnsight column is ``null``.

The process's torch RNG state and thread count are restored when :func:`main` returns.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, device_field, isolated_run, synchronize
from sae_causal_plugin.diffusion import hook_denoiser

BATCH_SIZE = 4
TIMESTEP = 500


def _models(seed: int, device: str = "cpu") -> list[tuple[nn.Module, dict[str, Any]]]:
    """The two timed denoisers (weights from ``torch.manual_seed(seed)``) and their inputs, on ``device``."""
    from diffusers import DiTTransformer2DModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=4,
    ).eval()
    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=4,
        sample_size=16,
        patch_size=2,
        norm_num_groups=4,
    ).eval()
    t = torch.full((BATCH_SIZE,), TIMESTEP, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    unet_kwargs = {
        "sample": torch.randn(BATCH_SIZE, 4, 32, 32, generator=g),
        "timestep": t,
        "encoder_hidden_states": torch.randn(BATCH_SIZE, 5, 32, generator=g),
    }
    g = torch.Generator().manual_seed(seed)
    dit_kwargs = {
        "hidden_states": torch.randn(BATCH_SIZE, 4, 16, 16, generator=g),
        "timestep": t,
        "class_labels": torch.arange(BATCH_SIZE) % 10,
    }
    return [(m.to(device), {k: v.to(device) for k, v in kw.items()})
            for m, kw in ((unet, unet_kwargs), (dit, dit_kwargs))]


def _sample(out: Any) -> Tensor:
    return out[0] if not isinstance(out, Tensor) else out


def _nnsight_runner(model: nn.Module, kwargs: dict[str, Any]) -> Callable[[], Tensor] | None:
    """nnsight tracing of a copy of ``model`` saving its output (``None`` without nnsight)."""
    try:
        from nnsight import NNsight
    except ImportError:
        return None

    nn_model = NNsight(copy.deepcopy(model))

    def run() -> Tensor:
        with nn_model.trace(**kwargs):
            out = nn_model.output.save()
        return _sample(out)

    return run


def bench_one(
    model: nn.Module, kwargs: dict[str, Any], repeats: int, warmup: int = 3, min_time: float = 0.05
) -> dict[str, Any]:
    """Median ratios hooked/raw and nnsight/raw for one model, and whether outputs match.

    Each timed measurement runs a variant ``inner`` times back to back, with ``inner`` chosen so a
    raw measurement takes about ``min_time`` seconds.
    """
    hooked = hook_denoiser(model)
    runners: dict[str, Callable[[], Tensor]] = {
        "raw": lambda: _sample(model(**kwargs)),
        "hooked": lambda: _sample(hooked(**kwargs)),
    }
    nnsight_run = _nnsight_runner(model, kwargs)
    if nnsight_run is not None:
        runners["nnsight"] = nnsight_run
    times: dict[str, list[float]] = {k: [] for k in runners}
    outputs: dict[str, Tensor] = {}
    order = list(runners)
    with torch.no_grad():
        for name, fn in runners.items():
            for _ in range(warmup):
                outputs[name] = fn()
        device = next(iter(kwargs.values())).device
        synchronize(device)
        start = time.perf_counter()
        runners["raw"]()
        synchronize(device)
        inner = max(1, round(min_time / (time.perf_counter() - start)))
        for rep in range(repeats):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for name in rotated:
                fn = runners[name]
                synchronize(device)
                start = time.perf_counter()
                for _ in range(inner):
                    outputs[name] = fn()
                synchronize(device)
                times[name].append((time.perf_counter() - start) / inner)
    ratios = {k: statistics.median(t / r for t, r in zip(times[k], times["raw"])) for k in runners}
    return {
        "ratio": ratios["hooked"],
        "nnsight_ratio": ratios.get("nnsight"),
        "median_ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "identical": all(torch.equal(outputs["raw"], out) for out in outputs.values()),
    }


@dataclass
class OverheadConfig:
    """The command line's options (``--json`` aside)."""

    repeats: int = field(default=30, metadata={"positive": True})
    """timed forwards per model and way"""
    seed: int = 0
    """seed of the models' weights and inputs"""
    threads: int = 1
    """torch CPU threads (1 = least noise; 0 leaves them)"""
    device: str = device_field()
    """where the denoisers run (cpu, cuda or cuda:N)"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and with ``--json`` prints last) the result object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_options(parser, OverheadConfig)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args, OverheadConfig)
    with isolated_run(cfg.threads):
        return _run(cfg, args.json)


def _run(cfg: OverheadConfig, as_json: bool) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    result: dict[str, Any] = {"ratio": {}, "nnsight_ratio": {}, "median_ms": {}, "identical": True}
    for model, kwargs in _models(cfg.seed, cfg.device):
        name = type(model).__name__
        res = bench_one(model, kwargs, cfg.repeats)
        nn_ratio = res["nnsight_ratio"]
        result["ratio"][name] = round(res["ratio"], 4)
        result["nnsight_ratio"][name] = None if nn_ratio is None else round(nn_ratio, 4)
        result["median_ms"][name] = {k: round(v, 3) for k, v in res["median_ms"].items()}
        result["identical"] = result["identical"] and res["identical"]
        print(
            f"{name:24s} raw {res['median_ms']['raw']:8.2f} ms  hooked/raw {res['ratio']:.4f}  "
            f"nnsight/raw {nn_ratio if nn_ratio is None else round(nn_ratio, 4)}  "
            f"identical {res['identical']}",
            file=sys.stderr if as_json else sys.stdout,
        )
    result["repeats"] = cfg.repeats
    result["seed"] = cfg.seed
    result["threads"] = torch.get_num_threads()
    if as_json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
