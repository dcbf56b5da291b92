"""The built wheel, installed alone in a fresh venv, runs the demo and every bench entry (scripts/check_wheel.py)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_wheel.py"


def test_wheel_in_a_fresh_venv_runs_the_demo_and_every_bench_entry():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "imported from" in out and "/venv/" in out.split("imported from", 1)[1].splitlines()[0]
    assert "sae-causal demo" in out and "report written to" in out
    for name in ("synthetic-hierarchy", "step-time", "multilevel", "diffusion-overhead", "graph-memory",
                 "diffusion-world", "language-world"):
        assert f"bench {name} (tiny)" in out, f"bench {name} was not run from the wheel"
    assert "check_wheel: all checks passed" in out
