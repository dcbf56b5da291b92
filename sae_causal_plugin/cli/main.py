"""``sae-causal`` command line.

``sae-causal demo`` runs the main job. Until the language-model demo exists, that is the
synthetic-hierarchy benchmark at its default size, which prints its comparison table.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sae-causal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job (the synthetic-hierarchy benchmark for now)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic world and SAEs")
    demo.add_argument("--json", action="store_true", help="end with one JSON line of results")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from sae_causal_plugin.bench import synthetic_hierarchy

        extra = ["--json"] if args.json else []
        synthetic_hierarchy.main(["--seed", str(args.seed), *extra])
    return 0


if __name__ == "__main__":
    sys.exit(main())
