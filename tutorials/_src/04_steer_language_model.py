# %% [markdown]
# # 4. Steer a language model with concepts
#
# SAE latents are concepts you can turn up, down or off inside the model. `LanguageSteering`
# (`sae_causal_plugin.steering.language`) is a context manager around any TransformerLens
# `HookedTransformer` or SAELens `HookedSAETransformer`: inside it, every forward pass has chosen
# SAE latents edited at one hook point,
#
# * **error-preserving**: the activation becomes `x + W_dec[S] (z'_S - z_S)`, so everything the SAE
#   does not reconstruct is kept and `strength=0` is an exact no-op;
# * in one of four **modes**: `add` a value to the latent, `clamp` it to a value, `ablate` it,
#   `scale` it;
# * at chosen **positions** (ints, negative from the end, or a boolean mask);
# * **graph-aware**: `include_descendants=True` also edits every finer concept below the latent
#   in a `ConceptGraph` (ablating `fish` then also ablates `trout`, `salmon`, `carp`).
#
# Offline, this notebook uses the package's **language toy world**: a synthetic language with a known
# taxonomy (category -> subcategory -> item) and a tiny `HookedTransformer` the project trained on it,
# so every effect can be measured against the truth. The switch repeats the steering on gpt2-small
# with a SAELens pretrained SAE.

# %%
USE_REAL_MODELS = False  # <- switch: True also steers gpt2-small with SAELens's gpt2-small-res-jb SAE (needs internet)

# %%
import logging
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # plain-text progress bars are fine
warnings.filterwarnings("ignore", category=UserWarning, module="sae_lens")  # dataset-epoch notices of the tiny corpus

import torch
from IPython.display import Image, display
from sae_lens import SAE, HookedSAETransformer

from sae_causal_plugin import HierarchicalBatchTopKTrainingSAEConfig
from sae_causal_plugin.graph import name_matched_latents, recover_concept_graph
from sae_causal_plugin.steering.language import LanguageSteering, generate, mean_token_nll, next_token_probs
from sae_causal_plugin.worlds.language_world import generate_corpus, load_language_world, measure
from sae_causal_plugin.worlds.language_world import saes as world_saes

logging.getLogger("sae_lens").setLevel(logging.ERROR)
OUT = Path("tutorial_outputs/04")
OUT.mkdir(parents=True, exist_ok=True)
_ = torch.set_grad_enabled(False)  # inference everywhere; the training cells switch gradients on with torch.enable_grad()

# %% [markdown]
# ## The world and its model
#
# Four categories with two subcategories of three items each. Sentences cue a concept at some depth
# ("the *tasty sweet* apple ...": a food cue, a fruit cue, then the item) and documents tend to stay
# on one topic, so the model learns to predict items of the category the text is about. The next
# token after `the` or after a subcategory cue is an *entity slot*: where an item can come next.

# %%
world = load_language_world()
model, taxonomy = world.model, world.taxonomy
for category, subcategories in taxonomy.tree.items():
    print(f"{category:8s}", {sub: list(items) for sub, items in subcategories.items()})
print("\nsample text:", generate_corpus(1, seed=7).texts()[0])
prompt = world.encode("the tasty sweet apple eaten juicy crisp . the")
print("\nnext-token item mass per category after", repr(world.decode(prompt[0])), ":",
      {c: round(m, 3) for c, m in measure.category_masses(model, prompt, taxonomy).items()})

# %% [markdown]
# ## An SAE whose latents are concepts
#
# A hierarchical BatchTopK SAE at `blocks.0.hook_resid_post`, reading the entity nouns (items,
# `thing`, `one`), trained by SAELens's `LanguageModelSAETrainingRunner` on the world's text
# (`override_model`, `override_dataset`: no download) and saved as a stock SAELens SAE; we load it
# back with plain `SAE.load_from_disk`, the way you would load any SAE you want to steer with. Its
# nested coarse-to-fine term asks the first 4 latents (as many as categories) and the first 12
# (categories + subcategories) to reconstruct the activations on their own. Latents are then named after the true concept
# whose presence their firing matches best, and the concept graph is recovered from their co-firing
# (notebook 2) and scored against the taxonomy.

