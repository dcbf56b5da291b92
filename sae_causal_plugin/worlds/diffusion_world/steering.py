"""Steer a diffusion-world concept through per-timestep SAEs, each on its own window of steps.

With one SAE per timestep (levels = timesteps), an SAE is used on the denoising steps whose
timestep is nearest to its own: :func:`timestep_windows` splits ``[0, num_train_timesteps]`` at the
midpoints between the SAE timesteps.  :func:`concept_steering` enters one
:class:`~sae_causal_plugin.diffusion.DiffusionSteering` per SAE that has latents of the concept,
so every step of the schedule is edited by the SAE trained nearest to it.

``include_descendants=True`` also edits the concept's descendants in a concept graph (nodes =
concept names, edges child -> parent, e.g. a recovered graph collapsed onto concepts or
:func:`.concepts.true_graph`): the graph is instantiated on each SAE's latents
(:func:`latent_graph`) and handed to ``DiffusionSteering(include_descendants=True, graph=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin.diffusion import DiffusionSteering, HookedDiffusionPipeline, StepWindow
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.worlds.diffusion_world.concepts import check_concept
from sae_causal_plugin.worlds.diffusion_world.model import DEFAULT_STEPS, HOOK

class ImageLevelSAE:
    """An SAE trained on image-level (token-mean) activations, used on every token of an image.

    ``encode`` takes the rows of a feature map in ``to_tokens`` order (each image's
    ``tokens_per_image`` rows together), encodes each image's mean and repeats that code on the
    image's rows.  Error-preserving steering through it therefore moves every token of an image by
    the same ``W_dec[S] (z'_S - z_S)``, i.e. it edits the image mean the SAE was trained on, where a
    per-token encoding would see activations the SAE never saw.  Everything else (``cfg``,
    ``W_dec``, ``decode``, ...) is the wrapped SAE's.
    """

    def __init__(self, sae: Any, tokens_per_image: int):
        if tokens_per_image < 1:
            raise ValueError(f"tokens_per_image must be >= 1, got {tokens_per_image}")
        self.sae = sae
        self.tokens_per_image = int(tokens_per_image)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["sae"], name)

    def encode(self, rows: Tensor) -> Tensor:
        n = self.tokens_per_image
        if rows.ndim != 2 or rows.shape[0] % n:
            raise ValueError(
                f"ImageLevelSAE.encode needs [n_images * {n}, d_in] rows, got {tuple(rows.shape)}"
            )
        code = self.sae.encode(rows.reshape(-1, n, rows.shape[-1]).mean(1))
        return torch.repeat_interleave(code, n, dim=0)


#: ``{concept: {timestep: [latent, ...]}}``
ConceptLatents = Mapping[str, Mapping[int, Sequence[int]]]


def timestep_windows(timesteps: Sequence[int], num_train_timesteps: int = 1000) -> dict[int, StepWindow]:
    """``{t: StepWindow}``: each SAE timestep gets the timesteps nearest to it.

    ``[901, 501, 101]`` -> ``901: (702, 1000)``, ``501: (302, 701)``, ``101: (0, 301)``.
    """
    ts = sorted({int(t) for t in timesteps}, reverse=True)
    if not ts:
        raise ValueError("give at least one SAE timestep")
    bad = [t for t in ts if not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(f"timesteps {bad} are outside [0, {num_train_timesteps})")
    out = {}
    hi = num_train_timesteps
    for i, t in enumerate(ts):
        lo = 0 if i == len(ts) - 1 else (t + ts[i + 1]) // 2 + 1
        out[t] = StepWindow(timesteps=(lo, hi))
        hi = lo - 1
    return out


def latent_graph(concept_graph: Any, latents_at_t: Mapping[str, Sequence[int]]) -> ConceptGraph:
    """A concept graph instantiated on one SAE's latents.

    Every edge ``a -> b`` of ``concept_graph`` becomes edges ``i -> j`` for every latent ``i`` of
    ``a`` and ``j`` of ``b`` in ``latents_at_t`` (``{concept: [latent, ...]}``); a latent that
    belongs to several concepts is kept where it does not close a cycle.
    """
    g = ConceptGraph()
    for ids in latents_at_t.values():
        for i in ids:
            g.add_concept(int(i))
    for a, b in concept_graph.edges:
        for i in latents_at_t.get(a, ()):
            for j in latents_at_t.get(b, ()):
                if int(i) == int(j):
                    continue
                try:
                    g.add_edge(int(i), int(j))
                except ValueError:
                    pass  # would close a cycle
    return g


@contextmanager
def concept_steering(
    pipe: Any,
    saes: Mapping[int, Any],
    concept_latents: ConceptLatents,
    concept: str,
    mode: str = "ablate",
    value: float | Sequence[float] | Tensor | None = None,
    *,
    hook: str = HOOK,
    windows: Mapping[int, StepWindow] | None = None,
    include_descendants: bool = False,
    concept_graph: Any = None,
    num_inference_steps: int | None = DEFAULT_STEPS,
    **kwargs: Any,
) -> Iterator[list[DiffusionSteering]]:
    """Edit one concept's latents in every per-timestep SAE, each on its own window of steps.

    Args:
        pipe: the pipeline (or a ``HookedDiffusionPipeline`` around it).
        saes: ``{timestep: SAE}`` trained on ``hook``.
        concept_latents: ``{concept: {timestep: [latent, ...]}}``.
        concept: the concept to edit (``ValueError`` if it is not a concept of the world).
        mode, value: as in :class:`~sae_causal_plugin.diffusion.DiffusionSteering`.
        hook: the hook the SAEs read.
        windows: ``{timestep: StepWindow}`` (default :func:`timestep_windows`); a window that
            selects no step of the schedule raises ``ValueError``.
        include_descendants: also edit the concept's descendants in ``concept_graph``.
        concept_graph: a graph over concept names (needed with ``include_descendants``).
        num_inference_steps: the schedule the windows are checked against up front.
        **kwargs: more ``DiffusionSteering`` arguments (``strength``, ``mask``, ``cfg``).

    Yields:
        the entered ``DiffusionSteering`` contexts.
    """
    check_concept(concept)
    if include_descendants and concept_graph is None:
        raise ValueError("include_descendants=True needs concept_graph= (a graph over concept names)")
    if include_descendants and concept not in concept_graph:
        raise ValueError(f"concept {concept!r} is not a node of concept_graph")
    wins = dict(windows) if windows is not None else timestep_windows(list(saes))
    missing = [t for t in wins if t not in saes]
    if missing:
        raise ValueError(f"windows for timesteps {missing} that have no SAE; SAEs: {sorted(saes)}")
    own = concept_latents.get(concept, {})
    family = [concept] + (sorted(concept_graph.descendants(concept)) if include_descendants else [])
    if not any(concept_latents.get(c, {}).get(t) for c in family for t in wins):
        raise ValueError(f"concept {concept!r} has no latents in the SAEs at timesteps {sorted(wins)}")
    target = pipe if isinstance(pipe, HookedDiffusionPipeline) else HookedDiffusionPipeline(pipe)
    with ExitStack() as stack:
        entered = []
        for t, window in wins.items():
            ids = [int(i) for i in own.get(t, ())]
            extra: dict[str, Any] = {}
            if include_descendants:
                at_t = {c: list(v.get(t, ())) for c, v in concept_latents.items()}
                extra = dict(include_descendants=True, graph=latent_graph(concept_graph, at_t))
                if not ids:  # the concept has no latent here, its descendants may have
                    ids = sorted({int(i) for c in family[1:] for i in at_t.get(c, ())})
            if not ids:
                continue
            steering = DiffusionSteering(
                target, saes[t], hook, ids, mode, value, window=window,
                num_inference_steps=num_inference_steps, **extra, **kwargs,
            )
            entered.append(stack.enter_context(steering))
        yield entered


__all__ = ["ConceptLatents", "ImageLevelSAE", "concept_steering", "latent_graph", "timestep_windows"]
