"""``sae-causal``: the command line of sae-causal-plugin (also ``python -m sae_causal_plugin``).

  demo    train hierarchical SAEs on a shipped toy world, recover its concept graph, steer, write a report
  train   train an SAE from a YAML / JSON config that mirrors SAELens's runner config
  graph   recover the concept graph of a trained SAE from activations
  steer   generate text before / after steering a concept of an SAE

Run ``sae-causal COMMAND --help`` for every option. User errors print one message to stderr and
exit with status 2; set SAE_CAUSAL_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from sae_causal_plugin.cli import demo, graph, steer, train
from sae_causal_plugin.cli.errors import UserError

COMMANDS = (demo, train, graph, steer)
USER_ERROR_STATUS = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-causal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 success, 2 user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError) as err:
        if os.environ.get("SAE_CAUSAL_DEBUG"):
            raise
        print(f"sae-causal {args.command}: error: {err}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"sae-causal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