# %%
sae_config = HierarchicalBatchTopKTrainingSAEConfig(d_in=model.cfg.d_model, d_sae=48, k=3, nested_coefficient=3.0,
                                                    level_widths=[4, 12])
with torch.enable_grad():
    training_sae, sae_dir = world_saes.train_layer_sae(model, sae_config=sae_config, training_tokens=300_000,
                                                       out_dir=OUT / "sae")
sae = SAE.load_from_disk(str(sae_dir)).eval()
hook = sae.cfg.metadata.hook_name
corpus = generate_corpus(1024, seed=1000)
x, active = world_saes.collect_activations(model, corpus, hook)  # content words only, with concept labels
graph = recover_concept_graph(sae, x)
match = world_saes.match_latents_to_concepts(world_saes.latent_firing(sae, x), active, taxonomy.concepts)
latent_of = {concept: latent for latent, (concept, _) in match.items()}
scores = world_saes.score_taxonomy_recovery(graph, match, taxonomy)
print(f"{sae.cfg.architecture()} SAE at {hook}: {sae.cfg.d_sae} latents, {len(match)} named after a concept")
print({c: latent_of.get(c) for c in taxonomy.categories + taxonomy.subcategories})
print(f"recovered {graph}; edge precision {scores['edge_precision']:.2f}, recall {scores['edge_recall']:.2f}, "
      f"F1 {scores['edge_f1']:.2f} against the true taxonomy")
named = name_matched_latents(graph, match, taxonomy.level).subgraph([n for n in graph.concepts if n in match])
for node in named.concepts:
    named.add_concept(node, label=match[node][0])  # short labels for the picture: the concept's name
named.draw(OUT / "named_graph.png", title="recovered graph on the latents named after a concept")
display(Image(filename=str(OUT / "named_graph.png")))

# %% [markdown]
# ## Steer toward a category
#
# Add the latent named `vehicle` to a text about food. The value is twice the latent's typical
# firing activation (`measure.typical_activation`), so the edit has the size of a natural firing.
# `generate` runs greedy decoding with the steering active for every new token; `positions=[-1]`
# restricts the edit to the last position, where the next token is predicted.

# %%
target = "vehicle"
if target in latent_of:
    value = 2.0 * measure.typical_activation(sae, x, latent_of[target])
    steer = LanguageSteering(model, sae, [latent_of[target]], "add", value, hook_name=hook)
    print(f"add latent #{latent_of[target]} ({target}) with value {value:.2f}")
    print("before:", world.decode(generate(model, prompt, max_new_tokens=12)[0]))
    print("after: ", world.decode(generate(model, prompt, max_new_tokens=12, steering=steer)[0]))
    last_only = LanguageSteering(model, sae, [latent_of[target]], "add", value, hook_name=hook, positions=[-1])
    for name, steering in (("unsteered", None), ("every position", steer), ("last position", last_only)):
        probs = next_token_probs(model, prompt, steering)[0]
        print(f"{name:15s} item mass: " + ", ".join(
            f"{c} {probs[taxonomy.item_token_ids(c)].sum():.3f}" for c in taxonomy.categories))
    zero = LanguageSteering(model, sae, [latent_of[target]], "add", value, hook_name=hook, strength=0.0)
    print("strength 0 is a no-op:", torch.equal(next_token_probs(model, prompt, zero), next_token_probs(model, prompt)))
else:
    print(f"no latent was named {target!r} in this run")

# %% [markdown]
# **Measured over many texts.** For each category, the latent is added on 192 documents about the
# *other* categories: how much more probability do the category's items get at the entity slots
# (`mass_ratio`), and how much does the perplexity of that text rise (`ppl_increase`)? The measuring
# helpers take a function `tokens -> LanguageSteering`, so the positions can depend on the text:
# below, every position, or only the entity nouns this SAE reads (a boolean position mask). The
# project's targets are a ratio of at least 5 with at most +10% perplexity; the numbers are what this
# run gives.

