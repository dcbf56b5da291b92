"""``python -m sae_causal_plugin.bench NAME [options]``: run one of the project's benchmarks."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "synthetic-hierarchy": "sae_causal_plugin.bench.synthetic_hierarchy",
    "step-time": "sae_causal_plugin.bench.step_time",
    "multilevel": "sae_causal_plugin.bench.multilevel",
    "diffusion-overhead": "sae_causal_plugin.bench.diffusion_overhead",
    "graph-memory": "sae_causal_plugin.bench.graph_memory",
    "diffusion-world": "sae_causal_plugin.bench.diffusion_world",
    "part-world": "sae_causal_plugin.bench.part_world",
    "language-world": "sae_causal_plugin.bench.language_world",
    "cofiring-speed": "sae_causal_plugin.bench.cofiring_speed",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown benchmark {argv[0]!r}; choose one of: {known}", file=sys.stderr)
            return 2
        print(f"usage: python -m sae_causal_plugin.bench NAME [options]\nbenchmarks: {known}")
        return 0
    importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
