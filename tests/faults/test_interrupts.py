"""Ctrl-C (SIGINT) and SIGKILL at random, seeded points of tiny ``train``, ``graph`` and ``steer`` runs.

Each run is a real process (forked from a warm interpreter, see forkserver.py).  After every case
the target folder holds the complete old result or the complete new one; SIGINT gives status
130 and one line; a killed run's staging folder is gone after the next run into the same parent.
"""

import os
import random
import shutil
import signal
import time

import pytest

from sae_causal_plugin.cli.main import main

from tests.helpers import train_config, write_yaml
from .helpers import (
    assert_clean_failure,
    assert_old_or_new,
    is_complete_graph,
    is_complete_sae,
    leftovers,
    snapshot,
)

SEED = int(os.environ.get("SAE_CAUSAL_FAULT_SEED", "15"))  # other seeds: other interrupt points
N_SIGINT, N_SIGKILL = 6, 3


def interrupt_cases(forks, variants, root, target, is_complete, command, logs):
    """Time one run, then SIGINT / SIGKILL runs at random points; check every outcome.

    The runs alternate between two ``variants`` of the command, whose results differ, so a run
    that finishes replaces the old result by a different new one.
    """
    expected = {p.name for p in root.iterdir()}
    durations = []
    for attempt in range(3):  # the fastest of three: a slow first run would push most signals past the end
        start = time.perf_counter()
        pid = forks.run(variants[1], root, logs / f"timing{attempt}")
        status = forks.wait(pid)
        durations.append(time.perf_counter() - start)
        assert status == 0, (logs / f"timing{attempt}.err").read_text()
        assert is_complete(target)
    duration = min(durations)
    rng = random.Random(SEED)
    signals = [signal.SIGINT] * N_SIGINT + [signal.SIGKILL] * N_SIGKILL
    rng.shuffle(signals)
    outcomes = []
    for i, sig in enumerate(signals):
        old = snapshot(target)
        pid = forks.run(variants[i % 2], root, logs / f"case{i}")
        delay = rng.uniform(0.05, 1.1 * duration)  # a few land after the end: new result
        time.sleep(delay)
        os.kill(pid, sig)
        status = forks.wait(pid)
        err = (logs / f"case{i}.err").read_text()
        kept = assert_old_or_new(target, old, is_complete)
        if sig == signal.SIGKILL:
            assert status in (-signal.SIGKILL, 0), err
            assert not leftovers(root, expected, killed=pid)
        else:
            assert status in (130, 0), err
            assert "Traceback" not in err, err
            if status == 130:
                assert err.strip().splitlines()[-1] == f"sae-causal {command}: interrupted", err
                assert err.count("interrupted") == 1, err
            assert not leftovers(root, expected), "an interrupted run left files behind"
        outcomes.append((sig.name, round(delay, 2), status, kept))
    print(command, f"{duration:.2f} s", outcomes)
    interrupted = [o for o in outcomes if o[2] in (130, -signal.SIGKILL)]
    assert len(interrupted) >= len(signals) // 2, f"most signals came after the run ended: {outcomes}"
    pid = forks.run(variants[0], root, logs / "final")  # the next run into the same parent cleans up
    assert forks.wait(pid) == 0
    assert is_complete(target) and not leftovers(root, expected)
    return outcomes


def test_train_interrupted_or_killed_at_random_points(forks, model_dir, dataset_file, trained_sae, tmp_path):
    root, logs = tmp_path / "run", tmp_path / "logs"
    root.mkdir(), logs.mkdir()
    target = root / "sae"
    shutil.copytree(trained_sae, target)
    configs = [write_yaml(root / f"train{seed}.yaml", train_config(model_dir, dataset_file, target,
                                                                   training_tokens=2048, seed=seed))
               for seed in (1, 2)]
    variants = [["train", config, "--overwrite"] for config in configs]
    interrupt_cases(forks, variants, root, target, is_complete_sae, "train", logs)


def test_graph_interrupted_or_killed_at_random_points(forks, trained_sae, dataset_file, graph_target, tmp_path):
    logs = tmp_path.parent / f"{tmp_path.name}_logs"
    logs.mkdir()
    variants = [["graph", "--sae", trained_sae, "--dataset", dataset_file, "--out", "g", "--min-support", "5",
                 "--min-activation", level, "--no-progress"] for level in ("0", "0.01")]  # a relative --out, run from the parent
    interrupt_cases(forks, variants, tmp_path, graph_target, is_complete_graph, "graph", logs)


def test_steer_interrupted_at_random_points(forks, trained_sae, old_graph_dir, tmp_path):
    from sae_causal_plugin.graph import ConceptGraph

    graph_file = old_graph_dir / "concept_graph.json"
    concept = ConceptGraph.load_json(graph_file).concepts[0]
    argv = ["steer", "--sae", trained_sae, "--graph", graph_file, "--concept",
            concept, "--mode", "add", "--value", "4", "--prompt", "5 6 7", "--max-new-tokens", "12"]
    pid = forks.run(argv, tmp_path, tmp_path / "timing")
    start = time.perf_counter()
    assert forks.wait(pid) == 0, (tmp_path / "timing.err").read_text()
    duration = time.perf_counter() - start
    rng = random.Random(SEED)
    for i in range(3):
        pid = forks.run(argv, tmp_path, tmp_path / f"case{i}")
        time.sleep(rng.uniform(0.02, 0.9 * duration))
        os.kill(pid, signal.SIGINT)
        status = forks.wait(pid)
        err = (tmp_path / f"case{i}.err").read_text()
        assert status in (130, 0) and "Traceback" not in err, err
        if status == 130:
            assert err.strip() == "sae-causal steer: interrupted", err


