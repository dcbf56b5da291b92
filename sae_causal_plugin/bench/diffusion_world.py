"""Benchmark: concept graph across timesteps and concept steering in the diffusion toy world.

``python -m sae_causal_plugin.bench diffusion-world [--seed 0] [--json]``

A thin command line over the world's experiment,
:func:`sae_causal_plugin.worlds.diffusion_world.experiment.run_experiment` (every option below is a
field of its ``DiffusionWorldConfig``), on the shipped diffusion-world denoiser:

1. **Activations.**  Scenes drawn from the world's sampling rule (each present concept with a
   random conditioning strength) are forward-noised to three timesteps (default 901 / 501 / 101,
   noisiest = most abstract; one noise draw per image shared by the timesteps) and the
   denoiser's ``mid_block.attentions.0.hook_delta`` (8x8 tokens, 32 channels: the residual
   update where the concept token enters the UNet, its only entry) is cached through the
   adapter's :func:`~sae_causal_plugin.diffusion.noised_activations`.  By default the SAEs see
   *image-level* activations, the mean over the 64 tokens (``--tokens`` trains on tokens).
2. **SAEs.**  One ``HierarchicalBatchTopKTrainingSAEConfig`` SAE per timestep, trained by SAELens's
   ``SAETrainer`` on a :class:`~sae_causal_plugin.diffusion.DiffusionActivationSource`, then saved
   and reloaded as a stock SAELens inference SAE.  As in the synthetic-hierarchy benchmark, the
   width defaults to the number of true concepts (8) and ``k`` to the world's true mean L0
   (2.125 concepts per scene).
3. **Timestep graph.**  On held-out scenes, image-level firing of every latent, the layered
   child -> parent graph between adjacent timesteps, latent -> concept assignment by F1 against
   the detector-read concepts, and edge F1 of the collapsed graph against the true hierarchy
   (rules: :mod:`sae_causal_plugin.worlds.diffusion_world.timestep_graph`).
4. **Steering** (:func:`~sae_causal_plugin.worlds.diffusion_world.steering.concept_steering`: every
   per-timestep SAE edits its own window of the 20-step DDIM schedule; the concept's latents are
   those assigned to it in step 3).  Image-level SAEs are wrapped in
   :class:`~sae_causal_plugin.worlds.diffusion_world.steering.ImageLevelSAE`: the code of the
   image mean is edited and the change is added to every token alike.  For each part / detail concept ``c``
   (not the two objects, whose parts would be left floating), ``n_samples`` scenes that contain
   ``c`` but none of its descendants are generated twice from the same noise, without and with
   ``c``'s latents ablated:

   * ``steer_success``: fraction of samples whose detector-read ``c`` changed (present -> absent);
   * ``off_target_preserved``: fraction of samples whose other seven concepts all read the same
     as in the unsteered image.

   A concept without an assigned latent counts as failed on all its samples.  For each concept
   with children, ``n_samples`` scenes containing it and all its descendants are generated with
   the concept ablated with ``include_descendants=True`` (descendants taken from the *recovered*
   concept graph): ``ablation_success`` = fraction where the concept is gone.

With ``--json`` the last line printed is one JSON object with ``edge_f1``, ``steer_success``,
``off_target_preserved``, ``ablation_success``, ``n_samples`` (steered generations in total),
``seconds`` and details.  Targets: edge F1 >= 0.80, steering >= 0.90 / >= 0.90, ablation >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args
from sae_causal_plugin.worlds.diffusion_world.experiment import TARGETS, DiffusionWorldConfig, run_experiment


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> tuple[DiffusionWorldConfig, bool]:
    p = argparse.ArgumentParser(prog="sae_causal_plugin.bench diffusion-world",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, DiffusionWorldConfig)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    a = p.parse_args(argv)
    return config_from_args(p, a, DiffusionWorldConfig), a.json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, as_json = parse_args(argv)
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        result = run_experiment(cfg, log=_log).as_dict()
    finally:
        torch.set_num_threads(threads)
    for key in ("edge_f1", "steer_success", "off_target_preserved", "ablation_success"):
        print(f"{key:22s} {result[key]:.3f}   target >= {TARGETS[key]:.2f}  "
              f"{'met' if result['met'][key] else 'NOT met'}")
    print(f"{'n_samples':22s} {result['n_samples']}\n{'seconds':22s} {result['seconds']}")
    if as_json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
