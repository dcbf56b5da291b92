"""The paper's diffusion concept graph on Stable Diffusion v1.4 (or, offline, a tiny pipeline of its shape).

Per hook of SD v1.4's 16x16 transformer blocks (``down_blocks.2.attentions.1``,
``up_blocks.1.attentions.{0,1,2}``): per-token SAEs of width 5120 at t = 899 / 500 / 100 (the
nearest steps of the schedule), trained by SAELens's ``SAETrainer`` on generated tokens, then the
spatial timestep graph and every node's mean heat map.  Writes, per hook, ``<hook>.graph.json``
and ``<hook>.heatmaps.png`` under ``--out``, and prints one JSON summary line.

    python scripts/sd14_concept_graph.py --out sd14_graph --prompts prompts.txt            # needs a GPU + the hub
    python scripts/sd14_concept_graph.py --out /tmp/tiny --tiny --d-sae 16 --sae-steps 20  # offline check

The real run is not part of any test (no hub is reachable there); ``tests/diffusion/test_token_graph.py``
runs this script's code on the tiny pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_PROMPTS = ("a photo of a face", "a portrait of a woman", "a house with a red roof", "a car on a street",
                   "a tree in a field", "a cat on a sofa", "a dog in the park", "a bowl of fruit")


def main(argv: list[str] | None = None) -> dict:
    from sae_causal_plugin.diffusion import HookedDiffusionPipeline
    from sae_causal_plugin.diffusion.sd14 import SD14, load_sd14, tiny_sd14_pipeline
    from sae_causal_plugin.diffusion.token_graph import TokenSAESpec, token_concept_graph
    from sae_causal_plugin.graph.heatmaps import draw_heatmap_graph

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--model", default=SD14.model, help="hub id or local folder of SD v1.4")
    ap.add_argument("--tiny", action="store_true", help="use the tiny SD-shaped pipeline built from config (offline)")
    ap.add_argument("--device", default="cuda", help="device of the real model (the tiny one runs on the CPU)")
    ap.add_argument("--prompts", help="text file, one prompt per line (default: a few built-in prompts)")
    ap.add_argument("--repeat", type=int, default=1, help="generations per prompt (different seeds)")
    ap.add_argument("--heldout", type=float, default=0.25, help="share of generations kept for the graph")
    ap.add_argument("--hooks", nargs="+", default=list(SD14.hooks))
    ap.add_argument("--timesteps", nargs="+", type=int, default=list(SD14.timesteps))
    ap.add_argument("--num-inference-steps", type=int, default=SD14.num_inference_steps)
    ap.add_argument("--guidance-scale", type=float, default=SD14.guidance_scale)
    ap.add_argument("--architecture", choices=("hierarchical", "batchtopk"), default="hierarchical")
    ap.add_argument("--d-sae", type=int, default=SD14.d_sae)
    ap.add_argument("--k", type=float, default=SD14.k)
    ap.add_argument("--sae-steps", type=int, default=4000)
    ap.add_argument("--sae-batch", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=4, help="prompts per generation call")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0 < args.heldout < 1:
        ap.error(f"--heldout must lie in (0, 1), got {args.heldout}")
    prompts = (Path(args.prompts).read_text().split("\n") if args.prompts else list(DEFAULT_PROMPTS))
    prompts = [p.strip() for p in prompts if p.strip()] * max(args.repeat, 1)
    n_held = max(1, round(len(prompts) * args.heldout))
    if len(prompts) - n_held < 1:
        ap.error(f"{len(prompts)} generations leave none for training; give more prompts or --repeat")
    spec = TokenSAESpec(architecture=args.architecture, d_sae=args.d_sae, k=args.k, steps=args.sae_steps,
                        batch=args.sae_batch)
    start = time.perf_counter()
    pipe = tiny_sd14_pipeline(args.seed) if args.tiny else load_sd14(args.model, device=args.device)
    hp = HookedDiffusionPipeline(pipe)
    for hook in args.hooks:
        hp.denoiser.check_hook_name(hook)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"model": "tiny" if args.tiny else args.model, "hooks": {}}
    results = token_concept_graph(hp, prompts[n_held:], prompts[:n_held], args.hooks, args.timesteps, spec,
                                  num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                                  seed=args.seed, batch=args.batch)
    for hook, result in results.items():
        stem = hook.replace(".hook_out", "").replace(".", "_")
        result.graph.save_json(out / f"{stem}.graph.json")
        drawn = []
        if result.graph.edges:
            drawn = draw_heatmap_graph(result.graph, result.heatmaps, out / f"{stem}.heatmaps.png", title=hook)
        summary["hooks"][hook] = {"timesteps": sorted(result.saes, reverse=True), "grid": list(result.grid),
                                  "nodes": len(result.graph), "edges": len(result.graph.edges), "drawn": len(drawn),
                                  "explained_variance": {str(t): round(v, 4)
                                                         for t, v in result.explained_variance.items()}}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
