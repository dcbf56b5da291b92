"""The language-model toy world: a synthetic language with a known taxonomy and a tiny model of it.

* :mod:`.taxonomy`: category -> subcategory -> item, cue words, the true :class:`ConceptGraph`.
* :mod:`.corpus`: the text generator with per-token concept labels.
* :mod:`.model`: the shipped ``HookedTransformer`` (:func:`load_language_world`) and its trainer.
* :mod:`.saes`: SAEs through SAELens's runner, latent <-> concept matching, graph scoring.
* :mod:`.experiment`: :class:`LanguageWorldConfig`, every setting of the run and its defaults.
* :mod:`.measure` / :mod:`.run`: steering figures and :func:`run_language_world` (the demo's run).
"""

from sae_causal_plugin.worlds.language_world.corpus import (
    Corpus,
    decode,
    encode,
    entity_slot_mask,
    generate_corpus,
    make_sentence,
)
from sae_causal_plugin.worlds.language_world.experiment import LanguageWorldConfig
from sae_causal_plugin.worlds.language_world.model import (
    MODEL_CONFIG,
    LanguageWorld,
    build_model,
    load_language_world,
    save_language_model,
    train_language_model,
)
from sae_causal_plugin.worlds.language_world.run import run_language_world
from sae_causal_plugin.worlds.language_world.taxonomy import (
    DEFAULT_TAXONOMY,
    Taxonomy,
    true_concept_graph,
)

__all__ = [
    "Corpus",
    "DEFAULT_TAXONOMY",
    "LanguageWorld",
    "LanguageWorldConfig",
    "MODEL_CONFIG",
    "Taxonomy",
    "build_model",
    "decode",
    "encode",
    "entity_slot_mask",
    "generate_corpus",
    "load_language_world",
    "make_sentence",
    "run_language_world",
    "save_language_model",
    "train_language_model",
    "true_concept_graph",
]
