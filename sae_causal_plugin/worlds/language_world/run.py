"""``run_language_world``: the whole idea on the shipped language model, end to end.

Loads the shipped model, trains a hierarchical SAE at one hook through SAELens's
``LanguageModelSAETrainingRunner``, recovers the concept graph from the SAE's co-firing on fresh
text, matches latents to the true concepts (names them), scores the graph against the true
taxonomy, and measures concept steering:

* ``edge_f1``: recovered vs true taxonomy edges (:func:`.saes.score_taxonomy_recovery`);
* ``steer_mass_ratio``: adding a category's latent (at the entity slots by default; at every
  position with ``steer_positions="all"``, at the entity nouns with ``"nouns"``) multiplies the probability mass of the
  category's items at entity slots of text about other categories by this factor (geometric mean
  over categories); ``ppl_increase``: the relative perplexity change of that text under the same
  steering (mean over categories);
* ``layer_edge_f1`` (levels = layers): one SAE per layer trained jointly by the multi-level
  trainer, cross-layer graph by :func:`~sae_causal_plugin.multilevel.recover_layered_graph`,
  scored by :func:`.layers.score_layered_graph`;
* ``ablation_mass_fraction``: ablating a subcategory's latent with its descendants in the
  recovered graph leaves this fraction of its items' mass at entity slots of text about it (mean
  over subcategories).

A concept with no matched latent cannot be steered: it counts as ratio 1 / fraction 1.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_causal_plugin.graph import name_matched_latents, recover_concept_graph, summarise_latents
from sae_causal_plugin.graph.matching import firing_f1
from sae_causal_plugin.steering.language import LanguageSteering, generate
from sae_causal_plugin.worlds.language_world import measure
from sae_causal_plugin.worlds.language_world.corpus import generate_corpus
from sae_causal_plugin.worlds.language_world.experiment import LanguageWorldConfig
from sae_causal_plugin.worlds.language_world.model import load_language_world
from sae_causal_plugin.worlds.language_world.saes import (
    collect_activations,
    kept_positions,
    latent_codes,
    match_latents_to_concepts,
    score_taxonomy_recovery,
    train_layer_sae,
)
from sae_causal_plugin.worlds.run import LatentEntry, SteeringExample, WorldRun
from sae_causal_plugin._rng import keeps_global_rng

#: how the report describes the tokens the SAE reads (option ``read``).
READ_DESCRIPTION = {
    "nouns": "the entity nouns (items, 'thing', 'one')",
    "slots": "the entity slots ('the' and subcategory cue words, where an item can come next)",
}

@keeps_global_rng
def run_language_world(
    seed: int = 0,
    *,
    config: LanguageWorldConfig | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    **options: Any,
) -> WorldRun:
    """Train, recover, score and steer on the language world; see the module docstring.

    ``options`` override fields of ``config`` (default :class:`~.experiment.LanguageWorldConfig`).
    With ``out_dir`` the SAE is saved under ``out_dir / "saes" / "layer_sae"`` (a stock SAELens
    directory).
    """
    known = sorted(f.name for f in fields(LanguageWorldConfig))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {known}")
    cfg = replace(config or LanguageWorldConfig(), **options)
    opt = asdict(cfg)
    start = time.perf_counter()
    bar = tqdm(total=6, desc="language world", disable=not progress)
    torch.manual_seed(seed)
    world = load_language_world()
    model, taxonomy = world.model, world.taxonomy
    hook = opt["hook_name"]

    bar.set_postfix_str("training the SAE through SAELens")
    sae_dir = Path(out_dir) / "saes" / "layer_sae" if out_dir is not None else None
    sae_config = cfg.sae_config(int(model.cfg.d_model))
    sae, saved = train_layer_sae(model, hook_name=hook, seed=seed, training_tokens=opt["training_tokens"],
                                 batch_size_tokens=opt["batch_size_tokens"], sae_config=sae_config, out_dir=sae_dir,
                                 words=opt["read"])
    bar.update()

    bar.set_postfix_str("recovering the concept graph")
    corpus = generate_corpus(opt["n_eval_documents"], seed=seed + 1000, taxonomy=taxonomy)
    x, active = collect_activations(model, corpus, hook, words=opt["read"])
    graph = recover_concept_graph(sae, x)
    codes = latent_codes(sae, x)
    fired = codes > 0
    match = match_latents_to_concepts(fired, active, taxonomy.concepts)
    scores = score_taxonomy_recovery(graph, match, taxonomy)
    named = name_matched_latents(graph, match, taxonomy.level)
    latent_of = {concept: latent for latent, (concept, _) in match.items()}
    bar.update()

    bar.set_postfix_str("levels = layers: joint SAEs per layer")
    layer_scores: dict[str, Any] = {}
    if opt["layers"]:
        from sae_causal_plugin.worlds.language_world.layers import layered_world_graph

        layer_saes, layer_graph, layer_scores = layered_world_graph(model, taxonomy, seed=seed)
        if out_dir is not None:
            from sae_causal_plugin.multilevel import save_multilevel

            layer_dir = save_multilevel(layer_saes, Path(out_dir) / "saes" / "layer_levels")
            layer_graph.save_json(Path(layer_dir) / "layered_graph.json")
    bar.update()

    bar.set_postfix_str("steering toward categories")
    per_category: dict[str, dict[str, float]] = {}
    position_sets = {"all": None, "nouns": measure.noun_positions, "slots": measure.slot_positions}
    if opt["steer_positions"] not in position_sets:
        raise ValueError(f"steer_positions must be one of {sorted(position_sets)}, got {opt['steer_positions']!r}")

    def where(tokens: torch.Tensor) -> torch.Tensor | None:
        positions = position_sets[opt["steer_positions"]]
        return None if positions is None else positions(tokens, taxonomy)

    for category in taxonomy.categories:
        latent = latent_of.get(category)
        if latent is None:
            per_category[category] = dict(mass_ratio=1.0, ppl_increase=0.0, matched=0.0)
            continue
        value = opt["steer_scale"] * measure.typical_activation(sae, x, latent)

        def add(tokens: torch.Tensor, latent: int = latent, value: float = value) -> LanguageSteering:
            return LanguageSteering(model, sae, [latent], "add", value, hook_name=hook, positions=where(tokens))

        per_category[category] = measure.category_steering(model, add, taxonomy, category, seed=seed + 2000)
    sweep = [_steer_at(scale, model, sae, hook, x, latent_of, taxonomy, where, seed) for scale in opt["steer_sweep"]]
    bar.update()

    bar.set_postfix_str("ablating subcategories")
    per_sub: dict[str, dict[str, float]] = {}
    for sub in taxonomy.subcategories:
        latent = latent_of.get(sub)
        if latent is None:
            per_sub[sub] = dict(mass_fraction=1.0, matched=0.0)
            continue

        def ablate(tokens: torch.Tensor, latent: int = latent) -> LanguageSteering:
            return LanguageSteering(model, sae, [latent], "ablate", hook_name=hook, positions=where(tokens),
                                    include_descendants=latent in graph, graph=graph)

        n_latents = len(ablate(corpus.tokens[:1]).latents)
        per_sub[sub] = {**measure.subcategory_ablation(model, ablate, taxonomy, sub, seed=seed + 3000),
                        "n_latents": float(n_latents)}
    bar.update()

    bar.set_postfix_str("steering example, latent browser")
    examples = _examples(model, sae, hook, world, latent_of, x, opt)
    hint = steer_hint(model, sae, hook, world, latent_of, x)
    latents, concept_firing = _latent_browser(sae, codes, active, named, match, corpus, world, opt["read"])
    bar.update()
    bar.close()

    ratios = [max(r["mass_ratio"], 1e-12) for r in per_category.values()]
    metrics: dict[str, Any] = dict(
        edge_f1=scores["edge_f1"],
        edge_precision=scores["edge_precision"],
        edge_recall=scores["edge_recall"],
        steer_mass_ratio=math.exp(sum(map(math.log, ratios)) / len(ratios)),
        steer_mass_ratio_min=min(ratios),
        ppl_increase=sum(r["ppl_increase"] for r in per_category.values()) / len(per_category),
        ppl_increase_max=max(r["ppl_increase"] for r in per_category.values()),
        ablation_mass_fraction=sum(r["mass_fraction"] for r in per_sub.values()) / len(per_sub),
        ablation_mass_fraction_max=max(r["mass_fraction"] for r in per_sub.values()),
        **layer_scores,
        n_matched_latents=scores["n_matched_latents"],
        n_recovered_edges=scores["n_recovered_edges"],
        n_true_edges=scores["n_true_edges"],
        seed=seed,
        hook_name=hook,
        read=opt["read"],
        steer_scale=opt["steer_scale"],
        steer_positions=opt["steer_positions"],
        per_category={c: {k: float(v) for k, v in r.items()} for c, r in per_category.items()},
        steer_sweep=sweep,
        steer_hint=hint,
        per_subcategory={s: {k: float(v) for k, v in r.items()} for s, r in per_sub.items()},
        seconds=time.perf_counter() - start,
    )
    description = (
        "A tiny HookedTransformer (2 layers, d_model 64) trained by the project on a synthetic language "
        f"with a known taxonomy ({len(taxonomy.categories)} categories, {len(taxonomy.subcategories)} "
        f"subcategories, {len(taxonomy.items)} items). A hierarchical BatchTopK SAE (nested coarse-to-fine "
        f"term, widths {list(cfg.level_widths)}) reads {READ_DESCRIPTION[opt['read']]} at {hook} and is "
        "trained through SAELens's LanguageModelSAETrainingRunner; the concept graph comes from its latents' "
        "co-firing on fresh text; latents are named by the true concept whose presence their firing "
        "matches best (Hungarian matching on firing F1)."
    )
    sae_dirs = {hook: saved} if saved is not None else {}
    if opt["layers"] and out_dir is not None:
        sae_dirs["layers"] = Path(out_dir) / "saes" / "layer_levels"
    return WorldRun(world="language", learned_graph=named, true_graph=taxonomy.true_graph(), metrics=metrics,
                    steering_examples=examples, sae_dirs=sae_dirs,
                    description=description, latents=latents, concept_firing=concept_firing)


@torch.no_grad()
def _latent_browser(sae, codes, active, graph, match, corpus, world, words,
                    top_k: int = 4) -> tuple[list[LatentEntry], dict[str, dict[str, float]]]:
    """Every latent with its 4 top-activating contexts (6 words before the firing token, 2 after), and
    the firing F1 of every (concept, latent) pair."""
    where = kept_positions(corpus, words).nonzero()  # row -> (document, position)
    names = {i: graph.node_label(i) if i in graph else f"#{i}" for i in range(codes.shape[1])}
    entries = []
    for summary in summarise_latents(codes, sae.W_dec, graph, match, top_k=top_k):
        contexts = []
        for row in summary.top_rows:
            doc, pos = (int(v) for v in where[row])
            tokens = corpus.tokens[doc]
            contexts.append((str(world.decode(tokens[max(0, pos - 6):pos])), str(world.decode(tokens[pos:pos + 1])),
                             str(world.decode(tokens[pos + 1:pos + 3]))))
        entries.append(LatentEntry(summary=summary, contexts=contexts, name=names[summary.latent]))
    f1 = firing_f1(codes > 0, active)
    concept_firing = {c: {names[i]: round(float(f1[i, j]), 3) for i in range(f1.shape[0])}
                      for j, c in enumerate(world.taxonomy.concepts)}
    return entries, concept_firing


#: multiples of a latent's typical activation tried for the demo's suggested steer command.
HINT_MULTIPLES = (1, 2, 4, 8)


def steer_hint(model, sae, hook, world, latent_of, x, max_new_tokens: int = 12) -> dict[str, Any]:
    """A steer command's settings that visibly steer: the first category with a latent, a prompt ``the``
    plus a cue word of another category, and the smallest value (a multiple of :data:`HINT_MULTIPLES` of
    the latent's typical activation) whose greedy continuation names an item of the category when the
    unsteered one does not.  ``visible`` says whether any tried value did (``{}``: no category matched)."""
    taxonomy = world.taxonomy
    category = next((c for c in taxonomy.categories if c in latent_of), None)
    if category is None:
        return {}
    other = next(c for c in taxonomy.categories if c != category)
    text = f"the {taxonomy.cues[other][0]}"
    prompt = world.encode(text)
    items = set(taxonomy.item_token_ids(category))

    def names_an_item(steering: LanguageSteering | None) -> bool:
        new = generate(model, prompt, max_new_tokens=max_new_tokens, steering=steering)[0, prompt.shape[1]:]
        return any(int(t) in items for t in new)

    base = measure.typical_activation(sae, x, latent_of[category])
    visible, value = False, round(HINT_MULTIPLES[-1] * base, 1)
    if not names_an_item(None):
        for multiple in HINT_MULTIPLES:
            candidate = round(multiple * base, 1)
            if names_an_item(LanguageSteering(model, sae, [latent_of[category]], "add", candidate, hook_name=hook)):
                visible, value = True, candidate
                break
    return {"concept": category, "prompt": text, "value": value, "visible": visible}


def _steer_at(scale, model, sae, hook, x, latent_of, taxonomy, where, seed) -> dict[str, float]:
    """Mean figures over the matched categories with the steering value ``scale`` x mean activation."""
    ratios, ppls = [], []
    for category in taxonomy.categories:
        latent = latent_of.get(category)
        if latent is None:
            ratios.append(1.0)
            ppls.append(0.0)
            continue
        value = scale * measure.typical_activation(sae, x, latent)

        def add(tokens: torch.Tensor, latent: int = latent, value: float = value) -> LanguageSteering:
            return LanguageSteering(model, sae, [latent], "add", value, hook_name=hook, positions=where(tokens))

        r = measure.category_steering(model, add, taxonomy, category, n_documents=96, seed=seed + 2000)
        ratios.append(max(r["mass_ratio"], 1e-12))
        ppls.append(r["ppl_increase"])
    return dict(steer_scale=float(scale), steer_mass_ratio=math.exp(sum(map(math.log, ratios)) / len(ratios)),
                ppl_increase=sum(ppls) / len(ppls))


def _examples(model, sae, hook, world, latent_of, x, opt) -> list[SteeringExample]:
    taxonomy = world.taxonomy
    target = opt["example_target"]
    latent = latent_of.get(target)
    if latent is None:
        return [SteeringExample(title=f"steer toward {target}", before="", after="",
                                note=f"no SAE latent matched {target!r}; nothing to steer", succeeded=False)]
    prompt = world.encode(opt["example_prompt"])
    value = opt["steer_scale"] * measure.typical_activation(sae, x, latent)
    steering = LanguageSteering(model, sae, [latent], "add", value, hook_name=hook)
    new = min(12, int(model.cfg.n_ctx) - prompt.shape[1])
    before = world.decode(generate(model, prompt, max_new_tokens=new)[0])
    after = world.decode(generate(model, prompt, max_new_tokens=new, steering=steering)[0])
    m_before = measure.category_masses(model, prompt, taxonomy)
    m_after = measure.category_masses(model, prompt, taxonomy, lambda tokens: steering)
    table = [{"category": c, "item mass before": round(m_before[c], 4), "item mass after": round(m_after[c], 4)}
             for c in taxonomy.categories]
    # a success: after steering, the target category's items are the most likely of all categories
    succeeded = max(taxonomy.categories, key=lambda c: m_after[c]) == target
    return [SteeringExample(
        title=f"add the '{target}' latent (#{latent}) at {hook}",
        before=str(before), after=str(after),
        note=(f"greedy continuation of {opt['example_prompt']!r}; the latent's decoder direction is added at every "
              f"position with value {value:.2f} ({opt['steer_scale']} x its mean firing activation), keeping the "
              "SAE's reconstruction error; the table gives each category's item mass at the next token"),
        table=table, succeeded=succeeded,
    )]


__all__ = ["run_language_world"]
