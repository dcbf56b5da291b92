"""``python -m sae_causal_plugin`` is the same command line, with real exit statuses."""

import subprocess
import sys


def test_module_entry_point_exits_2_on_a_user_error_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sae_causal_plugin", "graph", "--sae", str(tmp_path / "missing"),
         "--activations", str(tmp_path / "a.pt"), "--out", str(tmp_path / "g")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "SAE folder" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "g").exists()
