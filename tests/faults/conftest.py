"""Fixtures of the fault suite: tests/cli's tiny model, dataset and SAE, old results to protect,
and a fork server that runs commands as real processes to interrupt or kill."""

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from sae_causal_plugin.cli.main import main

from tests.helpers import train_config, write_yaml

from .forkserver import ForkServer
from .helpers import snapshot


@pytest.fixture(scope="session")
def forks():
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def activations_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("acts") / "acts.pt"
    torch.save(torch.randn(400, 16), path)
    return path


@pytest.fixture(scope="session")
def old_graph_dir(trained_sae, activations_file, tmp_path_factory):
    """A complete result of ``sae-causal graph`` (from --activations), to be protected by later runs."""
    out = tmp_path_factory.mktemp("old_graph") / "g"
    assert main(["graph", "--sae", str(trained_sae), "--activations", str(activations_file), "--out", str(out),
                 "--min-support", "50", "--no-progress"]) == 0
    return out


@pytest.fixture
def graph_target(old_graph_dir, tmp_path):
    """``tmp_path/g`` holding the old graph result; nothing else in ``tmp_path``."""
    target = tmp_path / "g"
    shutil.copytree(old_graph_dir, target)
    return target


class RealCtrlC:
    """``python -m sae_causal_plugin train`` in the background, sent SIGINT once SAELens's fit has begun.

    Started when the suite starts (an interpreter start costs ~10 s: it overlaps the other cases).
    """

    def __init__(self, config, target, delay: float) -> None:
        self.target, self.old, self.delay, self.err = target, snapshot(target), delay, b""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([sys.executable, "-m", "sae_causal_plugin", "train", str(config), "--overwrite"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=target.parent)
        self.thread = threading.Thread(target=self._interrupt, daemon=True)
        self.thread.start()

    def _interrupt(self) -> None:
        fd, deadline = self.proc.stderr.fileno(), time.monotonic() + 120
        while b"Training SAE" not in self.err and time.monotonic() < deadline:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            self.err += chunk
        time.sleep(self.delay)
        self.proc.send_signal(signal.SIGINT)
        while chunk := os.read(fd, 4096):
            self.err += chunk

    def result(self):
        self.thread.join(timeout=150)
        try:
            status = self.proc.wait(timeout=30)
        finally:
            self.proc.kill()
        return status, self.err.decode(errors="replace"), self.target, self.old


@pytest.fixture(scope="session", autouse=True)
def real_ctrl_c(model_dir, dataset_file, trained_sae, tmp_path_factory):
    root = tmp_path_factory.mktemp("real_ctrl_c")
    target = root / "sae"
    shutil.copytree(trained_sae, target)
    config = write_yaml(root / "train.yaml", train_config(model_dir, dataset_file, target,
                                                          training_tokens=200_000, seed=1))
    run = RealCtrlC(config, target, delay=random.Random(15).uniform(0.2, 0.6))
    yield run
    run.proc.kill()
