"""``sae-causal graph``: an SAE folder + an activation source -> concept_graph.json / .graphml / .png / .html (interactive)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from sae_causal_plugin._options import float_option
from sae_causal_plugin.graph.thresholds import (
    DEFAULT_EXPLAIN_MARGIN,
    DEFAULT_MIN_CONDITIONAL,
    DEFAULT_MIN_LIFT,
    DEFAULT_MIN_SUPPORT,
)

OUTPUT_FILES = ("concept_graph.json", "concept_graph.graphml", "concept_graph.png", "concept_graph.html")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "graph",
        help="recover the concept graph of a trained SAE from activations",
        description=(
            "Encode activations with a saved SAE, count how its latents fire and co-fire (one "
            "streaming pass) and keep minimal parent sets: a latent c gets parent p when "
            "P(p | c) >= --min-conditional. Token positions the SAE was trained without (<bos>, its "
            "recorded exclude_special_tokens) are left out. Writes concept_graph.json, concept_graph.graphml, "
            "concept_graph.png and the interactive concept_graph.html into --out (all or nothing). Edges point child -> parent."
        ),
    )
    p.add_argument("--sae", required=True, metavar="DIR", help="SAELens SAE folder (cfg.json + weights)")
    p.add_argument("--model", default=None,
                   help="'language-world', a local model folder or a TransformerLens name; default: the "
                        "model recorded in the SAE's cfg.json. Needed with --dataset")
    p.add_argument("--hook", default=None,
                   help="hook point whose activations the SAE reads; default: the SAE's recorded hook_name "
                        "(another hook needs --force-hook)")
    p.add_argument("--force-hook", action="store_true",
                   help="accept a --hook other than the one the SAE was trained on")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="SRC",
                        help="text / tokens to run the model on: 'language-world', or a .txt (one document "
                             "per line), .jsonl / .json ('text' or 'input_ids'), .pt token file")
    source.add_argument("--activations", metavar="FILE",
                        help="precomputed activations [n, d_in] in a .pt, .npy or .safetensors file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the graph files")
    p.add_argument("--tokens", type=int, default=100_000,
                   help="tokens to draw from 'language-world' (default 100000); files are read whole")
    p.add_argument("--context-size", type=int, default=None,
                   help="tokens per row fed to the model (default: the SAE's recorded context_size, "
                        "else the model's n_ctx, at most 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the 'language-world' draw (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per model forward pass (default 32)")
    p.add_argument("--min-conditional", type=float_option(0, 1), default=DEFAULT_MIN_CONDITIONAL,
                   help=f"minimum P(parent | child) for an edge (default {DEFAULT_MIN_CONDITIONAL})")
    p.add_argument("--min-support", type=int, default=DEFAULT_MIN_SUPPORT,
                   help=f"minimum firings of a latent to become a node (default {DEFAULT_MIN_SUPPORT})")
    p.add_argument("--min-lift", type=float_option(0), default=DEFAULT_MIN_LIFT,
                   help=f"minimum P(c, p) / (P(c) P(p)) of an edge (default {DEFAULT_MIN_LIFT})")
    p.add_argument("--explain-margin", type=float_option(0, 1), default=DEFAULT_EXPLAIN_MARGIN,
                   help="drop a parent that another, finer parent nearly implies, within this margin "
                        f"of --min-conditional (default {DEFAULT_EXPLAIN_MARGIN}; 0 = off)")
    p.add_argument("--min-activation", type=float_option(0), default=0.0,
                   help="a latent fires when its code exceeds this (default 0: any non-zero code)")
    p.add_argument("--max-drawn", type=int, default=200,
                   help="concepts drawn in the PNG, those with most edges first (default 200)")
    p.add_argument("--no-labels", action="store_true",
                   help="with --dataset language-world, do not name latents by the true concept their "
                        "firing matches best")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--dist-timeout", type=float_option(0), default=600.0, metavar="S",
                   help="under torchrun: seconds a rank waits for the others before failing (default 600)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One process, or every rank of a ``torchrun`` launch (rank 0 writes the graph)."""
    from sae_causal_plugin.cli.errors import UserError
    from sae_causal_plugin.distributed import launched_by_torchrun, process_group

    if args.max_drawn < 1 or args.batch_size < 1 or args.tokens < 1:
        raise UserError("--max-drawn, --batch-size and --tokens must be at least 1")
    if args.dist_timeout <= 0:
        raise UserError(f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout}")
    if not launched_by_torchrun():
        return _run(args, None)
    with process_group(args.dist_timeout) as shards:
        return _run(args, shards)


