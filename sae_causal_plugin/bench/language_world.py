"""``python -m sae_causal_plugin.bench language-world``: the language world's headline figures.

Runs :func:`~sae_causal_plugin.worlds.language_world.run_language_world` (SAE through SAELens,
concept graph, steering; every option but ``--seed``, ``--json``, ``--out`` and ``--no-progress`` is a
field of :class:`~sae_causal_plugin.worlds.language_world.experiment.LanguageWorldConfig`) and prints
its figures; with ``--json`` the last line is one JSON object
with the keys ``edge_f1``, ``steer_mass_ratio``, ``ppl_increase``, ``ablation_mass_fraction``,
``seconds`` (and per-concept details).  Targets: edge F1 >= 0.85, mass ratio >= 5 with perplexity
+<= 10 %, ablation fraction < 0.10.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args
from sae_causal_plugin.worlds.language_world import run_language_world
from sae_causal_plugin.worlds.language_world.experiment import LanguageWorldConfig


def parse_args(argv: list[str] | None) -> tuple[LanguageWorldConfig, argparse.Namespace]:
    """The run's config and the bench's own options (``seed``, ``json``, ``out``, ``no_progress``)."""
    parser = argparse.ArgumentParser(prog="python -m sae_causal_plugin.bench language-world", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the SAE training and the text draws")
    add_dataclass_options(parser, LanguageWorldConfig)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    parser.add_argument("--out", type=Path, default=None, help="also save the trained SAE under this folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    return config_from_args(parser, args, LanguageWorldConfig), args


def main(argv: list[str] | None = None) -> None:
    config, args = parse_args(argv)
    run = run_language_world(args.seed, config=config, out_dir=args.out, progress=not args.no_progress)
    m = run.metrics
    print(f"edge F1 {m['edge_f1']:.3f} (precision {m['edge_precision']:.3f}, recall {m['edge_recall']:.3f}; "
          f"target >= 0.85)")
    print(f"steer mass ratio {m['steer_mass_ratio']:.2f} (min {m['steer_mass_ratio_min']:.2f}; target >= 5), "
          f"perplexity +{100 * m['ppl_increase']:.1f}% (max +{100 * m['ppl_increase_max']:.1f}%; target <= 10%)")
    print(f"ablation mass fraction {m['ablation_mass_fraction']:.3f} (max {m['ablation_mass_fraction_max']:.3f}; "
          f"target < 0.10)")
    if "layer_edge_f1" in m:
        print(f"levels = layers: cross-layer edge F1 {m['layer_edge_f1']:.3f} "
              f"(precision {m['layer_edge_precision']:.3f}, recall {m['layer_edge_recall']:.3f})")
    for row in m.get("steer_sweep", []):
        print(f"  steer scale {row['steer_scale']:g}: mass ratio {row['steer_mass_ratio']:.2f}, "
              f"perplexity +{100 * row['ppl_increase']:.1f}%")
    print(f"seconds {m['seconds']:.0f}")
    if args.json:
        print(json.dumps(m))


if __name__ == "__main__":
    main()
