"""The real main job: ``python -m sae_causal_plugin demo`` on the shipped language world, end to end."""

import json
import shlex
import subprocess
import sys

from sae_causal_plugin.report import REPORT_FILES

from tests.helpers import assert_report_is_readable, report_tables

REQUIRED_METRICS = ("edge_f1", "steer_mass_ratio", "ppl_increase", "ablation_mass_fraction", "seconds")


def test_demo_on_the_language_world_writes_a_complete_report(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "sae_causal_plugin", "demo", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report written to {(out / 'index.html').resolve()}" in proc.stdout
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(metrics[k], (int, float)) for k in REQUIRED_METRICS)
    page = (out / "index.html").read_text()
    assert "<table class='metrics'>" in page and 'src="concept_graph.png"' in page
    assert_report_is_readable(page)
    assert report_tables(page)["settings"]["seed"][-1] == "0"
    assert f"Reproduce this report: <code>sae-causal demo --world language --seed 0 --out {out}</code>" in page
    # the latent browser: one row per latent of the SAE (48), matched ones named, contexts with the
    # firing token marked, the concepts x latents heat map drawn and linked
    browser = page.split("<h2>Latent browser</h2>", 1)[1].split("<h2>", 1)[0]
    rows = browser.count("<tr><td><code>")
    assert rows == 48, rows
    assert browser.count("<mark>") >= 4 * int(metrics["n_matched_latents"])
    assert '<a href="latent_firing.png"><img src="latent_firing.png"' in browser
    assert (out / "latent_firing.png").read_bytes()[:4] == b"\x89PNG"
    assert "none matched" in browser and "<td>bird</td>" in browser
    # the suggested steer command visibly steers: the steered continuation names an item of the concept
    hint = metrics["steer_hint"]
    assert hint["visible"] is True, hint
    line = next(l for l in proc.stdout.splitlines() if l.startswith("steer it yourself: "))
    args = shlex.split(line.removeprefix("steer it yourself: "))
    assert args[:2] == ["sae-causal", "steer"] and f"--value" in args
    steered = subprocess.run([sys.executable, "-m", "sae_causal_plugin", *args[1:]],
                             capture_output=True, text=True, timeout=300)
    assert steered.returncode == 0, steered.stderr[-2000:]
    from sae_causal_plugin.worlds.language_world import DEFAULT_TAXONOMY

    items = set(DEFAULT_TAXONOMY.items_of(hint["concept"]))
    before = next(l for l in steered.stdout.splitlines() if l.startswith("before:")).split()
    after = next(l for l in steered.stdout.splitlines() if l.startswith("after:")).split()
    assert not items & set(before) and items & set(after), (before, after)