def _run(args: argparse.Namespace, shards: Any) -> int:
    from sae_causal_plugin.cli.sae_dirs import load_sae_dir
    from sae_causal_plugin.graph import recover_concept_graph
    from sae_causal_plugin.graph.shards import OneShard
    from sae_causal_plugin._files import check_target_dir, staged_dir
    from sae_causal_plugin.report.writer import drawn_part

    group = shards if shards is not None else OneShard()
    main = group.rank == 0
    check_target_dir(args.out, what="--out folder")
    sae = group.together(lambda: load_sae_dir(args.sae))
    source = group.together(lambda: activation_source(args, sae, group))
    graph = recover_concept_graph(
        sae, source.activations,
        min_conditional=args.min_conditional, min_support=args.min_support, min_lift=args.min_lift,
        explain_margin=args.explain_margin, min_activation=args.min_activation,
        show_progress=main and not args.no_progress, total_rows=source.n_activation_rows, shards=shards,
    )
    if not main:
        return 0
    graph.meta["sae"] = str(args.sae)
    if source.world_labels and not args.no_labels:
        from sae_causal_plugin.cli.labels import name_by_language_world

        graph, n_named = name_by_language_world(
            graph, sae, source.handle, source.hook, n_documents=source.n_rows, seed=args.seed,
            exclude_tokens=source.excluded)
        print(f"named {n_named} latents by the language world's true concepts")
    with staged_dir(args.out, what="--out folder") as stage:
        graph.save_json(stage / "concept_graph.json")
        graph.to_graphml(stage / "concept_graph.graphml")
        graph.subgraph(drawn_part(graph)).draw(stage / "concept_graph.png", max_nodes=args.max_drawn)
        graph.draw_html(stage / "concept_graph.html")
    print(f"concept graph: {len(graph)} concepts, {len(graph.edges)} edges -> {args.out}/"
          f"{{{','.join(OUTPUT_FILES)}}}")
    return 0


@dataclass
class Source:
    """Where the activations come from, and what the labelling step needs to redo it."""

    activations: Any
    handle: Any = None
    hook: str | None = None
    n_rows: int = 0
    excluded: list[int] | None = None
    world_labels: bool = False
    n_activation_rows: int | None = None


def activation_source(args: argparse.Namespace, sae: Any, shards: Any) -> Source:
    """``--activations`` file, or the model's hook over ``--dataset`` (checked against the SAE).

    ``shards`` (one rank of ``torchrun``, or ``OneShard``) picks this rank's contiguous block of
    the file's rows or of the dataset's token rows.
    """
    from sae_causal_plugin.distributed import shard_slice

    def block(rows: Any) -> Any:
        return rows[shard_slice(int(rows.shape[0]), shards.rank, shards.world_size)]

    from sae_causal_plugin.cli.data import hook_activations, kept_positions, load_activations, load_tokens
    from sae_causal_plugin.cli.models import LANGUAGE_WORLD, load_model
    from sae_causal_plugin.cli.sae_dirs import check_sae_fits_hook, model_and_hook, saved_field

    if args.activations:
        if args.model or args.hook:
            model, hook = model_and_hook(sae, args.model, args.hook, args.sae, force_hook=args.force_hook)
            check_sae_fits_hook(sae, load_model(model), hook, args.sae)
        return Source(block(load_activations(args.activations, int(sae.cfg.d_in))))
    model, hook = model_and_hook(sae, args.model, args.hook, args.sae, force_hook=args.force_hook)
    handle = load_model(model)
    check_sae_fits_hook(sae, handle, hook, args.sae)
    context = args.context_size or saved_field(sae, "context_size") or min(int(handle.model.cfg.n_ctx), 128)
    all_tokens = load_tokens(args.dataset, handle, context_size=int(context), n_tokens=args.tokens, seed=args.seed)
    tokens = block(all_tokens)
    excluded = saved_field(sae, "exclude_special_tokens")
    excluded = excluded if isinstance(excluded, list) else None
    activations = hook_activations(handle, hook, tokens, batch_size=args.batch_size, exclude_tokens=excluded)
    world_labels = args.dataset == LANGUAGE_WORLD and handle.world is not None
    rows = int(kept_positions(handle, tokens, exclude_tokens=excluded).sum())
    return Source(activations, handle, hook, int(all_tokens.shape[0]), excluded, world_labels, rows)
