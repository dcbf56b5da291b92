"""``sae-causal``: the command line of sae-causal-plugin (also ``python -m sae_causal_plugin``).

  demo    train hierarchical SAEs on a shipped toy world, recover its concept graph, steer, write a report
  train   train an SAE from a YAML / JSON config that mirrors SAELens's runner config
  graph   recover the concept graph of a trained SAE from activations
  steer   generate text before / after steering a concept of an SAE

Run ``sae-causal COMMAND --help`` for every option. User errors print one message to stderr and
exit with status 2; any other error prints one short line and exits with status 1; set
SAE_CAUSAL_DEBUG=1 to see the traceback instead. Ctrl-C prints one line
and exits with status 130; output folders are then left as they were.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from sae_causal_plugin._interrupts import Noticed, handlers_restored, is_interrupt, noticed
from sae_causal_plugin.cli import demo, graph, steer, train
from sae_causal_plugin.cli.errors import UserError

COMMANDS = (demo, train, graph, steer)
USER_ERROR_STATUS = 2
INTERNAL_ERROR_STATUS = 1
INTERRUPTED_STATUS = 130
USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-causal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 success, 1 internal error, 2 user error, 130 interrupted).

    Ctrl-C gives one line and status 130 whichever library turned it into an exception (SAELens's
    runner raises its own ``InterruptedException``); the signal handlers a library installed are
    put back as they were when the command ends.
    """
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        words = argv if argv is not None else sys.argv[1:]
        command = next((w for w in words if not w.startswith("-")), "")
        print(f"sae-causal {command}: interrupted".replace("  ", " "), file=sys.stderr)
        return INTERRUPTED_STATUS
    interrupted = Noticed()
    try:
        with handlers_restored(), noticed() as interrupted:
            return int(args.run(args) or 0)
    except BaseException as err:  # noqa: BLE001 - sorted below; anything else is re-raised
        if not (is_interrupt(err) or interrupted.seen):
            if os.environ.get("SAE_CAUSAL_DEBUG") or not isinstance(err, Exception):
                raise
            if isinstance(err, USER_ERRORS):
                print(f"sae-causal {args.command}: error: {err}", file=sys.stderr)
                return USER_ERROR_STATUS
            print(f"sae-causal {args.command}: internal error: {type(err).__name__}: {err}\n"
                  "  this is not a problem with the input as far as the checks can tell; run again with "
                  "SAE_CAUSAL_DEBUG=1 for the traceback, and please report it", file=sys.stderr)
            return INTERNAL_ERROR_STATUS
    # interrupted: free the interrupted frames first, so progress bars they held are closed before our line
    gc.collect()
    print(f"sae-causal {args.command}: interrupted", file=sys.stderr)
    return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
