"""The synthetic language: documents of short sentences about concepts of a :class:`Taxonomy`.

A sentence names one item at one of four depths (``C`` / ``S`` = a cue word of the category /
subcategory, ``I`` = the item, ``Pc`` / ``Ps`` / ``Pi`` = a predicate of the category /
subcategory / item; ``[thing]`` is present half of the time; the predicates come in a random order):

=============  ======================================  ==========================
kind           words                                   concepts it names
=============  ======================================  ==========================
category       ``the C [thing] Pc .``                  category
subcategory    ``the C S one Pc Ps .``                 category, subcategory
item           ``the C S I Pc Ps Pi .``                category, subcategory, item
bare           ``the I Pc Ps Pi .``                    category, subcategory, item
=============  ======================================  ==========================

So right after a noun, a predicate of any level it names may follow: the model has to carry each
named level at the noun.  A document (``<bos>`` + sentences, cut to ``n_ctx`` tokens) is
about a *topic item*: each sentence names it at a random depth, and after each sentence the topic
switches to a uniformly drawn item with probability ``topic_switch``.  Cue words and predicates
are uniform within their concept.  The concepts *active* at a position are those its sentence
has named up to and including that word (:attr:`Taxonomy.evoked`): a child concept is never
active without its parent, while a parent is often active alone ("the wild thing").
:class:`Corpus` holds these labels beside the tokens.  Entity slots are the positions whose next
token can be an item: ``the`` (a bare item may follow) and ``S`` (an item or ``one`` follows).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from sae_causal_plugin.worlds.language_world.taxonomy import BOS, DEFAULT_TAXONOMY, Taxonomy

SENTENCE_KINDS = ("category", "subcategory", "item", "bare")
#: default probability of each sentence kind.
KIND_WEIGHTS = (0.2, 0.2, 0.35, 0.25)
DEFAULT_TOPIC_SWITCH = 0.15
DEFAULT_N_CTX = 32


@dataclass
class Sentence:
    """One sentence: its words and, per word, the concepts active there."""

    words: list[str]
    active: list[tuple[str, ...]]
    category: str
    subcategory: str | None
    item: str | None
    kind: str


def make_sentence(
    taxonomy: Taxonomy, kind: str, item: str, rng: random.Random
) -> Sentence:
    """One sentence of ``kind`` about ``item`` (naming it at that depth)."""
    if kind not in SENTENCE_KINDS:
        raise ValueError(f"kind must be one of {SENTENCE_KINDS}, got {kind!r}")
    if item not in taxonomy.items:
        raise ValueError(f"unknown item {item!r}; known: {taxonomy.items}")
    sub = taxonomy.parent[item]
    category = taxonomy.parent[sub]
    c_cue = rng.choice(taxonomy.cues[category])
    s_cue = rng.choice(taxonomy.cues[sub])
    p_cat = rng.choice(taxonomy.predicates[category])
    p_sub = rng.choice(taxonomy.predicates[sub])
    p_item = rng.choice(taxonomy.predicates[item])
    pair = [p_cat, p_sub]
    rng.shuffle(pair)
    triple = [p_cat, p_sub, p_item]
    rng.shuffle(triple)
    if kind == "category":
        words = ["the", c_cue] + (["thing"] if rng.random() < 0.5 else []) + [p_cat, "."]
        sub = item = None
    elif kind == "subcategory":
        words = ["the", c_cue, s_cue, "one", *pair, "."]
        item = None
    elif kind == "item":
        words = ["the", c_cue, s_cue, item, *triple, "."]
    else:
        words = ["the", item, *triple, "."]
    levels, named = [], set()
    for w in words:  # what the sentence has named so far (see Corpus)
        named.update(taxonomy.evoked[w])
        levels.append(tuple(sorted(named, key=taxonomy.level)))
    return Sentence(words, levels, category, sub, item, kind)


@dataclass
class Corpus:
    """Token ids ``[n, n_ctx]`` (``<bos>`` first), concept labels and each document's first topic item."""

    tokens: Int[Tensor, "n n_ctx"]
    active: Bool[Tensor, "n n_ctx n_concepts"]
    topics: list[str]
    taxonomy: Taxonomy

    @property
    def concepts(self) -> list[str]:
        return self.taxonomy.concepts

    def texts(self) -> list[str]:
        vocab = self.taxonomy.vocab
        return [" ".join(vocab[t] for t in row) for row in self.tokens.tolist()]


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def generate_corpus(
    n_documents: int,
    *,
    seed: int = 0,
    n_ctx: int = DEFAULT_N_CTX,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    topic_switch: float = DEFAULT_TOPIC_SWITCH,
    kind_weights: tuple[float, ...] = KIND_WEIGHTS,
    topics: list[str] | None = None,
) -> Corpus:
    """``n_documents`` documents of exactly ``n_ctx`` tokens, reproducible from ``seed``.

    ``topics`` gives each document's first topic: an item, or a category / subcategory to draw
    it from (default: any item).  With ``topic_switch=0`` a document stays on its first topic;
    a switched topic is drawn below the same ``topics`` entry.
    """
    if n_documents < 1:
        raise ValueError(f"n_documents must be >= 1, got {n_documents}")
    if n_ctx < 2:
        raise ValueError(f"n_ctx must be >= 2 (<bos> and a word), got {n_ctx}")
    _check_probability("topic_switch", topic_switch)
    if len(kind_weights) != len(SENTENCE_KINDS) or min(kind_weights) < 0 or sum(kind_weights) <= 0:
        raise ValueError(f"kind_weights needs {len(SENTENCE_KINDS)} non-negative weights, got {kind_weights}")
    if topics is not None:
        if len(topics) != n_documents:
            raise ValueError(f"topics has {len(topics)} entries for {n_documents} documents")
        unknown = sorted({t for t in topics if t not in taxonomy.concepts})
        if unknown:
            raise ValueError(f"topics {unknown} are not concepts of the taxonomy")
    rng = random.Random(seed)
    index = {c: i for i, c in enumerate(taxonomy.concepts)}
    token_rows: list[list[int]] = []
    hits: list[tuple[int, int, int]] = []  # (document, position, concept) where active
    doc_topics: list[str] = []
    for d in range(n_documents):
        pool = taxonomy.items_of(topics[d]) if topics is not None else taxonomy.items
        item = rng.choice(pool)
        doc_topics.append(item)
        words, labels = [BOS], [()]
        while len(words) < n_ctx:
            sentence = make_sentence(taxonomy, rng.choices(SENTENCE_KINDS, kind_weights)[0], item, rng)
            words += sentence.words
            labels += sentence.active
            if rng.random() < topic_switch:
                item = rng.choice(pool)
        token_rows.append([taxonomy.token_id[w] for w in words[:n_ctx]])
        hits += [(d, pos, index[c]) for pos, concepts in enumerate(labels[:n_ctx]) for c in concepts]
    tokens = torch.tensor(token_rows, dtype=torch.long)
    active = torch.zeros(n_documents, n_ctx, len(index), dtype=torch.bool)
    if hits:
        d_idx, p_idx, c_idx = torch.tensor(hits).unbind(1)
        active[d_idx, p_idx, c_idx] = True
    return Corpus(tokens, active, doc_topics, taxonomy)


