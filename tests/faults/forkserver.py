"""Run ``sae-causal`` commands in forked children of one warm Python process.

Starting Python with torch, TransformerLens and SAELens takes ~10 s; a fault case should take
about as long as the command itself.  :class:`ForkServer` starts this file once (``python
forkserver.py``): it imports the command line and everything its commands import, then, for
each request on stdin, forks a child that runs ``main(argv)`` in a given folder with stdout and
stderr going to files, and exits with main's status.  The test sends signals to the child's pid
itself, so a child is a real process interrupted or killed at a real point of its run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: exit status of a child interrupted before main() started (a harness problem, not the CLI's).
BEFORE_MAIN = 99


class ForkServer:
    """Client side: ``run(argv, cwd, log)`` -> child pid; ``wait(pid)`` -> exit status (-N: killed by N)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "forkserver.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=HERE.parent.parent, env=env)
        ready = self.proc.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"fork server did not start (said {ready!r})")

    def _ask(self, **request) -> int:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def run(self, argv: list[str], cwd: Path, log: Path) -> int:
        return self._ask(op="run", argv=[str(a) for a in argv], cwd=str(cwd),
                         stdout=str(log.with_suffix(".out")), stderr=str(log.with_suffix(".err")))

    def wait(self, pid: int) -> int:
        return self._ask(op="wait", pid=pid)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _serve() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch
    from datasets import Dataset  # noqa: F401
    from sae_lens import SAE, LanguageModelSAETrainingRunner  # noqa: F401

    import sae_causal_plugin.cli.config  # noqa: F401
    import sae_causal_plugin.cli.data  # noqa: F401
    import sae_causal_plugin.steering.language  # noqa: F401
    from sae_causal_plugin.cli.main import main

    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "run":
            pid = os.fork()
            if pid == 0:
                _child(request, main, torch)
            print(pid, flush=True)
        else:
            _, status = os.waitpid(request["pid"], 0)
            print(os.waitstatus_to_exitcode(status), flush=True)


def _child(request: dict, main, torch) -> None:
    import signal
    import traceback

    code, started = BEFORE_MAIN, False
    try:
        try:
            os.chdir(request["cwd"])
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            torch.set_num_threads(1)
            started = True
            code = main(request["argv"])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - shown to the test, which fails on it
            if started:
                traceback.print_exc()
                code = 1
            else:
                print("fork server: interrupted before main() started", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    _serve()
