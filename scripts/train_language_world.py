"""Retrain the language world's tiny HookedTransformer and write its weights.

    python scripts/train_language_world.py                      # -> sae_causal_plugin/worlds/assets/
    python scripts/train_language_world.py --out /tmp/lw --seed 1 --steps 2000

Reproducible: the corpus, the initialisation and the batch order come from ``--seed``.  The
shipped weights were written by the default command (seed 0, 2000 steps), a few minutes on 2 CPU
cores.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from sae_causal_plugin.worlds.language_world.model import save_language_model, train_language_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the weights (default: the package's worlds/assets/)")
    parser.add_argument("--seed", type=int, default=0, help="corpus, init and batch-order seed (default 0)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=64, help="documents per step (default 64)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    out = args.out or Path(str(resources.files("sae_causal_plugin.worlds") / "assets"))
    model, info = train_language_model(seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                                       progress=not args.no_progress)
    save_language_model(model, info, out)
    print(json.dumps({"out": str(out), **info}))


if __name__ == "__main__":
    main()