# %%
for category in taxonomy.categories:
    if category not in latent_of:
        print(f"{category:8s} no latent")
        continue
    value = 2.0 * measure.typical_activation(sae, x, latent_of[category])
    every = lambda tokens: LanguageSteering(model, sae, [latent_of[category]], "add", value, hook_name=hook)
    nouns = lambda tokens: LanguageSteering(model, sae, [latent_of[category]], "add", value, hook_name=hook,
                                            positions=measure.noun_positions(tokens, taxonomy))
    for where, steering_for in (("every position", every), ("entity nouns", nouns)):
        result = measure.category_steering(model, steering_for, taxonomy, category, seed=2000)
        print(f"{category:8s} {where:15s} item mass {result['mass_before']:.4f} -> {result['mass_after']:.4f} "
              f"(x{result['mass_ratio']:.1f}), perplexity {100 * result['ppl_increase']:+.0f}%")

# %% [markdown]
# ## Ablate a subcategory with its descendants
#
# `ablate` sets latents to zero (error-preserving). With `include_descendants=True` and the recovered
# graph, every latent below the subcategory's latent is ablated too: `steering.latents` shows the
# expanded set. The measure is the mass of the subcategory's items at the entity slots of text about
# it, after / before (the project's target is below 10%).

# %%
for sub in taxonomy.subcategories:
    if sub not in latent_of:
        print(f"{sub:10s} no latent")
        continue
    latent = latent_of[sub]
    steering = LanguageSteering(model, sae, [latent], "ablate", hook_name=hook,
                                include_descendants=latent in graph, graph=graph)
    result = measure.subcategory_ablation(model, lambda tokens: steering, taxonomy, sub, seed=3000)
    names = [match.get(i, ("?",))[0] for i in steering.latents]
    print(f"{sub:10s} ablating latents {steering.latents} {names}: item mass "
          f"{result['mass_before']:.3f} -> {result['mass_after']:.3f} ({result['mass_fraction']:.0%} left)")

# %% [markdown]
# ## The same with SAELens's `HookedSAETransformer`
#
# On a `HookedSAETransformer` with the SAE spliced in (`add_sae`), the forward pass runs through the
# SAE's reconstruction; `LanguageSteering` then edits the spliced stream
# (`<hook>.hook_sae_output`). Here with the error term on, so the unsteered model is unchanged.

# %%
spliced = HookedSAETransformer(model.cfg)
spliced.load_state_dict(model.state_dict(), strict=False)
spliced.eval()
spliced.add_sae(sae, use_error_term=True)
print("unsteered logits match the plain model:", torch.allclose(spliced(prompt), model(prompt), atol=1e-4))
if target in latent_of:
    value = 2.0 * measure.typical_activation(sae, x, latent_of[target])
    steering = LanguageSteering(spliced, sae, [latent_of[target]], "add", value)
    print("edits", steering.hook_name)
    print("after:", world.decode(generate(spliced, prompt, max_new_tokens=12, steering=steering)[0]))
spliced.reset_saes()

# %% [markdown]
# `python -m sae_causal_plugin.bench language-world` measures all of this at a larger budget, and
# `sae-causal demo` writes it as a report; the README lists the figures.
#
# ## Real model: gpt2-small
#
# The same class on gpt2-small with SAELens's pretrained `gpt2-small-res-jb` SAE at layer 8. Latent
# ids come from Neuronpedia's `gpt2sm-res-jb` dashboards; here we pick the latent that fires most on
# the last token of a short text about the ocean and add it to an unrelated prompt.

# %%
if USE_REAL_MODELS:
    from transformer_lens import HookedTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpt2 = HookedTransformer.from_pretrained("gpt2", device=device)
    gpt2_sae = SAE.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre", device=device)
    gpt2_hook = gpt2_sae.cfg.metadata.hook_name
    _, cache = gpt2.run_with_cache("The waves crashed on the sandy beach by the ocean", names_filter=gpt2_hook)
    codes = gpt2_sae.encode(cache[gpt2_hook][0, -1:])[0]
    ocean = int(codes.argmax())
    steering = LanguageSteering(gpt2, gpt2_sae, [ocean], "add", 4.0 * float(codes[ocean]))
    tokens = gpt2.to_tokens("My favourite thing to do on weekends is")
    print("latent", ocean)
    print("before:", gpt2.to_string(generate(gpt2, tokens, max_new_tokens=20)[0]))
    print("after: ", gpt2.to_string(generate(gpt2, tokens, max_new_tokens=20, steering=steering)[0]))
