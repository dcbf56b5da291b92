"""Levels = layers: one SAE per layer of the language world, trained jointly, and the graph between them.

The SAEs read the entity nouns at :data:`LAYER_HOOKS` (level 0, the later and more abstract
layer, first), paired token by token, and are trained together by the multi-level trainer
(:func:`~sae_causal_plugin.multilevel.train_level_saes`, SAELens's ``MultiSAETrainer``) with its
cross-level terms; :func:`~sae_causal_plugin.multilevel.recover_layered_graph` links latents of
the earlier layer to the latents of the later layer they compose.  :func:`score_layered_graph`
names each latent by its best-matching concept and scores the cross-layer edges against the taxonomy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import node_id
from sae_causal_plugin.multilevel import make_level_saes, recover_layered_graph, train_level_saes
from sae_causal_plugin.worlds.language_world.corpus import generate_corpus
from sae_causal_plugin.worlds.language_world.saes import (
    collect_activations,
    latent_firing,
    match_latents_to_concepts,
)
from sae_causal_plugin.worlds.language_world.taxonomy import Taxonomy
from sae_causal_plugin._rng import keeps_global_rng

#: level 0 (most abstract) first: the later layer, then the earlier one.
LAYER_HOOKS = ("blocks.1.hook_resid_post", "blocks.0.hook_resid_post")


def paired_layer_activations(model: Any, hooks: Sequence[str], n_documents: int, seed: int):
    """Noun activations at every hook (paired row by row) and their concept labels."""
    corpus = generate_corpus(n_documents, seed=seed, n_ctx=int(model.cfg.n_ctx))
    levels = [collect_activations(model, corpus, hook) for hook in hooks]
    return [x for x, _ in levels], levels[0][1]


def _batches(xs: Sequence[Tensor], batch_size: int, seed: int) -> Iterator[list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(xs[0].shape[0], generator=gen).split(batch_size):
            if idx.numel() == batch_size:
                yield [x[idx] for x in xs]


@keeps_global_rng
def train_layer_saes(
    model: Any, *, hooks: Sequence[str] = LAYER_HOOKS, seed: int = 0, n_documents: int = 2048,
    d_sae: int = 48, k: int = 3, total_samples: int = 200_000, batch_size: int = 512, progress: bool = False,
) -> list[Any]:
    """One BatchTopK SAE per hook, trained jointly with the cross-level terms (level 0 first)."""
    from sae_lens import BatchTopKTrainingSAEConfig

    if len(hooks) < 2:
        raise ValueError(f"levels = layers needs at least two hooks, got {list(hooks)}")
    xs, _ = paired_layer_activations(model, hooks, n_documents, seed + 1)
    torch.manual_seed(seed)
    cfgs = [BatchTopKTrainingSAEConfig(d_in=int(x.shape[1]), d_sae=d_sae, k=k) for x in xs]
    saes = make_level_saes(cfgs)
    for sae, hook in zip(saes, hooks):
        sae.cfg.metadata.hook_name = hook
    return train_level_saes(saes, _batches(xs, batch_size, seed), total_samples=total_samples,
                            batch_size=batch_size, init_rows=xs, seed=seed, progress=progress)


def score_layered_graph(
    graph: ConceptGraph, saes: Sequence[Any], xs: Sequence[Tensor], active: Tensor, taxonomy: Taxonomy,
    min_score: float = 0.5,
) -> dict[str, float | int]:
    """Cross-layer edges ``L{l+1}:c -> L{l}:p`` scored against the taxonomy.

    Latents of each level are matched to concepts (firing F1, Hungarian); an edge counts when its
    child is matched and its two concepts differ (a concept carried from one layer to the next
    says nothing about the taxonomy), and is correct when ``concept(c) -> concept(p)`` is a
    taxonomy edge.  Recall: taxonomy edges found between any two levels.
    """
    concept_of: dict[str, str] = {}
    for level, (sae, x) in enumerate(zip(saes, xs)):
        match = match_latents_to_concepts(latent_firing(sae, x), active, taxonomy.concepts, min_score)
        concept_of.update({node_id(level, i): c for i, (c, _) in match.items()})
    true_edges = set(taxonomy.parent.items())
    judged = [(c, p) for c, p in graph.edges
              if c in concept_of and concept_of[c] != concept_of.get(p)]
    hits = [(concept_of[c], concept_of[p]) for c, p in judged
            if p in concept_of and (concept_of[c], concept_of[p]) in true_edges]
    precision = len(hits) / len(judged) if judged else 0.0
    recall = len(set(hits)) / len(true_edges)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return dict(layer_edge_precision=precision, layer_edge_recall=recall, layer_edge_f1=f1,
                layer_n_edges=len(graph.edges), layer_n_matched=len(concept_of))


def layered_world_graph(model: Any, taxonomy: Taxonomy, *, seed: int = 0, **train_kwargs: Any):
    """Train the layer SAEs, recover the cross-layer graph on fresh text, score it."""
    saes = train_layer_saes(model, seed=seed, **train_kwargs)
    hooks = [sae.cfg.metadata.hook_name for sae in saes]
    xs, active = paired_layer_activations(model, hooks, 1024, seed + 1000)
    graph = recover_layered_graph(saes, xs)
    return saes, graph, score_layered_graph(graph, saes, xs, active, taxonomy)
