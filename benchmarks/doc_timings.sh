#!/usr/bin/env bash
# Re-measures every wall time the docs state, one command after another (run on an otherwise idle
# machine). Prints "label<TAB>seconds<TAB>exit status" per command; logs go to $LOG_DIR.
# Usage: bash benchmarks/doc_timings.sh [LOG_DIR]     (run from the repository root, after `make venv`)
set -u
LOG_DIR=${1:-/tmp/doc_timings}
mkdir -p "$LOG_DIR"
PY=.venv/bin/python
WORK=$(mktemp -d)
python_block() {  # the README's quick start, exactly as pasted
  $PY - <<'PY'
import re, pathlib
text = pathlib.Path("README.md").read_text()
section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
print(re.search(r"```python\n(.*?)```", section, flags=re.S).group(1))
PY
}
python_block > "$WORK/quickstart.py"
timed() {
  local label=$1; shift
  local start end rc
  start=$(date +%s.%N)
  "$@" > "$LOG_DIR/$label.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  printf '%s\t%.1f\t%s\n' "$label" "$(echo "$end - $start" | bc)" "$rc"
}
timed help .venv/bin/sae-causal --help
timed demo .venv/bin/sae-causal demo --out "$WORK/rep"
timed demo_diffusion .venv/bin/sae-causal demo --world diffusion --out "$WORK/repd"
timed quickstart bash -c "cd '$WORK' && PYTHONPATH='$PWD' '$PWD/$PY' quickstart.py"
timed multilevel $PY -m sae_causal_plugin.bench multilevel
timed synthetic_hierarchy $PY -m sae_causal_plugin.bench synthetic-hierarchy
timed train_language_world $PY scripts/train_language_world.py --out "$WORK/lw" --no-progress
timed train_diffusion_world $PY scripts/train_diffusion_world.py --out "$WORK/dw"
rm -rf "$WORK"
