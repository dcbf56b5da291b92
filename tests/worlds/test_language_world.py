"""The language world: exact taxonomy, generator grammar, shipped model, a tiny runner path."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import pytest
import torch

from sae_causal_plugin.worlds.language_world import (
    DEFAULT_TAXONOMY as TX,
    build_model,
    decode,
    encode,
    entity_slot_mask,
    generate_corpus,
    load_language_world,
    make_sentence,
    true_concept_graph,
)

ASSETS = Path(str(resources.files("sae_causal_plugin.worlds") / "assets"))


def test_taxonomy_and_true_graph_are_exact():
    assert TX.categories == ["animal", "food", "vehicle", "tool"]
    assert TX.subcategories == ["bird", "fish", "fruit", "vegetable", "car", "boat", "blade", "driver"]
    assert len(TX.items) == 24 and TX.items_of("bird") == ["robin", "crow", "owl"]
    graph = true_concept_graph()
    assert len(graph.edges) == 32
    assert set(graph.edges) == set(TX.parent.items())
    assert graph.ancestors("owl") == {"bird", "animal"}
    assert graph.descendants("vehicle") == {"car", "boat", "sedan", "coupe", "taxi", "canoe", "yacht", "ferry"}
    assert [graph.concept_attrs(c)["level"] for c in ("tool", "driver", "drill")] == [0, 1, 2]
    assert TX.evoked["flying"] == ("animal", "bird") and TX.evoked["owl"] == ("animal", "bird", "owl")
    assert TX.evoked["the"] == ()


def test_sentences_follow_the_grammar_exactly():
    rng = random.Random(3)
    s = make_sentence(TX, "item", "owl", rng)
    assert s.words[0] == "the" and s.words[-1] == "." and len(s.words) == 8
    cat_cue, sub_cue, item = s.words[1:4]
    assert (s.category, s.subcategory, item) == ("animal", "bird", "owl")
    assert cat_cue in TX.cues["animal"] and sub_cue in TX.cues["bird"]
    assert sorted(s.words[4:7]) == sorted([*s.words[4:7]]) and "hooting" in s.words[4:7]
    assert len(set(s.words[4:7]) & set(TX.predicates["animal"] + TX.predicates["bird"])) == 2
    assert s.active[1] == ("animal",) and s.active[2] == ("animal", "bird") and s.active[3] == ("animal", "bird", "owl")
    bare = make_sentence(TX, "bare", "drill", rng)
    assert bare.words[1] == "drill" and bare.active[0] == () and bare.active[1] == ("tool", "driver", "drill")
    cat = make_sentence(TX, "category", "pear", rng)
    assert cat.subcategory is None and set(cat.active[-1]) == {"food"}
    with pytest.raises(ValueError, match="kind must be"):
        make_sentence(TX, "poem", "pear", rng)
    with pytest.raises(ValueError, match="unknown item"):
        make_sentence(TX, "bare", "mineral", rng)


def test_corpus_is_reproducible_and_labels_follow_the_words():
    a, b = generate_corpus(64, seed=5), generate_corpus(64, seed=5)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.active, b.active)
    assert not torch.equal(a.tokens, generate_corpus(64, seed=6).tokens)
    assert a.tokens.shape == (64, 32) and (a.tokens[:, 0] == 0).all()
    index = {c: i for i, c in enumerate(TX.concepts)}
    for doc in range(8):
        named: set[str] = set()
        for pos, tok in enumerate(a.tokens[doc].tolist()):
            word = TX.vocab[tok]
            named = set() if word == "the" else named | set(TX.evoked[word])
            assert set(a.active[doc, pos].nonzero().flatten().tolist()) == {index[c] for c in named}
    # a child concept is never active without its parent
    for child, parent in TX.parent.items():
        assert not (a.active[..., index[child]] & ~a.active[..., index[parent]]).any()
    about_tools = generate_corpus(8, seed=1, topics=["tool"] * 8)
    words = {TX.vocab[t] for t in about_tools.tokens.flatten().tolist()}
    assert words & set(TX.items) <= set(TX.items_of("tool"))
    with pytest.raises(ValueError, match="not concepts"):
        generate_corpus(2, topics=["tool", "rock"])


def test_encode_decode_and_slots():
    tokens = encode("the wild flying owl")
    assert decode(tokens[0]) == "<bos> the wild flying owl"
    assert entity_slot_mask(tokens)[0].tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="not in the language world's vocabulary"):
        encode("the wild unicorn")
    with pytest.raises(ValueError, match="n_documents"):
        generate_corpus(0)


def test_slot_words_and_carried_labels():
    from sae_causal_plugin.worlds.language_world.saes import carried_labels, content_words

    assert "the" in content_words(kind="slots") and "owl" not in content_words(kind="slots")
    with pytest.raises(ValueError, match="kind must be one of"):
        content_words(kind="verbs")
    corpus = generate_corpus(8, seed=3)
    carried = carried_labels(corpus.active)
    named = corpus.active.any(-1)
    assert torch.equal(carried[named], corpus.active[named])
    # a sentence-opening ``the`` (not the first word) carries what the previous sentence named
    the = (corpus.tokens == TX.token_id["the"]) & (torch.arange(corpus.tokens.shape[1]) > 1)
    doc, pos = the.nonzero()[0].tolist()
    assert not corpus.active[doc, pos].any() and torch.equal(carried[doc, pos], corpus.active[doc, pos - 1])
    assert not carried[:, 0].any()


def test_shipped_model_is_small_loads_offline_and_knows_the_taxonomy():
    files = [ASSETS / "language_world_model.safetensors", ASSETS / "language_world_config.json"]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in files) < 5 * 2**20
    world = load_language_world()
    assert world.model.cfg.n_layers == 2 and world.model.cfg.d_model == 64
    with torch.no_grad():
        probs = world.model(world.encode("the wild flying"))[0, -1].softmax(-1)
    birds = probs[TX.item_token_ids("bird")].sum()
    others = probs[[t for c in ("fish", "fruit", "car", "blade") for t in TX.item_token_ids(c)]].sum()
    assert birds > 0.5 and others < 0.01
    with pytest.raises(FileNotFoundError, match="train_language_world"):
        load_language_world(ASSETS / "nowhere")


def test_tiny_sae_trains_through_the_saelens_runner(tmp_path):
    from sae_causal_plugin.worlds.language_world.saes import default_sae_config, train_layer_sae

    torch.manual_seed(0)
    model = build_model(d_model=16, d_head=8, n_heads=2, d_mlp=32, n_layers=1).eval()
    rng = torch.get_rng_state()
    sae, saved = train_layer_sae(model, training_tokens=4096, n_documents=64, batch_size_tokens=256,
                                 sae_config=default_sae_config(16, d_sae=32, k=2), out_dir=tmp_path / "sae")
    assert torch.equal(torch.get_rng_state(), rng)  # it seeds its own run, not the caller's stream
    assert sae.cfg.d_in == 16 and sae.cfg.architecture() == "hierarchical_batchtopk"
    assert saved is not None and (saved / "cfg.json").is_file() and (saved / "sae_weights.safetensors").is_file()


def test_levels_are_layers_through_the_multilevel_trainer():
    from sae_causal_plugin.worlds.language_world.layers import (
        paired_layer_activations,
        score_layered_graph,
        train_layer_saes,
    )
    from sae_causal_plugin.multilevel import recover_layered_graph

    torch.manual_seed(0)
    model = build_model(d_model=16, d_head=8, n_heads=2, d_mlp=32).eval()
    saes = train_layer_saes(model, n_documents=64, d_sae=12, k=2, total_samples=2048, batch_size=128)
    assert [s.cfg.metadata.hook_name for s in saes] == ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]
    xs, active = paired_layer_activations(model, ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"], 32, 7)
    assert xs[0].shape == xs[1].shape and xs[0].shape[0] == active.shape[0]
    graph = recover_layered_graph(saes, xs)
    scores = score_layered_graph(graph, saes, xs, active, TX)
    assert scores["layer_n_edges"] == len(graph.edges)
    # the untrained tiny model: one latent matched to a concept, so no edge can be a taxonomy edge
    assert scores["layer_n_matched"] == 1
    assert scores["layer_edge_precision"] == scores["layer_edge_recall"] == scores["layer_edge_f1"] == 0.0
    with pytest.raises(ValueError, match="at least two hooks"):
        train_layer_saes(model, hooks=["blocks.0.hook_resid_post"])
