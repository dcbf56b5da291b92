"""Spatial steering in the part-whole world: remove a part, add a part at a chosen place, remove a
whole with its parts, each through the per-timestep SAEs, each SAE on its own window of steps
(:func:`~sae_causal_plugin.diffusion.concept_steering`), error-preserving and per token.

For every test, scenes are drawn from the world's sampling rule with the right concepts present,
generated twice from the same noise (without and with the edit) and read back by the detectors:

* **part removal** (every part ``c``, scenes with ``c``): ``c``'s latents are ablated.  Counted over
  the samples whose unsteered image shows ``c``: ``part_removal_success`` = ``c`` gone;
  ``off_target_preserved`` = every other concept reads as in the unsteered image;
  ``outside_changed`` = share of pixels more than 1 pixel away from ``c`` where some layer changed by more than 0.25.
* **part addition** (every part ``c`` and host region ``h``, scenes with ``h`` and without ``c``):
  a place is chosen in the unsteered image, one of ``c``'s slots inside ``h`` (found from the
  detected whole and region), and ``c``'s latents are added there only (a per-image ``(16, 16)``
  mask) at ``add_scale`` times their mean firing activation.  ``part_addition_success`` = ``c`` read
  back with at least 2 of its 4 pixels on the chosen place.
* **whole removal** (every whole ``w``, scenes with ``w``): ``w``'s latents and those of its
  descendants in the *recovered* concept graph are ablated; ``whole_removal_success`` = neither ``w``
  nor any of its true parts read back.

A concept without latents counts as failed on all its samples and is listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool
from torch import Tensor

from sae_causal_plugin.diffusion import StepWindow, concept_steering
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.worlds.part_world.concepts import (
    BOX, CONCEPT_INDEX, PART, PART_AREAS, PARENTS, WHOLES, descendants, sample_layout, slots,
)
from sae_causal_plugin.worlds.part_world.detectors import detect_concepts, detected_masks
from sae_causal_plugin.worlds.part_world.model import PartWorldPipeline
from sae_causal_plugin.worlds.part_world.scenes import scene_noise

ConceptLatents = Mapping[str, Mapping[int, Sequence[int]]]


def scenes_where(n: int, gen: torch.Generator, present: Sequence[str] = (), absent: Sequence[str] = ()
                 ) -> Bool[Tensor, "n c"]:
    """``n`` label vectors from the world's sampling rule with ``present`` all there and ``absent`` not."""
    out: list[Tensor] = []
    for _ in range(200):
        lab = sample_layout(max(4 * n, 64), gen).labels
        ok = torch.ones(lab.shape[0], dtype=torch.bool)
        for c in present:
            ok &= lab[:, CONCEPT_INDEX[c]]
        for c in absent:
            ok &= ~lab[:, CONCEPT_INDEX[c]]
        out.append(lab[ok])
        if sum(len(o) for o in out) >= n:
            return torch.cat(out)[:n]
    raise ValueError(f"the world has almost no scenes with {list(present)} and without {list(absent)}")


def _generate(pipe: PartWorldPipeline, labels: Tensor, noise: Tensor, steps: int) -> Tensor:
    return pipe(labels, num_inference_steps=steps, latents=noise)


