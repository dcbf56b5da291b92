"""Steer a concept through per-timestep SAEs, each SAE on its own window of denoising steps.

With one SAE per timestep (levels = timesteps), an SAE is used on the denoising steps whose
timestep is nearest to its own: :func:`timestep_windows` splits ``[0, num_train_timesteps]`` at the
midpoints between the SAE timesteps.  :func:`concept_steering` enters one
:class:`~sae_causal_plugin.diffusion.DiffusionSteering` per SAE that has latents of the concept,
so every step of the schedule is edited by the SAE trained nearest to it.

``include_descendants=True`` also edits the concept's descendants in a concept graph (nodes =
concept names, edges child -> parent, e.g. a recovered graph collapsed onto concepts): the graph
is instantiated on each SAE's latents (:func:`latent_graph`) and handed to
``DiffusionSteering(include_descendants=True, graph=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from sae_causal_plugin.diffusion.pipeline import CFGRows, HookedDiffusionPipeline, StepWindow
from sae_causal_plugin.diffusion.steering import DiffusionSteering
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.steering.core import SteeringMode


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


@dataclass(frozen=True)
class ConceptSteeringOptions:
    """How :func:`concept_steering` edits a concept, besides the mode and value."""

    hook: str | None = None
    """The hook the SAEs read (``hook_name`` of every :class:`DiffusionSteering`); required."""
    windows: Mapping[int, StepWindow] | None = None
    """``{timestep: StepWindow}``, default :func:`timestep_windows`; a window that selects no step
    of the schedule raises ``ValueError``."""
    include_descendants: bool = False
    """Also edit the concept's descendants in ``concept_graph``."""
    concept_graph: Any = None
    """A graph over concept names (edges child -> parent); needed with ``include_descendants``."""
    num_inference_steps: int | None = None
    """The schedule the windows are checked against up front."""
    strength: float = 1.0
    """Multiplies every edit; ``0`` leaves generation unchanged."""
    mask: Tensor | None = None
    """``(h, w)`` spatial weights, resized to each activation's grid, or ``(B, h, w)`` one per image."""
    cfg: CFGRows = "both"
    """CFG rows to act on: ``"cond"``, ``"uncond"`` or ``"both"``."""

    def __post_init__(self) -> None:
        if self.include_descendants and self.concept_graph is None:
            raise ValueError("include_descendants=True needs concept_graph= (a graph over concept names)")


def _latents_by_timestep(
    concept_latents: ConceptLatents, concept: str, timesteps: Sequence[int], opts: ConceptSteeringOptions,
) -> dict[int, tuple[list[int], ConceptGraph | None]]:
    """``{t: (latents to steer, latent graph or None)}`` for the SAEs that hold latents of the concept."""
    graph = opts.concept_graph
    family = [concept] + (sorted(graph.descendants(concept)) if opts.include_descendants else [])
    if not any(concept_latents.get(c, {}).get(t) for c in family for t in timesteps):
        raise ValueError(f"concept {concept!r} has no latents in the SAEs at timesteps {sorted(timesteps)}")
    out = {}
    for t in timesteps:
        at_t = {c: [int(i) for i in v.get(t, ())] for c, v in concept_latents.items()}
        ids = at_t.get(concept, [])
        if opts.include_descendants and not ids:  # the concept has no latent here, its descendants may have
            ids = sorted({i for c in family[1:] for i in at_t.get(c, ())})
        if ids:
            out[t] = (ids, latent_graph(graph, at_t) if opts.include_descendants else None)
    return out


@contextmanager
def concept_steering(
    pipe: Any,
    saes: Mapping[int, Any],
    concept_latents: ConceptLatents,
    concept: str,
    mode: SteeringMode = "ablate",
    value: float | Sequence[float] | Tensor | Mapping[int, Any] | None = None,
    options: ConceptSteeringOptions | None = None,
    **overrides: Any,
) -> Iterator[list[DiffusionSteering]]:
    """Edit one concept's latents in every per-timestep SAE, each on its own window of steps.

    Args:
        pipe: the pipeline (or a ``HookedDiffusionPipeline`` around it).
        saes: ``{timestep: SAE}`` trained on the options' ``hook``.
        concept_latents: ``{concept: {timestep: [latent, ...]}}``.
        concept: the concept to edit (``ValueError`` if it has no latents to edit).
        mode, value: as in :class:`~sae_causal_plugin.diffusion.DiffusionSteering`; ``value`` may
            also be ``{timestep: value}``, one per SAE (e.g. one per latent in sorted latent order).
        options: a :class:`ConceptSteeringOptions` (default: its defaults).
        **overrides: fields of ``options`` to replace, e.g. ``hook=``, ``include_descendants=True,
            concept_graph=...``, ``num_inference_steps=``, ``windows=``, ``strength=``.

    Yields:
        the entered ``DiffusionSteering`` contexts, one per SAE with latents of the concept.
    """
    opts = replace(options or ConceptSteeringOptions(), **overrides)
    if opts.hook is None:
        raise ValueError("give hook= (the hook point the SAEs were trained on)")
    known = set(concept_latents) | (set(opts.concept_graph.concepts) if opts.concept_graph is not None else set())
    if concept not in known:
        raise ValueError(f"concept {concept!r} has no latents in concept_latents and is not in concept_graph; "
                         f"concepts with latents: {sorted(concept_latents)}")
    if opts.include_descendants and concept not in opts.concept_graph:
        raise ValueError(f"concept {concept!r} is not a node of concept_graph")
    wins = dict(opts.windows) if opts.windows is not None else timestep_windows(list(saes))
    missing = [t for t in wins if t not in saes]
    if missing:
        raise ValueError(f"windows for timesteps {missing} that have no SAE; SAEs: {sorted(saes)}")
    plan = _latents_by_timestep(concept_latents, concept, list(wins), opts)
    target = pipe if isinstance(pipe, HookedDiffusionPipeline) else HookedDiffusionPipeline(pipe)
    with ExitStack() as stack:
        entered = []
        for t, (ids, graph) in plan.items():
            steering = DiffusionSteering(
                target, saes[t], ids, mode, value[t] if isinstance(value, Mapping) else value, hook_name=opts.hook, strength=opts.strength,
                include_descendants=graph is not None, graph=graph, window=wins[t], mask=opts.mask,
                cfg=opts.cfg, num_inference_steps=opts.num_inference_steps,
            )
            entered.append(stack.enter_context(steering))
        yield entered


__all__ = ["ConceptLatents", "ConceptSteeringOptions", "concept_steering", "latent_graph", "timestep_windows"]
