"""Layered concept graphs from per-level SAEs: encode, then :func:`~sae_causal_plugin.graph.layered.layered_graph_from_firing`.

:func:`recover_layered_graph` encodes paired activations with one SAE per level and hands the binary
firing to the graph layer's minimal-parent rule (conditional-mutual-information tests, see
:func:`~sae_causal_plugin.graph.parent_sets.minimal_parent_set` for why CI tests rather than sparse
regression). Edges point fine -> coarse (``"L2:7" -> "L1:3"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import DEFAULTS, layered_graph_from_firing
from sae_causal_plugin.multilevel.data import check_levels, encode_fired, to_rows


def recover_layered_graph(
    level_saes: Sequence[Any],
    paired_activations: Sequence[Tensor],
    *,
    batch_size: int = 4096,
    max_samples: int | None = None,
    **thresholds: Any,
) -> ConceptGraph:
    """Concept graph across levels from one SAE per level and paired activations.

    Minimal parent sets are found by **conditional-independence tests** (conditional mutual
    information of binary firing, grow-then-shrink as in IAMB), not by sparse regression: a
    coarse concept is a deterministic selection of a few finer ones, so once the true components
    are conditioned on, every other candidate is conditionally independent of it (the test is
    exact for deterministic selections and yields the *minimal* set), and the test does not
    assume a functional form (OR, AND and thresholded sums all pass, where a linear or noisy-OR
    regression fits only some). Candidates are first screened by co-firing count and lift, so
    each test only sees latents that co-fire with the coarse latent.

    Args:
        level_saes: one SAELens SAE per level, level 0 (most abstract) first; a latent fires when
            its code is non-zero.
        paired_activations: one tensor per level, ``[n, d_l]``, ``[batch, positions, d_l]`` or
            ``[batch, d_l, h, w]`` (see :mod:`~sae_causal_plugin.multilevel.data`); position
            ``(b, t)`` of one level is paired with position ``(b, t)`` of every other level.
        batch_size: rows encoded at once.
        max_samples: use only the first ``max_samples`` paired rows (the firing of every level is
            held in memory as ``[rows, d_sae]`` booleans).
        **thresholds: keyword arguments of :func:`layered_graph_from_firing` (``max_skip``,
            ``min_support``, ``min_cofire``, ``min_lift``, ``min_gain``, ``max_parents``,
            ``max_residual``, ``candidate_maps``, ``map_threshold``); defaults in :data:`DEFAULTS`.

    Raises:
        ValueError: fewer than two levels, a different number of SAEs and levels, an SAE whose
            ``d_in`` is not its level's width, or levels whose samples / positions do not pair up.
    """
    unknown = set(thresholds) - set(DEFAULTS) - {"candidate_maps"}
    if unknown:
        raise ValueError(f"unknown thresholds {sorted(unknown)}; choose from {sorted(DEFAULTS)} or candidate_maps.")
    check_levels(level_saes, paired_activations)
    rows = [to_rows(x) for x in paired_activations]
    if max_samples is not None:
        rows = [r[:max_samples] for r in rows]
    fired = [encode_fired(sae, r.float(), batch_size) for sae, r in zip(level_saes, rows)]
    return layered_graph_from_firing(fired, **thresholds)
