"""SAEs on the language world: trained through SAELens's runner, scored against the taxonomy.

* :func:`train_layer_sae`: one hierarchical SAE at one hook (the hierarchy lives inside it),
  trained by ``LanguageModelSAETrainingRunner`` offline (``override_model``, ``override_dataset``).
* :func:`collect_activations`: activations and per-token concept labels at any hook.
* :func:`match_latents_to_concepts`: one-to-one latent <-> concept matching by firing agreement.
* :func:`score_taxonomy_recovery`: edge precision / recall / F1 of a recovered graph against the
  true taxonomy (name the matched nodes with :func:`sae_causal_plugin.graph.name_matched_latents`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.matching import firing_f1, one_to_one
from sae_causal_plugin.worlds.language_world.corpus import Corpus, generate_corpus
from sae_causal_plugin.worlds.language_world.experiment import LanguageWorldConfig
from sae_causal_plugin.worlds.language_world.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from sae_causal_plugin._rng import keeps_global_rng

DEFAULT_HOOK = "blocks.0.hook_resid_post"
#: latent <-> concept matches below this firing F1 are dropped.
DEFAULT_MIN_MATCH = 0.5


def corpus_dataset(tokens: Tensor) -> Any:
    """Token rows as an in-memory HuggingFace ``Dataset`` with an ``input_ids`` column."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": tokens.tolist()})


def default_sae_config(d_in: int, **overrides: Any) -> Any:
    """The language world's SAE config, :meth:`.experiment.LanguageWorldConfig.sae_config` (``overrides`` win)."""
    return LanguageWorldConfig().sae_config(d_in, **overrides)


@keeps_global_rng
def train_layer_sae(
    model: Any,
    *,
    hook_name: str = DEFAULT_HOOK,
    seed: int = 0,
    training_tokens: int = 300_000,
    n_documents: int = 4096,
    sae_config: Any = None,
    lr: float = 3e-3,
    batch_size_tokens: int = 1024,
    out_dir: str | Path | None = None,
    progress: bool = False,
    words: str = "nouns",
) -> tuple[Any, Path | None]:
    """Train one SAE at ``hook_name`` through ``LanguageModelSAETrainingRunner``; returns it and its directory.

    The corpus comes from ``seed``; the SAE is saved under ``out_dir`` (as a stock SAELens
    SAE) when given.  It sees only :func:`content_words`.
    """
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    from sae_causal_plugin._interrupts import handlers_restored, keyboard_interrupt_in_training

    n_ctx = int(model.cfg.n_ctx)
    d_in = int(model.cfg.d_model)
    cfg_sae = sae_config if sae_config is not None else default_sae_config(d_in)
    tokens = generate_corpus(n_documents, seed=seed + 1, n_ctx=n_ctx).tokens
    scratch = None
    if out_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="language_world_sae_")
        output_path = Path(scratch.name)
    else:
        output_path = Path(out_dir)
    buffer = -(-8 * batch_size_tokens // n_ctx)  # SAELens: buffer rows = n_batches_in_buffer * context
    cfg = LanguageModelSAERunnerConfig(
        sae=cfg_sae, model_name="language-world", hook_name=hook_name, dataset_path="in-memory",
        is_dataset_tokenized=True, streaming=False, context_size=n_ctx,
        exclude_special_tokens=excluded_token_ids(kind=words),
        training_tokens=training_tokens, train_batch_size_tokens=batch_size_tokens,
        store_batch_size_prompts=32, n_batches_in_buffer=buffer, prepend_bos=False,
        disable_concat_sequences=True, device="cpu", seed=seed, lr=lr, lr_warm_up_steps=20,
        lr_scheduler_name="constant", output_path=str(output_path), checkpoint_path=None,
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=4,
        dead_feature_window=50, feature_sampling_window=100, verbose=progress,
    )
    torch.manual_seed(seed)
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=corpus_dataset(tokens))
    with handlers_restored():  # Ctrl-C stays a KeyboardInterrupt, and the handlers are ours afterwards
        sae = keyboard_interrupt_in_training(runner).run()
    sae.eval()
    if scratch is not None:
        scratch.cleanup()
        return sae, None
    saved = sorted(p.parent for p in output_path.rglob("cfg.json"))
    return sae, (saved[0] if saved else output_path)


WORD_KINDS = ("nouns", "content", "slots")


def content_words(taxonomy: Taxonomy = DEFAULT_TAXONOMY, kind: str = "nouns") -> list[str]:
    """The words an SAE reads: ``"nouns"`` (items, ``thing``, ``one``), ``"content"`` (cues too) or
    ``"slots"`` (the entity-slot words ``the`` and subcategory cues, after which an item can follow)."""
    if kind not in WORD_KINDS:
        raise ValueError(f"kind must be one of {WORD_KINDS}, got {kind!r}")
    nouns = taxonomy.items + ["thing", "one"]
    if kind == "nouns":
        return nouns
    if kind == "slots":
        return ["the"] + [w for s in taxonomy.subcategories for w in taxonomy.cues[s]]
    return [w for c in taxonomy.categories + taxonomy.subcategories for w in taxonomy.cues[c]] + nouns


