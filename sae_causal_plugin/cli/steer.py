"""``sae-causal steer``: generate text before and after steering one concept of an SAE."""

from __future__ import annotations

import argparse
from typing import Any

from sae_causal_plugin._options import float_option
from sae_causal_plugin.cli.errors import UserError, closest

MODES = ("add", "clamp", "ablate", "scale")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "steer",
        help="generate text before / after steering a concept of an SAE",
        description=(
            "Load a model, a saved SAE and a concept graph (concept_graph.json from 'sae-causal graph' "
            "or a demo report), then generate a continuation of --prompt twice: as is, and with the "
            "concept edited at the SAE's hook. The edit keeps the SAE's reconstruction error: "
            "x' = x + W_dec[S] (z'_S - z_S). Prints both generations."
        ),
    )
    p.add_argument("--sae", required=True, metavar="DIR", help="SAELens SAE folder (cfg.json + weights)")
    p.add_argument("--graph", default=None, metavar="FILE",
                   help="concept_graph.json whose nodes are the SAE's latents; needed to name a concept by "
                        "label and with --include-descendants (without it, --concept is a latent index)")
    p.add_argument("--concept", required=True, metavar="ID",
                   help="the concept to steer: a node id of the graph (a latent index) or its label")
    p.add_argument("--mode", required=True, choices=MODES,
                   help="add: z + V; clamp: set z to V; ablate: set z to 0; scale: z * V")
    p.add_argument("--value", type=float_option(), default=None,
                   help="amount (add), target (clamp) or factor (scale); not used by ablate")
    p.add_argument("--include-descendants", action="store_true",
                   help="also edit every finer concept below this one in the graph")
    p.add_argument("--prompt", required=True,
                   help="text to continue (for a model without tokenizer: space-separated token ids)")
    p.add_argument("--model", default=None,
                   help="'language-world', a local model folder or a TransformerLens name; default: the "
                        "model recorded in the SAE's cfg.json")
    p.add_argument("--hook", default=None,
                   help="hook point to edit; default: the SAE's recorded hook_name (another hook needs --force-hook)")
    p.add_argument("--force-hook", action="store_true",
                   help="accept a --hook other than the one the SAE was trained on")
    p.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (default 8)")
    p.add_argument("--positions", default=None, metavar="P,P,...",
                   help="comma-separated token positions to edit (negative count from the end; "
                        "default: every position)")
    p.add_argument("--strength", type=float_option(), default=1.0, help="multiplies the edit (default 1; 0 = no edit)")
    p.add_argument("--temperature", type=float_option(0), default=0.0,
                   help="0 = greedy (default); above 0 samples, with --seed")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for both generations")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sae_causal_plugin.cli.models import load_model
    from sae_causal_plugin.cli.sae_dirs import check_sae_fits_hook, load_sae_dir, model_and_hook

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1")
    positions = _positions(args.positions)
    if args.graph is None:
        if args.include_descendants:
            raise UserError("--include-descendants needs --graph (the concept graph that says which concepts "
                            "are finer)")
        if not args.concept.lstrip("-").isdigit():
            raise UserError(f"without --graph, --concept must be a latent index, got {args.concept!r}; pass "
                            "--graph concept_graph.json to name concepts by label")
        graph, node = None, int(args.concept)
    else:
        graph = _load_graph(args.graph)
        node = resolve_concept(graph, args.concept)
    sae = load_sae_dir(args.sae)
    model_name, hook = model_and_hook(sae, args.model, args.hook, args.sae, force_hook=args.force_hook)
    handle = load_model(model_name)
    check_sae_fits_hook(sae, handle, hook, args.sae)
    latents = [node] if graph is None else concept_latents(graph, node, args.include_descendants)
    tokens = handle.encode(args.prompt)
    if args.mode != "ablate" and args.value is None:
        raise UserError(f"--mode {args.mode} needs --value; {value_hint(handle, sae, hook, tokens, latents[0])}")

    from sae_causal_plugin.steering.language import LanguageSteering, generate

    steering = LanguageSteering(handle.model, sae, latents, args.mode, args.value, hook_name=hook,
                                strength=args.strength, positions=positions)
    common = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    before = generate(handle.model, tokens, **common)
    after = generate(handle.model, tokens, steering=steering, **common)
    label = str(node) if graph is None else graph.node_label(node)
    value = "" if args.mode == "ablate" else f" {args.value:g}"
    print(f"concept {node!r} ({label}): latents {latents}, {args.mode}{value} at {hook}")
    print(f"before: {handle.decode(before[0])}")
    print(f"after:  {handle.decode(after[0])}")
    return 0