def test_ctrl_c_of_the_real_command_during_training(real_ctrl_c):
    """``python -m sae_causal_plugin train``, SIGINT once SAELens's fit runs: 130, one line, the old SAE
    kept (the run itself is started at the beginning of the suite, see conftest.py)."""
    status, err, target, old = real_ctrl_c.result()
    assert "Training SAE" in err, err  # the signal came inside SAELens's training loop
    assert status == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "sae-causal train: interrupted", err
    assert snapshot(target) == old and sorted(p.name for p in target.parent.iterdir()) == ["sae", "train.yaml"]


def test_sae_lens_interrupted_exception_exits_130(model_dir, dataset_file, trained_sae, tmp_path, capsys,
                                                  monkeypatch):
    """Defect 2: SAELens turns SIGINT into its InterruptedException; main() knew only KeyboardInterrupt."""
    from sae_lens import LanguageModelSAETrainingRunner
    from sae_lens.training._interruption import InterruptedException

    def interrupted(self):
        raise InterruptedException()

    monkeypatch.setattr(LanguageModelSAETrainingRunner, "run", interrupted)
    target = tmp_path / "sae"
    shutil.copytree(trained_sae, target)
    old = snapshot(target)
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, target))
    status = main(["train", str(config), "--overwrite"])
    line = assert_clean_failure(status, capsys.readouterr().err, "train", statuses=(130,))
    assert line == "sae-causal train: interrupted"
    assert snapshot(target) == old and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "sae"]


def test_ctrl_c_in_training_is_not_swallowed_by_except_exception(model_dir, dataset_file, trained_sae, tmp_path,
                                                                 capsys, monkeypatch):
    """SAELens's handler raised InterruptedException, an Exception: torch's lazy import in the first
    optimiser step caught it (logging a traceback) and training went on to replace the old SAE."""
    from sae_lens.training.sae_trainer import SAETrainer

    real_fit = SAETrainer.fit

    def fit(self):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except Exception:  # noqa: BLE001 - as torch.autograd.profiler._maybe_cupti_monitor does
            pass
        return real_fit(self)

    monkeypatch.setattr(SAETrainer, "fit", fit)
    target = tmp_path / "sae"
    shutil.copytree(trained_sae, target)
    old = snapshot(target)
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, target, training_tokens=512))
    status = main(["train", str(config), "--overwrite"])
    assert assert_clean_failure(status, capsys.readouterr().err, "train", statuses=(130,)) == "sae-causal train: interrupted"
    assert snapshot(target) == old


def test_signal_handlers_are_restored_after_a_command(model_dir, dataset_file, tmp_path):
    """SAELens's runner installs SIGINT / SIGTERM handlers and keeps them; the command puts ours back."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, tmp_path / "sae",
                                                          training_tokens=512))
    assert main(["train", str(config)]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("error", [KeyboardInterrupt, "wrapped", "swallowed"])
def test_demo_interrupted_keeps_the_old_report(tmp_path, capsys, monkeypatch, error):
    """Ctrl-C inside a world run -> 130, report kept; also when a library re-raises it as another
    error, or swallows it and raises an unrelated one (torch did, loading a model: the fault suite
    once got 'could not determine the shape of object type' and exit 2)."""
    from sae_causal_plugin.cli import demo

    def world_run(seed, *, out_dir, progress):
        if error == "wrapped":
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as err:
                raise RuntimeError("worker died") from err
        if error == "swallowed":
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                pass
            raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")
        raise error

    monkeypatch.setattr(demo, "world_runner", lambda world: world_run)
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("old")
    status = main(["demo", "--out", str(out)])
    assert assert_clean_failure(status, capsys.readouterr().err, "demo", statuses=(130,)) == "sae-causal demo: interrupted"
    assert snapshot(out) == {"index.html": b"old"}


def test_interrupt_while_files_move_into_place_is_held_until_they_are_in(tmp_path, monkeypatch):
    from sae_causal_plugin import _files as files

    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old a")
    (target / "b.txt").write_text("old b")
    real_move = files._move_file

    def move_then_ctrl_c(src, dest):
        real_move(src, dest)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(files, "_move_file", move_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with files.staged_dir(target) as stage:
            (stage / "a.txt").write_text("new a")
            (stage / "b.txt").write_text("new b")
    assert snapshot(target) == {"a.txt": b"new a", "b.txt": b"new b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ctrl_c_swallowed_inside_a_python_callback_is_delivered_again(capsys):
    """A SIGINT whose KeyboardInterrupt is raised inside ``__del__`` (or an import-lock weakref callback)
    is swallowed by Python with an "Exception ignored" traceback; inside ``noticed()`` it arrives again."""
    import gc
    import sys

    from sae_causal_plugin._interrupts import noticed

    class InterruptedWhileCollected:
        def __del__(self):
            raise KeyboardInterrupt

    hook = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt):
        with noticed() as state:
            InterruptedWhileCollected()  # collected at once: its KeyboardInterrupt is unraisable
            gc.collect()
            for _ in range(1000):  # the signal is sent again a few ms later
                time.sleep(0.001)
    assert state.seen and sys.unraisablehook is hook
    assert "Exception ignored" not in capsys.readouterr().err
