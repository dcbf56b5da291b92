"""Build the wheel and use it from a fresh virtual environment, away from the repository.

    python scripts/check_wheel.py [--keep]

Steps (each timed): copy the package sources to a temporary folder and build the wheel there (no
build isolation, no index: offline); create a fresh venv; point it at the dependencies already
installed beside the running interpreter with a ``.pth`` file (a plain directory line, so the
editable install there is not picked up); install the wheel into the venv with ``--no-deps``; then,
from an empty working directory with no PYTHONPATH, check that ``sae_causal_plugin`` is imported
from the venv, that the installed versions meet the wheel's declared requirements, run
``sae-causal demo``, and run every ``python -m sae_causal_plugin.bench NAME`` entry at a tiny size
(``TINY_RUNS``; a bench without one fails the check) and check that it ends with one JSON line.
Exits non-zero at the first failure. Nothing is downloaded (HF_HUB_OFFLINE=1 in the children).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "sae_causal_plugin")

CHECK_IMPORT = """
import sys
from importlib.resources import files
import sae_causal_plugin
venv = sys.argv[1]
where = sae_causal_plugin.__file__
assert where.startswith(venv), f"sae_causal_plugin imported from {where}, not from the venv {venv}"
assets = files("sae_causal_plugin") / "worlds" / "assets"
names = sorted(p.name for p in assets.iterdir())
assert any(n.endswith(".safetensors") for n in names), f"no shipped weights in the wheel: {names}"
print("imported from", where, "| assets:", ", ".join(names))
"""

CHECK_REQUIREMENTS = """
from importlib.metadata import distribution, version
from packaging.requirements import Requirement
ours = distribution("sae-causal-plugin")
bad = []
for line in ours.requires or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # an optional extra
    have = version(req.name)
    if not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req} (installed {have})")
assert not bad, "installed versions outside the declared bounds: " + "; ".join(bad)
print(len(ours.requires or []), "declared requirements; the installed core ones meet their bounds")
"""

# A few-second run of each bench entry: real training and evaluation, at toy sizes.
TINY_RUNS = {
    "synthetic-hierarchy": ["--num-features", "24", "--hidden-dim", "16", "--roots", "3", "--branching", "2",
                            "--depth", "2", "--samples", "8192", "--eval-samples", "2000", "--graph-samples",
                            "2000", "--train-seeds", "0", "--archs", "batchtopk", "hierarchical_batchtopk"],
    "step-time": ["--d-in", "16", "--width", "32", "--k", "2", "--batch", "64", "--steps", "3", "--warmup", "1"],
    "multilevel": ["--samples", "8192", "--batch-size", "1024", "--eval-samples", "2000",
                   "--concepts-per-level", "3", "6", "--parents", "2"],
    "diffusion-overhead": ["--repeats", "1", "--threads", "1"],
    "graph-memory": ["--n", "4000", "--d-sae", "512", "--k", "8", "--d-in", "64", "--batch-size", "1024"],
    "diffusion-world": ["--train-images", "256", "--eval-images", "256", "--sae-steps", "60", "--sae-batch", "64",
                        "--n-samples", "2", "--num-inference-steps", "4"],
    "part-world": ["--train-images", "32", "--eval-images", "32", "--sae-steps", "30", "--probe-steps", "30",
                   "--sae-batch", "256",
                   "--n-samples", "2", "--num-inference-steps", "4"],
    "language-world": ["--training-tokens", "4096", "--n-eval-documents", "16", "--no-layers", "--no-progress"],
    "cofiring-speed": ["--d-sae", "512", "--k", "8", "--d-in", "64", "--batch-size", "256", "--batches", "4",
                       "--repeats", "1"],
}

LIST_BENCHES = "from sae_causal_plugin.bench.__main__ import BENCHMARKS; print(' '.join(BENCHMARKS))"


class Steps:
    """Runs the commands, printing each one's time; the first failure ends the check."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env, self.start = cwd, env, time.perf_counter()

    def run(self, title: str, cmd: list[str], cwd: Path | None = None) -> str:
        t = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd or self.cwd, env=self.env, capture_output=True, text=True)
        print(f"[{time.perf_counter() - t:6.1f} s] {title}", flush=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"check_wheel: '{title}' failed (exit {done.returncode}): {' '.join(cmd)}")
        return done.stdout

    def total(self) -> float:
        return time.perf_counter() - self.start


def copy_sources(dest: Path) -> None:
    """The files the build reads, without caches or old build output from the working tree."""
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def child_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    return env


def check(root: Path) -> float:
    work, run_dir, venv = root / "src", root / "run", root / "venv"
    copy_sources(work)
    run_dir.mkdir()
    steps = Steps(run_dir, child_env(venv))
    here = sys.executable
    steps.run("build the wheel", [here, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                                  "-q", str(work), "-w", str(root / "dist")], cwd=root)
    wheel = next((root / "dist").glob("sae_causal_plugin-*.whl"))
    print("  wheel:", wheel.name, f"{wheel.stat().st_size / 1e6:.1f} MB")
    steps.run("create a fresh venv", [here, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_check_wheel_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    steps.run("install the wheel (--no-deps)", [here, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                               "--no-index", "-q", str(wheel)], cwd=root)
    print(" ", steps.run("import from the venv", [str(python), "-c", CHECK_IMPORT, str(venv)]).strip())
    print(" ", steps.run("declared requirements", [str(python), "-c", CHECK_REQUIREMENTS]).strip())
    out = steps.run("sae-causal demo", [str(venv / "bin" / "sae-causal"), "demo", "--out", "report", "--no-progress"])
    assert (run_dir / "report" / "index.html").is_file(), "the demo wrote no report/index.html"
    print("  " + "\n  ".join(out.strip().splitlines()[-3:]))
    benches = steps.run("list the bench entries", [str(python), "-c", LIST_BENCHES]).split()
    missing = sorted(set(benches) - set(TINY_RUNS))
    assert not missing, f"bench entries without a tiny run in TINY_RUNS: {missing}; add one"
    for name in benches:
        cmd = [str(python), "-m", "sae_causal_plugin.bench", name, *TINY_RUNS[name], "--json"]
        if name == "graph-memory":  # its --json takes the file to write
            cmd.append(str(run_dir / "graph_memory.json"))
        out = steps.run(f"bench {name} (tiny)", cmd)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        if name == "graph-memory":
            last = (run_dir / "graph_memory.json").read_text()
        assert isinstance(json.loads(last), dict), f"bench {name} gave no JSON object: {last[-200:]!r}"
    print(f"check_wheel: all checks passed in {steps.total():.0f} s ({len(benches)} bench entries)")
    return steps.total()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and say where it is")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="check_wheel_"))
    try:
        check(root)
    finally:
        if args.keep:
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
