"""The part world's supervised ceiling: linear concept probes in place of the SAE dictionary.

Tells the two causes of a wrong graph apart.  A probe per concept of a timestep's level (logistic
regression of "this token lies in the concept's true mask" on the hook's standardised tokens,
positives up-weighted by the square root of their rarity) stands in for that level's SAE: its
firing goes through the same :func:`~sae_causal_plugin.graph.spatial.recover_spatial_timestep_graph`
and the same scoring.  A high ``probe_edge_f1`` with a low SAE edge F1 means the hierarchy is
(linearly) present at the hook and the graph rules work, so unsupervised dictionary learning is the
gap; a low one means the reading point or the graph rules are.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin._rng import keeps_global_rng
from sae_causal_plugin.worlds.part_world.concepts import CONCEPT_INDEX, LEVELS

#: Adam steps and rows per step of every probe fit.
PROBE_STEPS = 600
PROBE_BATCH = 16384


@keeps_global_rng
def fit_probes(train: Float[Tensor, "rows d"], train_masks: Bool[Tensor, "rows c"], held: Float[Tensor, "m d"],
               seed: int = 0, steps: int = PROBE_STEPS) -> Bool[Tensor, "m c"]:
    """Fit one linear probe per mask column on ``train``; which held-out rows each probe calls positive."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if train.shape[0] != train_masks.shape[0]:
        raise ValueError(f"train has {train.shape[0]} rows but train_masks {train_masks.shape[0]}")
    if train.shape[1] != held.shape[1]:
        raise ValueError(f"train has {train.shape[1]} channels but held {held.shape[1]}")
    torch.manual_seed(seed)
    mu, sd = train.mean(0), train.std(0) + 1e-6
    x, m = (train - mu) / sd, train_masks.float()
    rate = m.mean(0)
    pos_weight = ((1 - rate) / rate.clamp(min=1e-4)).clamp(max=100).sqrt()
    lin = torch.nn.Linear(x.shape[1], m.shape[1])
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(PROBE_BATCH, x.shape[0]),))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(x[idx]), m[idx], pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return lin((held - mu) / sd) > 0


def probe_firing(acts: dict[int, Float[Tensor, "rows d"]], masks: Bool[Tensor, "n tokens c"], n_train: int,
                 seed: int = 0, steps: int = PROBE_STEPS) -> tuple[dict[int, Bool[Tensor, "m tokens k"]], dict[str, str]]:
    """Per timestep (noisiest first = level 0), the held-out firing of the probes of that level's concepts.

    ``acts[t]`` holds ``n_images * tokens`` rows, the first ``n_train`` images for fitting; returns
    ``({t: bool [n_eval, tokens, n_level_concepts]}, {node: concept})`` with nodes as the graph names them.
    """
    timesteps = sorted(acts, reverse=True)
    if len(timesteps) > len(LEVELS):
        raise ValueError(f"the part world has {len(LEVELS)} levels; give at most that many timesteps, got {timesteps}")
    n, tokens = masks.shape[:2]
    split = n_train * tokens
    flat = masks.flatten(0, 1)
    firing: dict[int, Tensor] = {}
    names: dict[str, str] = {}
    for lvl, t in enumerate(timesteps):
        cols = [CONCEPT_INDEX[c] for c in LEVELS[lvl]]
        fired = fit_probes(acts[t][:split].float(), flat[:split, cols], acts[t][split:].float(), seed=seed + lvl,
                           steps=steps)
        firing[t] = fired.view(n - n_train, tokens, len(cols))
        names.update({f"t{t}:{j}": c for j, c in enumerate(LEVELS[lvl])})
    return firing, names


__all__ = ["PROBE_BATCH", "PROBE_STEPS", "fit_probes", "probe_firing"]