def _dilate(mask: Bool[Tensor, "n h w"]) -> Bool[Tensor, "n h w"]:
    return F.max_pool2d(mask.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0


def _place(base_masks: Tensor, part: str, host: str, gen: torch.Generator) -> Tensor:
    """Per image a ``(16, 16)`` 0/1 mask of one of ``part``'s slots in ``host``, inside the detected host."""
    whole = PARENTS[host][0]
    places = torch.zeros(base_masks.shape[0], 16, 16)
    for b in range(base_masks.shape[0]):
        box = base_masks[b, CONCEPT_INDEX[whole]]
        region = base_masks[b, CONCEPT_INDEX[host]]
        if not box.any() or not region.any():
            continue
        rows, cols = torch.nonzero(box, as_tuple=True)
        r0 = min(max(int(rows.min()), 0), 16 - BOX)
        c0 = min(max(int(cols.min()), 0), 16 - BOX)
        options = [(r0 + r, c0 + c) for r, c in slots(part, host)
                   if bool(region[r0 + r : r0 + r + PART, c0 + c : c0 + c + PART].all())]
        if options:
            r, c = options[int(torch.randint(0, len(options), (1,), generator=gen))]
            places[b, r : r + PART, c : c + PART] = 1.0
    return places


def steering_eval(pipe: PartWorldPipeline, saes: Mapping[int, Any], latents: ConceptLatents,
                  values: Mapping[tuple[int, int], float], graph: ConceptGraph, *, hook: str, n_samples: int = 24,
                  num_inference_steps: int = 20, add_scale: float = 1.0, seed: int = 0,
                  windows: str = "nearest", examples: list[dict[str, Any]] | None = None, n_show: int = 8
                  ) -> dict[str, Any]:
    """The three tests of the module docstring; ``values[(t, latent)]``: mean firing activation.

    ``examples``, when given, receives per test kind (``removal`` / ``addition`` / ``whole``) the
    first concept that has latents: ``{"kind", "concept", "before", "after", "succeeded"}`` with the
    first ``n_show`` unsteered and steered images and whether each edit did what it should.

    ``windows="nearest"``: each SAE edits the steps nearest its timestep; ``"all"``: every SAE
    edits every step (a concept the conditioning keeps asking for is otherwise drawn again later).
    """
    if windows not in ("nearest", "all"):
        raise ValueError(f"windows must be 'nearest' or 'all', got {windows!r}")
    gen = torch.Generator().manual_seed(seed)
    steps = num_inference_steps
    common: dict[str, Any] = dict(hook=hook, num_inference_steps=steps)
    if windows == "all":
        common["windows"] = {t: StepWindow() for t in saes}
    rows: dict[str, Any] = {"removal": {}, "addition": {}, "whole": {}}

    def keep(kind: str, concept: str, before: Tensor, after: Tensor, ok: Tensor) -> None:
        if examples is not None and not any(e["kind"] == kind for e in examples):
            examples.append({"kind": kind, "concept": concept, "before": before[:n_show], "after": after[:n_show],
                             "succeeded": ok[:n_show].tolist()})

    tally = dict(rem_ok=0, rem_n=0, kept=0, add_ok=0, add_n=0, whole_ok=0, whole_n=0, generated=0)
    outside: list[float] = []
    for part in PART_AREAS:
        labels = scenes_where(n_samples, gen, present=[part])
        noise = scene_noise(n_samples, gen)
        base = _generate(pipe, labels, noise, steps)
        det_b = detect_concepts(base)
        valid = det_b[:, CONCEPT_INDEX[part]]
        tally["rem_n"] += int(valid.sum())
        if not any(latents.get(part, {}).values()):
            rows["removal"][part] = {"success": 0.0, "note": "no latent"}
            continue
        with concept_steering(pipe, saes, latents, part, "ablate", **common):
            steered = _generate(pipe, labels, noise, steps)
        tally["generated"] += 2 * n_samples
        det_s = detect_concepts(steered)
        gone = valid & ~det_s[:, CONCEPT_INDEX[part]]
        others = torch.ones(det_b.shape[1], dtype=torch.bool)
        others[CONCEPT_INDEX[part]] = False
        same = (det_s[:, others] == det_b[:, others]).all(1)
        keep("removal", part, base, steered, gone)
        tally["rem_ok"] += int(gone.sum())
        tally["kept"] += int((valid & same).sum())
        near = _dilate(detected_masks(base)[:, CONCEPT_INDEX[part]])
        changed = (steered - base).abs().amax(1) > 0.25
        far = (changed & ~near).float().sum((1, 2)) / (~near).float().sum((1, 2)).clamp(min=1)
        outside += far[valid].tolist()
        rows["removal"][part] = {"success": float(gone.sum()) / max(int(valid.sum()), 1),
                                 "others_kept": float((valid & same).sum()) / max(int(valid.sum()), 1),
                                 "valid": int(valid.sum())}
    for part, hosts in PART_AREAS.items():
        for host in hosts:
            labels = scenes_where(n_samples, gen, present=[host], absent=[part])
            noise = scene_noise(n_samples, gen)
            base = _generate(pipe, labels, noise, steps)
            places = _place(detected_masks(base), part, host, gen)
            valid = places.flatten(1).any(1)
            tally["add_n"] += int(valid.sum())
            at_t = latents.get(part, {})
            if not any(at_t.values()):
                rows["addition"][f"{part}@{host}"] = {"success": 0.0, "note": "no latent"}
                continue
            amounts = {t: [add_scale * values[(t, i)] for i in sorted(ids)] for t, ids in at_t.items() if ids}
            with concept_steering(pipe, saes, latents, part, "add", value=amounts, mask=places, **common):
                steered = _generate(pipe, labels, noise, steps)
            tally["generated"] += 2 * n_samples
            drawn = detected_masks(steered)[:, CONCEPT_INDEX[part]]
            hit = valid & ((drawn & (places > 0)).flatten(1).sum(1) >= 2)
            keep("addition", f"{part}@{host}", base, steered, hit)
            tally["add_ok"] += int(hit.sum())
            rows["addition"][f"{part}@{host}"] = {"success": float(hit.sum()) / max(int(valid.sum()), 1),
                                                  "valid": int(valid.sum())}
    for whole in WHOLES:
        labels = scenes_where(n_samples, gen, present=[whole])
        noise = scene_noise(n_samples, gen)
        base = _generate(pipe, labels, noise, steps)
        valid = detect_concepts(base)[:, CONCEPT_INDEX[whole]]
        tally["whole_n"] += int(valid.sum())
        if not any(latents.get(whole, {}).values()) or whole not in graph:
            rows["whole"][whole] = {"success": 0.0, "note": "no latent"}
            continue
        with concept_steering(pipe, saes, latents, whole, "ablate", include_descendants=True,
                              concept_graph=graph, **common):
            steered = _generate(pipe, labels, noise, steps)
        tally["generated"] += 2 * n_samples
        family = [CONCEPT_INDEX[c] for c in {whole} | descendants(whole)]
        gone = valid & ~detect_concepts(steered)[:, family].any(1)
        keep("whole", whole, base, steered, gone)
        tally["whole_ok"] += int(gone.sum())
        rows["whole"][whole] = {"success": float(gone.sum()) / max(int(valid.sum()), 1), "valid": int(valid.sum())}
    return {
        "part_removal_success": tally["rem_ok"] / max(tally["rem_n"], 1),
        "off_target_preserved": tally["kept"] / max(tally["rem_n"], 1),
        "outside_changed": sum(outside) / max(len(outside), 1),
        "part_addition_success": tally["add_ok"] / max(tally["add_n"], 1),
        "whole_removal_success": tally["whole_ok"] / max(tally["whole_n"], 1),
        "n_samples": tally["generated"],
        "per_test": rows,
    }


__all__ = ["scenes_where", "steering_eval"]
