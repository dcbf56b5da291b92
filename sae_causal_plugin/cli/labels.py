"""Name a recovered graph's latents by the toy world's true concepts (``sae-causal graph --dataset language-world``)."""

from __future__ import annotations

from typing import Any

import torch

from sae_causal_plugin.cli.data import hook_activations, kept_positions
from sae_causal_plugin.cli.models import ModelHandle
from sae_causal_plugin.graph import ConceptGraph


def name_by_language_world(
    graph: ConceptGraph, sae: Any, handle: ModelHandle, hook: str, *, n_documents: int, seed: int,
    exclude_tokens: list[int] | None = None,
) -> tuple[ConceptGraph, int]:
    """``graph`` with each latent matched to a true concept labelled ``"<concept> (#<latent>)"``.

    Latents are matched one-to-one to concepts by how well their firing agrees with the
    concept's presence (the world's per-token labels) on ``n_documents`` documents drawn with
    ``seed``.  Returns the named copy and the number of matched latents.
    """
    from sae_causal_plugin.graph import name_matched_latents
    from sae_causal_plugin.worlds.language_world import generate_corpus
    from sae_causal_plugin.worlds.language_world.saes import (
        latent_firing,
        match_latents_to_concepts,
    )

    taxonomy = handle.world.taxonomy
    corpus = generate_corpus(n_documents, seed=seed, n_ctx=int(handle.model.cfg.n_ctx), taxonomy=taxonomy)
    x = torch.cat(list(hook_activations(handle, hook, corpus.tokens, exclude_tokens=exclude_tokens)))
    active = corpus.active[kept_positions(handle, corpus.tokens, exclude_tokens=exclude_tokens)]
    match = match_latents_to_concepts(latent_firing(sae, x), active, taxonomy.concepts)
    return name_matched_latents(graph, match, taxonomy.level), len(match)
