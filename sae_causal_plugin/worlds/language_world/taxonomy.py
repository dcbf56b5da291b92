"""The language world's known taxonomy: category -> subcategory -> item, and its vocabulary.

Every concept is one plain word (``"animal"``, ``"bird"``, ``"robin"``).  Each category and each
subcategory has two *cue* adjectives that announce it in text, and each category two predicates
and each subcategory two predicates that only fit them ("the ... robin is *hungry singing* .").  :func:`true_concept_graph` is the taxonomy as a
:class:`~sae_causal_plugin.graph.ConceptGraph` with selection edges item -> subcategory -> category
(fine -> coarse) and levels 0 (category), 1 (subcategory), 2 (item).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sae_causal_plugin.graph import ConceptGraph

#: category -> subcategory -> items.
TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {
    "animal": {"bird": ("robin", "crow", "owl"), "fish": ("trout", "salmon", "carp")},
    "food": {"fruit": ("apple", "pear", "plum"), "vegetable": ("carrot", "leek", "bean")},
    "vehicle": {"car": ("sedan", "coupe", "taxi"), "boat": ("canoe", "yacht", "ferry")},
    "tool": {"blade": ("saw", "knife", "axe"), "driver": ("hammer", "wrench", "drill")},
}

#: two cue adjectives per category and per subcategory.
CUES: dict[str, tuple[str, str]] = {
    "animal": ("wild", "living"),
    "food": ("tasty", "fresh"),
    "vehicle": ("fast", "parked"),
    "tool": ("metal", "handy"),
    "bird": ("feathered", "flying"),
    "fish": ("scaly", "swimming"),
    "fruit": ("sweet", "ripe"),
    "vegetable": ("green", "crunchy"),
    "car": ("wheeled", "paved"),
    "boat": ("floating", "sailing"),
    "blade": ("sharp", "cutting"),
    "driver": ("heavy", "turning"),
}

#: two predicates per category and per subcategory, one per item ("the owl *hungry nesting hooting* .").
PREDICATES: dict[str, tuple[str, str]] = {
    "animal": ("hungry", "asleep"),
    "food": ("eaten", "cooked"),
    "vehicle": ("driven", "moving"),
    "tool": ("used", "stored"),
    "bird": ("singing", "nesting"),
    "fish": ("spawning", "diving"),
    "fruit": ("peeled", "juicy"),
    "vegetable": ("boiled", "chopped"),
    "car": ("honking", "refueled"),
    "boat": ("docked", "anchored"),
    "blade": ("sharpened", "honed"),
    "driver": ("oiled", "charged"),
    "robin": ("chirping",), "crow": ("cawing",), "owl": ("hooting",),
    "trout": ("speckled",), "salmon": ("pink",), "carp": ("bony",),
    "apple": ("crisp",), "pear": ("soft",), "plum": ("purple",),
    "carrot": ("orange",), "leek": ("long",), "bean": ("tiny",),
    "sedan": ("roomy",), "coupe": ("sporty",), "taxi": ("yellow",),
    "canoe": ("paddled",), "yacht": ("luxurious",), "ferry": ("crowded",),
    "saw": ("toothed",), "knife": ("pointed",), "axe": ("splitting",),
    "hammer": ("pounding",), "wrench": ("gripping",), "drill": ("spinning",),
}

BOS = "<bos>"
FUNCTION_WORDS = ("the", "thing", "one", ".")
LEVEL_NAMES = ("category", "subcategory", "item")


@dataclass(frozen=True)
class Taxonomy:
    """A three-level taxonomy with its cue words, predicates and the token vocabulary."""

    tree: dict[str, dict[str, tuple[str, ...]]]
    cues: dict[str, tuple[str, str]]
    predicates: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        names = self.concepts
        if len(set(names)) != len(names):
            raise ValueError("taxonomy concept names must be unique across levels")
        missing = [c for c in self.categories + self.subcategories if c not in self.cues]
        if missing:
            raise ValueError(f"concepts without cue words: {missing}")
        missing = [c for c in self.concepts if not self.predicates.get(c)]
        if missing:
            raise ValueError(f"concepts without predicates: {missing}")

    @cached_property
    def categories(self) -> list[str]:
        return list(self.tree)

    @cached_property
    def subcategories(self) -> list[str]:
        return [s for subs in self.tree.values() for s in subs]

    @cached_property
    def items(self) -> list[str]:
        return [i for subs in self.tree.values() for its in subs.values() for i in its]

    @cached_property
    def concepts(self) -> list[str]:
        """All concepts, coarse to fine: categories, subcategories, items."""
        return self.categories + self.subcategories + self.items

    @cached_property
    def parent(self) -> dict[str, str]:
        """``item -> subcategory`` and ``subcategory -> category``."""
        out: dict[str, str] = {}
        for cat, subs in self.tree.items():
            for sub, items in subs.items():
                out[sub] = cat
                out.update({i: sub for i in items})
        return out

    def level(self, concept: str) -> int:
        """0 for a category, 1 for a subcategory, 2 for an item."""
        if concept in self.tree:
            return 0
        if concept in self.subcategories:
            return 1
        if concept in self.items:
            return 2
        raise ValueError(f"{concept!r} is not a concept of the taxonomy; known: {self.concepts}")

    def category_of(self, concept: str) -> str:
        while self.level(concept) > 0:
            concept = self.parent[concept]
        return concept

    def items_of(self, concept: str) -> list[str]:
        """The items at or below ``concept``."""
        level = self.level(concept)
        if level == 2:
            return [concept]
        if level == 1:
            return list(self.tree[self.parent[concept]][concept])
        return [i for its in self.tree[concept].values() for i in its]

    @cached_property
    def vocab(self) -> list[str]:
        """Token strings; the token id is the index.  ``<bos>`` is id 0."""
        words = [BOS, *FUNCTION_WORDS]
        words += [w for c in self.categories + self.subcategories for w in self.cues[c]]
        words += self.items
        words += [w for c in self.concepts for w in self.predicates[c]]
        if len(set(words)) != len(words):
            raise ValueError("cue words, items, predicates and function words must all differ")
        return words

    @cached_property
    def token_id(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.vocab)}

    @cached_property
    def evoked(self) -> dict[str, tuple[str, ...]]:
        """Word -> the concepts it evokes: a cue or predicate its concept and that concept's
        ancestors, an item itself and its ancestors; function words nothing."""
        out: dict[str, tuple[str, ...]] = {w: () for w in self.vocab}
        for concept in self.concepts:
            chain = [concept]
            while self.level(chain[-1]) > 0:
                chain.append(self.parent[chain[-1]])
            chain_t = tuple(reversed(chain))
            words = list(self.predicates[concept]) + list(self.cues.get(concept, ()))
            words += [concept] if self.level(concept) == 2 else []
            out.update({w: chain_t for w in words})
        return out

    def item_token_ids(self, concept: str) -> list[int]:
        """Token ids of the items at or below ``concept``."""
        return [self.token_id[i] for i in self.items_of(concept)]

    def true_graph(self) -> ConceptGraph:
        """The taxonomy as a ConceptGraph: edges item -> subcategory -> category."""
        graph = ConceptGraph()
        for concept in self.concepts:
            level = self.level(concept)
            graph.add_concept(concept, level=level, label=concept, kind=LEVEL_NAMES[level])
        for child, parent in self.parent.items():
            graph.add_edge(child, parent)
        return graph


DEFAULT_TAXONOMY = Taxonomy(TAXONOMY, CUES, PREDICATES)


def true_concept_graph(taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> ConceptGraph:
    """The known taxonomy as a ConceptGraph (item -> subcategory -> category)."""
    return taxonomy.true_graph()
