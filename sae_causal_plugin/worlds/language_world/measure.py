"""The language world's steering figures, measured with :class:`LanguageSteering`.

Entity slots (:func:`entity_slots`) are the positions whose next token can be an item: ``the``
(a bare item may follow) and subcategory cues, leaving out each document's first ``the``
(nothing is known there yet).

* :func:`category_steering`: steer toward category ``C`` on documents about *other* categories
  (every topic drawn from them); returns the probability mass of ``C``'s items at the entity
  slots before / after, and the mean next-token NLL of the whole text before / after (``exp`` of
  the change = perplexity ratio).
* :func:`subcategory_ablation`: ablate a subcategory (with its descendants in the graph) on
  documents about it; returns the mass of its items at the entity slots before / after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_causal_plugin.steering.core import latent_firing_size
from sae_causal_plugin.steering.language import LanguageSteering
from sae_causal_plugin.worlds.language_world.corpus import entity_slot_mask, generate_corpus
from sae_causal_plugin.worlds.language_world.taxonomy import Taxonomy


#: builds the steering for one batch of tokens (so positions can depend on the text), or None.
SteeringFor = Callable[[Tensor], LanguageSteering]


@torch.no_grad()
def _run(model: Any, tokens: Tensor, steering_for: SteeringFor | None, batch_size: int = 128):
    """Next-token probabilities ``[n, seq, vocab]`` and per-token NLL ``[n, seq-1]``."""
    probs, nll = [], []
    for chunk in tokens.split(batch_size):
        if steering_for is None:
            logits = model(chunk)
        else:
            with steering_for(chunk):
                logits = model(chunk)
        logp = logits.float().log_softmax(-1)
        probs.append(logp.exp())
        nll.append(-logp[:, :-1].gather(-1, chunk[:, 1:, None])[..., 0])
    return torch.cat(probs), torch.cat(nll)


def entity_slots(tokens: Int[Tensor, "n seq"], taxonomy: Taxonomy) -> Bool[Tensor, "n seq"]:
    """Positions whose next token can be an item, without each document's first ``the``."""
    the = tokens == taxonomy.token_id["the"]
    first = the & (the.long().cumsum(1) == 1)
    return entity_slot_mask(tokens, taxonomy) & ~first


def other_category_corpus(taxonomy: Taxonomy, target: str, n_documents: int, seed: int) -> Tensor:
    """Documents whose every topic is an item of a category other than ``target``."""
    others = [c for c in taxonomy.categories if c != target]
    topics = [others[i % len(others)] for i in range(n_documents)]
    return generate_corpus(n_documents, seed=seed, topics=topics, taxonomy=taxonomy).tokens


def category_steering(
    model: Any, steering: SteeringFor, taxonomy: Taxonomy, target: str, *,
    n_documents: int = 192, seed: int = 0,
) -> dict[str, float]:
    """Mass of ``target``'s items at entity slots and text NLL on other-category text, before / after."""
    tokens = other_category_corpus(taxonomy, target, n_documents, seed)
    slots = entity_slots(tokens, taxonomy)
    items = torch.tensor(taxonomy.item_token_ids(target))
    out: dict[str, float] = {}
    for tag, steer in (("before", None), ("after", steering)):
        probs, nll = _run(model, tokens, steer)
        out[f"mass_{tag}"] = float(probs[..., items].sum(-1)[slots].mean())
        out[f"nll_{tag}"] = float(nll.mean())
    out["mass_ratio"] = out["mass_after"] / max(out["mass_before"], 1e-12)
    out["ppl_increase"] = float(torch.tensor(out["nll_after"] - out["nll_before"]).exp()) - 1.0
    return out


def subcategory_ablation(
    model: Any, steering: SteeringFor, taxonomy: Taxonomy, sub: str, *,
    n_documents: int = 96, seed: int = 0,
) -> dict[str, float]:
    """Mass of ``sub``'s items at the entity slots of documents about ``sub``, before / after."""
    tokens = generate_corpus(n_documents, seed=seed, topics=[sub] * n_documents, taxonomy=taxonomy).tokens
    where = entity_slots(tokens, taxonomy)
    items = torch.tensor(taxonomy.item_token_ids(sub))
    before = _run(model, tokens, None)[0][..., items].sum(-1)[where].mean()
    after = _run(model, tokens, steering)[0][..., items].sum(-1)[where].mean()
    return dict(mass_before=float(before), mass_after=float(after),
                mass_fraction=float(after / before.clamp_min(1e-12)), n_slots=int(where.sum()))


@torch.no_grad()
def category_masses(model: Any, tokens: Int[Tensor, "1 seq"], taxonomy: Taxonomy,
                    steering: SteeringFor | None = None) -> dict[str, float]:
    """Next-token probability mass of each category's items after ``tokens``."""
    probs = _run(model, tokens, steering)[0][0, -1]
    return {c: float(probs[taxonomy.item_token_ids(c)].sum()) for c in taxonomy.categories}


def noun_positions(tokens: Int[Tensor, "n seq"], taxonomy: Taxonomy) -> Bool[Tensor, "n seq"]:
    """Entity nouns: items, ``thing`` and ``one`` (where the noun SAE reads)."""
    ids = [taxonomy.token_id[w] for w in taxonomy.items + ["thing", "one"]]
    return torch.isin(tokens, torch.tensor(ids))


def slot_positions(tokens: Int[Tensor, "n seq"], taxonomy: Taxonomy) -> Bool[Tensor, "n seq"]:
    """Every entity-slot word (``the``, subcategory cues): where the slot SAE reads."""
    return entity_slot_mask(tokens, taxonomy)


def typical_activation(sae: Any, x: Float[Tensor, "n d"], latent: int) -> float:
    """Mean non-zero activation of ``latent`` on ``x`` (the size of a natural firing); 1.0 if it never fires."""
    mean = latent_firing_size(sae, x.split(8192), latent).mean
    return 1.0 if mean is None else mean