def excluded_token_ids(taxonomy: Taxonomy = DEFAULT_TAXONOMY, kind: str = "nouns") -> list[int]:
    """Token ids an SAE does not see: everything but :func:`content_words`."""
    keep = set(content_words(taxonomy, kind))
    return [i for i, w in enumerate(taxonomy.vocab) if w not in keep]


@torch.no_grad()
def collect_activations(
    model: Any, corpus: Corpus, hook_name: str = DEFAULT_HOOK, batch_size: int = 256, words: str = "nouns",
) -> tuple[Float[Tensor, "n d"], Bool[Tensor, "n n_concepts"]]:
    """Activations at ``hook_name`` of every content word (:func:`content_words`), with its concept labels.

    With ``words="slots"`` the labels are :func:`carried_labels` (what the text has named most
    recently), since a sentence-opening ``the`` has named nothing itself.
    """
    acts = []
    for chunk in corpus.tokens.split(batch_size):
        _, cache = model.run_with_cache(chunk, names_filter=hook_name)
        acts.append(cache[hook_name])
    keep = kept_positions(corpus, words)
    labels = carried_labels(corpus.active) if words == "slots" else corpus.active
    return torch.cat(acts)[keep], labels[keep]


def kept_positions(corpus: Corpus, words: str = "nouns") -> Bool[Tensor, "n seq"]:
    """The positions :func:`collect_activations` keeps (its rows are ``corpus.tokens[mask]``, row-major)."""
    return ~torch.isin(corpus.tokens, torch.tensor(excluded_token_ids(corpus.taxonomy, words)))


def carried_labels(active: Bool[Tensor, "n seq c"]) -> Bool[Tensor, "n seq c"]:
    """Each position's concepts, or, where its sentence has named none yet, those of the last position that had some."""
    named = active.any(-1)
    positions = torch.arange(active.shape[1]).expand_as(named)
    source = torch.where(named, positions, torch.zeros_like(positions)).cummax(1).values
    return active.gather(1, source[..., None].expand_as(active))


@torch.no_grad()
@torch.no_grad()
def latent_codes(sae: Any, x: Tensor, batch_size: int = 8192) -> Float[Tensor, "n d_sae"]:
    """``sae.encode`` over ``x`` in chunks of ``batch_size`` rows."""
    return torch.cat([sae.encode(chunk) for chunk in x.split(batch_size)])


def latent_firing(sae: Any, x: Tensor, batch_size: int = 8192) -> Bool[Tensor, "n d_sae"]:
    return latent_codes(sae, x, batch_size) > 0


def match_latents_to_concepts(
    fired: Bool[Tensor, "n d_sae"], active: Bool[Tensor, "n c"], concepts: list[str],
    min_score: float = DEFAULT_MIN_MATCH,
) -> dict[int, tuple[str, float]]:
    """One-to-one ``latent -> (concept, F1)`` by Hungarian matching on firing F1 (kept if >= ``min_score``)."""
    if fired.shape[0] != active.shape[0] or active.shape[1] != len(concepts):
        raise ValueError(f"fired {tuple(fired.shape)} and active {tuple(active.shape)} do not pair "
                         f"with {len(concepts)} concepts")
    return {r: (concepts[c], f) for r, (c, f) in one_to_one(firing_f1(fired, active), min_score).items()}


def score_taxonomy_recovery(
    graph: ConceptGraph, match: Mapping[Any, tuple[str, float]], taxonomy: Taxonomy,
) -> dict[str, float | int]:
    """Edge precision / recall / F1 of ``graph`` (nodes = latents) against the taxonomy.

    A recovered edge ``c -> p`` counts when the child latent ``c`` is matched to a concept;
    it is correct when ``p`` is matched too and ``concept(c) -> concept(p)`` is a taxonomy edge.
    Edges whose child matches no concept (latents of function words, positions) say nothing
    about the taxonomy and are left out.  Recall is over all taxonomy edges.
    """
    true_edges = set(taxonomy.parent.items())
    concept_of = {k: v[0] for k, v in match.items()}
    judged = [(c, p) for c, p in graph.edges if c in concept_of]
    found = {(concept_of[c], concept_of[p]) for c, p in judged
             if p in concept_of and (concept_of[c], concept_of[p]) in true_edges}
    correct = sum(1 for c, p in judged if p in concept_of and (concept_of[c], concept_of[p]) in true_edges)
    precision = correct / len(judged) if judged else 0.0
    recall = len(found) / len(true_edges)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return dict(edge_precision=precision, edge_recall=recall, edge_f1=f1, n_true_edges=len(true_edges),
                n_judged_edges=len(judged), n_recovered_edges=len(graph.edges), n_correct_edges=correct,
                n_matched_latents=len(match),
                mean_match_f1=float(np.mean([s for _, s in match.values()])) if match else 0.0)