def value_hint(handle: Any, sae: Any, hook: str, tokens: Any, latent: int) -> str:
    """How strongly ``latent`` fires on the prompt, and values of that size for each mode."""
    from sae_causal_plugin.cli.data import hook_activations
    from sae_causal_plugin.steering.core import latent_firing_size

    if not 0 <= latent < int(sae.cfg.d_sae):
        return f"latent {latent} is outside the SAE's range [0, {sae.cfg.d_sae})"
    typical, fired, rows = latent_firing_size(sae, hook_activations(handle, hook, tokens), latent)
    if typical is None:
        return (f"latent {latent} does not fire on this prompt; try --mode add with a --value of a few units, "
                "or a prompt where it fires")
    return (f"latent {latent} fires at {typical:.3g} on average where it fires on this prompt "
            f"({fired} of {rows} positions): try add --value {4 * typical:.3g}, "
            f"clamp --value {2 * typical:.3g}, scale --value 2 (or 0.5 to weaken it)")


def _load_graph(path: str) -> Any:
    from pathlib import Path

    from sae_causal_plugin.graph import ConceptGraph

    if not Path(path).is_file():
        raise UserError(f"graph file {path} does not exist")
    return ConceptGraph.load_json(path)  # a malformed file: ValueError naming the file and the fix


def resolve_concept(graph: Any, concept: str) -> Any:
    """The graph node named by ``concept``: an id (``"12"`` finds latent 12), a label, or the
    true concept a latent was matched to (its ``concept`` attribute)."""
    candidates: list[Any] = [concept]
    if concept.lstrip("-").isdigit():
        candidates.insert(0, int(concept))
    for cand in candidates:
        if cand in graph:
            return cand
    for attr in ("label", "concept"):
        named = [n for n in graph.concepts if str(graph.concept_attrs(n).get(attr)) == concept]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise UserError(f"{attr} {concept!r} names {len(named)} concepts {named}; give a node id")
    names = [str(n) for n in graph.concepts] + [graph.node_label(n) for n in graph.concepts]
    names += [str(graph.concept_attrs(n)["concept"]) for n in graph.concepts if "concept" in graph.concept_attrs(n)]
    named = [n for n in graph.concepts if graph.node_label(n) != str(n)] or list(graph.concepts)
    shown = ", ".join(graph.node_label(n) if graph.node_label(n) == str(n) else f"{graph.node_label(n)} ({n})"
                      for n in named[:20]) + (" ..." if len(named) > 20 else "")
    raise UserError(f"concept {concept!r} is not in the graph{closest(concept, names)}; its concepts: {shown}")


def concept_latents(graph: Any, node: Any, include_descendants: bool) -> list[int]:
    """Latent indices of ``node`` (and its descendants): int ids, or a node's ``latent`` attribute."""
    nodes = [node] + (sorted(graph.descendants(node), key=str) if include_descendants else [])
    out = []
    for n in nodes:
        latent = n if isinstance(n, int) else graph.concept_attrs(n).get("latent")
        if latent is None:
            if n == node:
                raise UserError(f"concept {n!r} is not an SAE latent (its id is not an int and it has "
                                "no 'latent' attribute)")
            continue
        out.append(int(latent))
    return sorted(set(out))


def _positions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--positions must be comma-separated integers, got {text!r}") from None
