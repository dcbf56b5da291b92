"""Recover a concept graph (child -> parent DAG) from an SAE's co-firing statistics.

Pipeline of :func:`recover_concept_graph`:

1. **Statistics** (one streaming pass, :class:`~.cofiring.CoFiringStats`): firing counts and
   sparse co-firing counts of the SAE latents.
2. **Candidate edges** (:func:`select_candidate_edges`): ``c -> p`` when
   ``P(p | c) >= min_conditional``, ``count(c) >= min_support``, ``lift(c, p) >= min_lift``,
   ``p`` is coarser than ``c`` (fires more often; ties broken by the smaller latent index
   being the parent) and, if ``max_parent_rate_ratio`` is set,
   ``count(p) <= max_parent_rate_ratio * count(c)``.  Because every candidate edge goes up
   a strict total order, the candidate graph is always acyclic.
3. **Minimal parent sets** (graph-sparsity minimality):

   a. *transitive reduction* (:func:`transitive_reduction_edges`): if ``c -> q`` and
      ``q -> ... -> p`` then ``c -> p`` is dropped (``c`` selects ``p`` through ``q``);
   b. *explained parents* (:func:`drop_explained_parents`): among the remaining parents
      of a child ``c``, a parent ``p`` is dropped when another parent ``q`` of ``c`` that is
      finer than ``p`` nearly implies it, ``P(p | q) >= min_conditional - explain_margin``.
      Such a ``c -> p`` is a transitive shortcut whose link ``q -> p`` fell just under the
      threshold through noise; keeping both would give ``c`` a redundant parent.
      Genuine multiple parents (``dog -> animal``, ``dog -> pet``) survive, because
      ``P(pet | animal)`` is low.  ``explain_margin=0`` disables the rule in practice.

Nodes are the latents that fired at least ``min_support`` times, with attributes
``firing_count``, ``firing_rate`` and ``level`` (0 = root of the recovered DAG, else
``1 + max(level of parents)``).

The statistics and pruning steps are plain functions on tensors / dicts / edge lists, so
they can be tested and reused without an SAE.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import networkx as nx
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ._activations import ENCODE_ELEMENTS, iter_checked_batches
from .cofiring import CoFiringStats, to_padded_indices
from .shards import OneShard, Shards, head_share
from .concept_graph import EDGE_STAT_KEYS, ConceptGraph
from .thresholds import DEFAULT_EXPLAIN_MARGIN, DEFAULT_MIN_CONDITIONAL, DEFAULT_MIN_LIFT, DEFAULT_MIN_SUPPORT

Edge = tuple[int, int]


# ---------------------------------------------------------------------------- pure steps
def select_candidate_edges(
    table: Mapping[str, Tensor],
    *,
    n_samples: int,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_lift: float = DEFAULT_MIN_LIFT,
    max_parent_rate_ratio: float | None = None,
    max_reverse: float | None = None,
) -> dict[str, Tensor]:
    """Filter an edge table (see :meth:`CoFiringStats.edge_table`) to candidate edges.

    ``table`` needs the columns ``child``, ``parent``, ``count_child``, ``count_parent``
    and ``count_both``; an optional ``count_both_upper`` (lossy-counting upper bound) is
    used for the threshold tests so that pruning never removes a candidate.  With
    ``max_reverse``, a candidate also needs ``P(child | parent) <= max_reverse`` (counted
    co-firings).  Returns the filtered table (same columns).
    """
    child, parent = table["child"], table["parent"]
    n_c = table["count_child"].to(torch.float64)
    n_p = table["count_parent"].to(torch.float64)
    co = table.get("count_both_upper", table["count_both"]).to(torch.float64)
    coarser = (n_p > n_c) | ((n_p == n_c) & (parent < child))
    keep = coarser & (n_c >= min_support) & (n_c > 0)
    keep &= co >= min_conditional * n_c - 1e-9 * n_c
    if min_lift > 0:
        keep &= co * n_samples >= min_lift * n_c * n_p * (1 - 1e-12)
    if max_parent_rate_ratio is not None:
        keep &= n_p <= max_parent_rate_ratio * n_c
    if max_reverse is not None:
        keep &= table["count_both"].to(torch.float64) / n_p.clamp(min=1) <= max_reverse + 1e-12
    return {k: v[keep] for k, v in table.items()}


def transitive_reduction_edges(edges: Iterable[Edge]) -> set[Edge]:
    """Edges of the transitive reduction of a DAG given as ``(child, parent)`` pairs."""
    g = nx.DiGraph()
    g.add_edges_from(edges)
    if not nx.is_directed_acyclic_graph(g):
        raise ValueError("candidate edges contain a cycle; expected a DAG")
    return set(nx.transitive_reduction(g).edges)


def explained_parent_queries(edges: Iterable[Edge], coarseness: Mapping[int, Any]) -> list[Edge]:
    """Pairs ``(q, p)`` whose ``P(p | q)`` the explained-parent rule needs.

    For every child with at least two parents, all ordered pairs of its parents where
    ``q`` is finer than ``p`` (``coarseness[q] < coarseness[p]``).
    """
    parents: dict[int, list[int]] = defaultdict(list)
    for c, p in edges:
        parents[c].append(p)
    out: set[Edge] = set()
    for ps in parents.values():
        for q in ps:
            for p in ps:
                if q != p and coarseness[q] < coarseness[p]:
                    out.add((q, p))
    return sorted(out)


def drop_explained_parents(
    edges: Iterable[Edge],
    parent_conditional: Mapping[Edge, float],
    coarseness: Mapping[int, Any],
    *,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    explain_margin: float = DEFAULT_EXPLAIN_MARGIN,
) -> set[Edge]:
    """Drop ``c -> p`` when another parent ``q`` of ``c``, finer than ``p``, has
    ``P(p | q) = parent_conditional[(q, p)] >= min_conditional - explain_margin``.

    All of ``c``'s parents act as explainers (order-independent result).
    """
    edges = set(edges)
    parents: dict[int, list[int]] = defaultdict(list)
    for c, p in edges:
        parents[c].append(p)
    threshold = min_conditional - explain_margin
    dropped: set[Edge] = set()
    for c, ps in parents.items():
        for p in ps:
            for q in ps:
                if q == p or not coarseness[q] < coarseness[p]:
                    continue
                if parent_conditional.get((q, p), 0.0) >= threshold - 1e-12:
                    dropped.add((c, p))
                    break
    return edges - dropped


def minimal_parent_edges(
    candidates: Iterable[Edge],
    coarseness: Mapping[int, Any],
    parent_conditional: Callable[[list[Edge]], Mapping[Edge, float]],
    *,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    explain_margin: float = DEFAULT_EXPLAIN_MARGIN,
) -> set[Edge]:
    """Transitive reduction followed by the explained-parent rule.

    ``parent_conditional(queries)`` returns ``P(p | q)`` for the requested ``(q, p)``.
    """
    reduced = transitive_reduction_edges(candidates)
    if explain_margin <= 0:
        return reduced
    queries = explained_parent_queries(reduced, coarseness)
    if not queries:
        return reduced
    return drop_explained_parents(
        reduced,
        parent_conditional(queries),
        coarseness,
        min_conditional=min_conditional,
        explain_margin=explain_margin,
    )


def build_concept_graph(
    stats: CoFiringStats,
    *,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_lift: float = DEFAULT_MIN_LIFT,
    max_parent_rate_ratio: float | None = None,
    explain_margin: float = DEFAULT_EXPLAIN_MARGIN,
) -> ConceptGraph:
    """Turn accumulated :class:`CoFiringStats` into a :class:`ConceptGraph` (steps 2-3)."""
    counts = stats.firing_counts.cpu()
    n = stats.n_samples
    parts = [
        select_candidate_edges(
            {k: v.cpu() for k, v in table.items()},
            n_samples=n,
            min_conditional=min_conditional,
            min_support=min_support,
            min_lift=min_lift,
            max_parent_rate_ratio=max_parent_rate_ratio,
        )
        for table in stats.iter_edge_tables()
    ]
    cand = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
    cand_edges = list(zip(cand["child"].tolist(), cand["parent"].tolist()))
    nodes = torch.nonzero(counts >= max(min_support, 1)).flatten().tolist()
    count_list = counts.tolist()
    coarseness = {i: (count_list[i], -i) for i in set(nodes) | {x for e in cand_edges for x in e}}

    def conditional(queries: list[Edge]) -> dict[Edge, float]:
        q = torch.tensor([a for a, _ in queries], dtype=torch.int64)
        p = torch.tensor([b for _, b in queries], dtype=torch.int64)
        lo, _ = stats.lookup(q, p)
        denom = counts[q].clamp(min=1).to(torch.float64)
        return dict(zip(queries, (lo.cpu().to(torch.float64) / denom).tolist()))

    kept = minimal_parent_edges(
        cand_edges,
        coarseness,
        conditional,
        min_conditional=min_conditional,
        explain_margin=explain_margin,
    )
    graph = ConceptGraph()
    for i in nodes:
        graph.add_concept(i, firing_count=count_list[i], firing_rate=count_list[i] / max(n, 1))
    columns = list(EDGE_STAT_KEYS)
    if stats.pruning:
        columns.append("count_both_upper")
    rows = {k: cand[k].tolist() for k in columns}
    # every edge goes strictly up the order `coarseness`, so the graph is acyclic by
    # construction and the per-edge cycle check of `add_edge` can be skipped
    for r, edge in enumerate(cand_edges):
        if edge in kept:
            graph._g.add_edge(*edge, **{k: rows[k][r] for k in columns})  # noqa: SLF001
    for node, level in graph.levels().items():
        graph._g.nodes[node]["level"] = level  # noqa: SLF001
    graph.meta.update(
        n_samples=n,
        d_sae=stats.d_sae,
        min_conditional=min_conditional,
        min_support=min_support,
        min_lift=min_lift,
        max_parent_rate_ratio=max_parent_rate_ratio,
        explain_margin=explain_margin,
        prune_eps=stats.prune_eps,
        n_candidate_edges=len(cand_edges),
        n_cofiring_pairs=stats.n_pairs,
    )
    return graph


# ---------------------------------------------------------------------------- SAE glue
def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}; pass a rate such as 0.9")


def accumulate_cofiring(
    sae: Any,
    activations: Tensor | Iterable[Tensor],
    stats: CoFiringStats,
    *,
    batch_size: int = 4096,
    show_progress: bool = False,
    total: int | None = None,
    encode_elements: int = ENCODE_ELEMENTS,
    min_activation: float = 0.0,
) -> CoFiringStats:
    """Encode ``activations`` with ``sae`` and add the firing pattern to ``stats``.

    Encoding runs on the SAE's device in sub-chunks of at most ``encode_elements / d_sae``
    rows (default :data:`ENCODE_ELEMENTS`: a dense float32 ``[rows, d_sae]`` code of at most 8 MiB);
    fired indices are buffered and handed to ``stats`` every ``batch_size`` rows.  A latent
    fires when its code is non-zero, or ``> min_activation`` if that is positive.
    """
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    sae_device = sae.W_dec.device
    enc_rows = max(1, min(batch_size, encode_elements // d_sae))
    buffer: list[Tensor] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffer:
            return
        width = max(t.shape[1] for t in buffer)
        padded = [torch.nn.functional.pad(t, (0, width - t.shape[1]), value=-1) for t in buffer]
        stats.update(torch.cat(padded))
        buffer, buffered = [], 0

    bar = tqdm(total=total, desc="co-firing stats", unit="rows", disable=not show_progress)
    with torch.no_grad():
        for chunk in iter_checked_batches(activations, d_in, batch_size):
            for s in range(0, chunk.shape[0], enc_rows):
                x = chunk[s : s + enc_rows].to(sae_device)
                acts = sae.encode(x)
                if min_activation > 0:
                    acts = (acts.to_dense() if acts.is_sparse else acts) > min_activation
                idx = to_padded_indices(acts, d_sae).to(stats.device)
                del acts
                buffer.append(idx)
                buffered += idx.shape[0]
                bar.update(idx.shape[0])
                if buffered >= batch_size:
                    flush()
        flush()
    bar.close()
    return stats


def recover_concept_graph(
    sae: Any,
    activations: Tensor | Iterable[Tensor],
    *,
    min_conditional: float = DEFAULT_MIN_CONDITIONAL,
    min_support: int = DEFAULT_MIN_SUPPORT,
    max_parent_rate_ratio: float | None = None,
    min_lift: float = DEFAULT_MIN_LIFT,
    explain_margin: float = DEFAULT_EXPLAIN_MARGIN,
    min_activation: float = 0.0,
    prune: bool = True,
    prune_eps: float | None = None,
    batch_size: int = 4096,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    return_stats: bool = False,
    evidence: str = "factorised",
    selection_code: Any = None,
    factorize_rows: int = 65536,
    total_rows: int | None = None,
    shards: Shards | None = None,
    **kwargs: Any,
) -> ConceptGraph | tuple[ConceptGraph, CoFiringStats] | None:
    """Recover the child -> parent concept graph of an SAE's latents from activations.

    Args:
        sae: any SAELens ``SAE`` / ``TrainingSAE`` (only ``cfg.d_in``, ``cfg.d_sae``,
            ``W_dec`` and ``encode`` are used); a latent *fires* when its code is non-zero.
        activations: a tensor ``[n, d_in]`` or an iterable of such batches; streamed once,
            in chunks of ``batch_size``, under ``torch.no_grad``.
        min_conditional: minimum ``P(parent | child)`` for a candidate edge (default 0.9:
            in SAELens synthetic hierarchies a child fires only with its parent, so the
            true rate is ~1 and 0.9 leaves room for encoder noise).
        min_support: minimum firings of a latent to become a node / an edge's child
            (default 20: with fewer samples a 0.9 rate is not distinguishable from chance).
        max_parent_rate_ratio: optional upper bound on ``count(parent) / count(child)``;
            ``None`` (default) = no bound, since a genuine parent can be arbitrarily more
            frequent than a rare child.
        min_lift: minimum ``P(c, p) / (P(c) P(p))`` (default 1.5): rejects "parents" that
            fire almost always (dense latents), for which a high ``P(p | c)`` is no evidence.
        explain_margin: margin of the explained-parent rule (module docstring, step 3b);
            default 0.1, 0 disables it.
        min_activation: a latent *fires* when its code exceeds this value (default 0:
            any non-zero code).  A positive value ignores weak firings, e.g. the
            low-magnitude latents a TopK SAE adds when ``k`` exceeds the number of
            features really present.
        prune: bound memory with lossy-counting pruning of pairs that cannot reach
            ``min_conditional`` (see :mod:`.cofiring`; no candidate edge is ever lost).
        prune_eps: lossy-counting budget (default ``min_conditional / 10``).
        batch_size: rows per statistics update (and per validated chunk).
        device: where the co-firing statistics live (default: the SAE's device); encoding
            always runs on the SAE's device.
        show_progress: tqdm progress bar over rows.
        total_rows: the number of rows an iterable of batches holds, for the progress bar's total
            (a tensor's is read off its shape).
        return_stats: also return the :class:`CoFiringStats`.
        shards: this process's part of a stream split over several processes (a
            :class:`~.shards.Shards`, e.g. :class:`sae_causal_plugin.distributed.ProcessGroupShards`):
            ``activations`` is then this rank's shard, and rank 0 gets the graph of all shards
            (the other ranks get ``None``). Default: the whole stream here.
        evidence: ``"factorised"`` (default): co-firing of the *selection code* of the SAE's
            decoder factorisation (:func:`~.factorization.factorize_decoder`), in which a parent
            that a child absorbed fires with that child, so the decoder composition and the
            co-firing are read together; ``"cofiring"``: plain co-firing of the SAE's latents.
        selection_code: a :class:`~.factorization.SelectionCode` of ``sae`` to use instead of
            fitting one (implies ``evidence="factorised"``).
        factorize_rows: the first this many rows of the stream (kept in memory, then streamed
            on as usual: still one pass) count the firings that orient the factorisation.
        **kwargs: forwarded to :class:`CoFiringStats` (``prune_every``, ``max_pairs_per_chunk``).

    Returns:
        the :class:`ConceptGraph` (and the statistics if ``return_stats``).  Edge
        attributes: ``count_child``, ``count_parent``, ``count_both``,
        ``p_parent_given_child``, ``p_child_given_parent``, ``lift`` (from counted
        co-firings) and, with pruning, ``count_both_upper`` (lossy-counting upper bound;
        equal to ``count_both`` unless the pair was pruned and re-inserted).  Graph-level
        thresholds and counts are in ``graph.meta``.
    """
    _check_unit("min_conditional", min_conditional)
    _check_unit("explain_margin", explain_margin)
    if prune_eps is not None:
        _check_unit("prune_eps", prune_eps)
        if not 0.0 < prune_eps < min_conditional:
            raise ValueError(
                f"prune_eps must lie in (0, min_conditional={min_conditional}), got {prune_eps}"
            )
    if isinstance(min_support, bool) or not isinstance(min_support, int) or min_support < 1:
        raise ValueError(f"min_support must be an int >= 1, got {min_support!r}")
    if not isinstance(min_lift, (int, float)) or not math.isfinite(min_lift) or min_lift < 0:
        raise ValueError(f"min_lift must be a finite number >= 0, got {min_lift!r}; 0 turns the lift filter off")
    if max_parent_rate_ratio is not None and (
        not isinstance(max_parent_rate_ratio, (int, float))
        or not math.isfinite(max_parent_rate_ratio)
        or max_parent_rate_ratio < 1
    ):
        raise ValueError(f"max_parent_rate_ratio must be None or >= 1, got {max_parent_rate_ratio!r}")
    if not isinstance(min_activation, (int, float)) or not min_activation >= 0:
        raise ValueError(f"min_activation must be >= 0, got {min_activation!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for attr in ("cfg", "encode", "W_dec"):
        if not hasattr(sae, attr):
            raise TypeError(f"sae must be a SAELens SAE (missing .{attr}), got {type(sae).__name__}")
    if evidence not in ("factorised", "cofiring"):
        raise ValueError(f"evidence must be 'factorised' or 'cofiring', got {evidence!r}")
    if isinstance(factorize_rows, bool) or not isinstance(factorize_rows, int) or factorize_rows < 1:
        raise ValueError(f"factorize_rows must be a positive int, got {factorize_rows!r}")
    shards = OneShard() if shards is None else shards
    shapes = shards.all_gather((int(sae.cfg.d_sae), int(sae.cfg.d_in), evidence, selection_code is None))
    if len(set(shapes)) > 1:
        raise ValueError(
            "the ranks disagree on (d_sae, d_in, evidence, fitted code): "
            + ", ".join(f"rank {r}: {v}" for r, v in enumerate(shapes))
            + "; start every rank with the same SAE and options"
        )
    code = selection_code
    if code is None and evidence == "factorised":
        head, activations = shards.together(
            lambda: _peel_rows(activations, int(sae.cfg.d_in), factorize_rows, batch_size))
        code = shards.together(lambda: _fit_code(sae, head, factorize_rows, shards))
        activations = itertools.chain([head], activations)
    elif code is not None and (code.cfg.d_sae, code.cfg.d_in) != (sae.cfg.d_sae, sae.cfg.d_in):
        raise ValueError("selection_code was fitted to an SAE of another shape; refit it with factorize_decoder")
    encoder = code if code is not None else sae

    stats_device = torch.device(device) if device is not None else sae.W_dec.device
    use_pruning = prune and min_conditional > 0
    stats = CoFiringStats(
        int(sae.cfg.d_sae),
        min_conditional=min_conditional if use_pruning else None,
        prune_eps=prune_eps if use_pruning else None,
        device=stats_device,
        **kwargs,
    )
    total = activations.shape[0] if isinstance(activations, Tensor) and activations.ndim >= 1 else total_rows
    shards.together(lambda: accumulate_cofiring(
        encoder,
        activations,
        stats,
        batch_size=batch_size,
        show_progress=show_progress,
        total=total,
        min_activation=min_activation,
    ))
    merged = shards.reduce_stats(stats)
    if merged is None:
        return None
    graph = build_concept_graph(
        merged,
        min_conditional=min_conditional,
        min_support=min_support,
        min_lift=min_lift,
        max_parent_rate_ratio=max_parent_rate_ratio,
        explain_margin=explain_margin,
    )
    graph.meta["min_activation"] = min_activation
    graph.meta["evidence"] = "factorised" if code is not None else "cofiring"
    if code is not None:
        _mark_composition_links(graph, code)
    return (graph, merged) if return_stats else graph


def _fit_code(sae: Any, head: Tensor, n_rows: int, shards: Shards) -> Any:
    """The factorisation, oriented by the firing counts of the stream's first ``n_rows`` rows.

    With several shards, each adds the counts of its part of those rows (shards follow each
    other in rank order), so every rank fits the same code as one process over the whole stream.
    """
    from .factorization import factorize_decoder, firing_counts_of

    head_rows = shards.all_gather(min(int(head.shape[0]), n_rows))
    share = head_share(head_rows, shards.rank, n_rows)
    counts = firing_counts_of(sae, head[:share], n_rows) if share else torch.zeros(int(sae.cfg.d_sae), dtype=torch.int64)
    return factorize_decoder(sae, firing_counts=shards.all_sum(counts), max_rows=n_rows)


def _peel_rows(
    activations: Tensor | Iterable[Tensor], d_in: int, n_rows: int, batch_size: int
) -> tuple[Tensor, Iterator[Tensor]]:
    """The first ``n_rows`` validated rows as one tensor, and an iterator over the rest."""
    stream = iter_checked_batches(activations, d_in, batch_size)
    head: list[Tensor] = []
    seen = 0
    for chunk in stream:
        head.append(chunk)
        seen += chunk.shape[0]
        if seen >= n_rows:
            break
    return torch.cat(head), stream


def _mark_composition_links(graph: ConceptGraph, code: Any) -> None:
    """Edge attribute ``composition_weight`` (``A[child, parent]``) on edges that are decoder links."""
    links = dict(zip(zip(code.children.tolist(), code.parents.tolist()), code.weights.tolist()))
    for edge in graph.edges:
        if edge in links:
            graph._g.edges[edge]["composition_weight"] = float(links[edge])  # noqa: SLF001
    graph.meta["n_composition_links"] = len(links)


__all__ = [
    "recover_concept_graph",
    "accumulate_cofiring",
    "build_concept_graph",
    "select_candidate_edges",
    "transitive_reduction_edges",
    "explained_parent_queries",
    "drop_explained_parents",
    "minimal_parent_edges",
]