def entity_slot_mask(
    tokens: Int[Tensor, "n n_ctx"], taxonomy: Taxonomy = DEFAULT_TAXONOMY
) -> Bool[Tensor, "n n_ctx"]:
    """Positions whose next token can be an item: ``the`` and subcategory cues."""
    slot_words = ["the"] + [w for s in taxonomy.subcategories for w in taxonomy.cues[s]]
    ids = torch.tensor([taxonomy.token_id[w] for w in slot_words])
    return torch.isin(tokens, ids)


def encode(text: str, taxonomy: Taxonomy = DEFAULT_TAXONOMY, *, prepend_bos: bool = True) -> Int[Tensor, "1 seq"]:
    """Space-separated words -> token ids ``[1, seq]`` (``<bos>`` first unless told otherwise)."""
    words = text.split()
    unknown = [w for w in words if w not in taxonomy.token_id]
    if unknown:
        raise ValueError(f"words {unknown} are not in the language world's vocabulary")
    ids = ([taxonomy.token_id[BOS]] if prepend_bos and (not words or words[0] != BOS) else [])
    ids += [taxonomy.token_id[w] for w in words]
    return torch.tensor([ids], dtype=torch.long)


def decode(tokens: Int[Tensor, "... seq"], taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> str | list[str]:
    """Token ids -> space-separated words (a list of strings for a batch)."""
    if tokens.ndim == 2:
        return [str(decode(row, taxonomy)) for row in tokens]
    return " ".join(taxonomy.vocab[int(t)] for t in tokens)
