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


def test_an_internal_error_is_one_short_message_with_status_1(monkeypatch, capsys):
    import pytest

    from sae_causal_plugin.cli import graph
    from sae_causal_plugin.cli.main import main

    def broken(args):
        raise RuntimeError("the counts went negative")

    monkeypatch.setattr(graph, "run", broken)
    argv = ["graph", "--sae", "s", "--activations", "a.pt", "--out", "g"]
    monkeypatch.delenv("SAE_CAUSAL_DEBUG", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("sae-causal graph: internal error: RuntimeError: the counts went negative\n")
    assert "SAE_CAUSAL_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("SAE_CAUSAL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="went negative"):
        main(argv)
