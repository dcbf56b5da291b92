"""The staged writer: ``--out .``, relative and absolute paths, renames that cannot happen in place,
stale staging folders of killed runs, umask permissions, and every ``save_*`` all-or-nothing."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from sae_causal_plugin.cli.main import main
from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin import _files as files

from tests.helpers import train_config, write_yaml
from .helpers import assert_clean_failure, is_complete_graph, is_complete_sae, snapshot


@pytest.fixture
def umask_027():
    """Run with umask 027, so umask rights (0o640 / 0o750) differ from mkstemp's 0o600 and the default."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_train_into_the_current_folder(model_dir, dataset_file, tmp_path, monkeypatch, capsys):
    """Defect 1: ``--out .`` trained to the end, then lost the SAE in os.rename('.', ...)."""
    work = tmp_path / "work"
    work.mkdir()
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, "unused", training_tokens=512))
    monkeypatch.chdir(work)
    assert main(["train", str(config), "--out", "."]) == 0, capsys.readouterr().err
    assert is_complete_sae(work)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "work"]
    status = main(["train", str(config), "--out", ".", "--overwrite"])  # replaces the SAE in place
    assert status == 0 and is_complete_sae(work) and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "work"]


def test_overwrite_refuses_to_delete_the_runs_own_config(model_dir, dataset_file, tmp_path, monkeypatch, capsys):
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, "unused", training_tokens=512))
    monkeypatch.chdir(tmp_path)
    line = assert_clean_failure(main(["train", "c.yaml", "--out", ".", "--overwrite"]), capsys.readouterr().err, "train")
    assert "config file c.yaml lies inside the output folder" in line and config.is_file()


def test_graph_into_relative_absolute_and_current_folders(trained_sae, activations_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["graph", "--sae", str(trained_sae), "--activations", str(activations_file), "--no-progress"]
    (tmp_path / "here").mkdir()
    for out in ("rel/g", str(tmp_path / "abs" / "g"), "rel/../rel2/g"):
        assert main([*base, "--out", out]) == 0
        assert is_complete_graph(tmp_path / out)
    monkeypatch.chdir(tmp_path / "here")
    assert main([*base, "--out", "."]) == 0 and is_complete_graph(tmp_path / "here")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abs", "here", "rel", "rel2"]
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["g"]


@pytest.mark.parametrize("replace", [False, True])
def test_rename_that_cannot_happen_in_place(tmp_path, monkeypatch, replace):
    """A folder rename that fails (another file system, a mount point) falls back to moving files."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "same.txt").write_text("old")
    real_rename, real_replace = os.rename, os.replace
    staging = f"/.{target.name}.staging-"

    def no_folder_rename(src, dst):
        if os.path.isdir(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    def no_cross_replace(src, dst):  # the staging folder is "another file system"
        if staging in str(src) and staging not in str(dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "rename", no_folder_rename)
    monkeypatch.setattr(os, "replace", no_cross_replace)
    with files.staged_dir(target, replace=replace) as stage:
        (stage / "same.txt").write_text("new")
        (stage / "sub").mkdir()
        (stage / "sub" / "new.bin").write_bytes(b"\x00new")
    expected = {"same.txt": b"new", "sub/new.bin": b"\x00new"}
    assert snapshot(target) == (expected if replace else {**expected, "old.txt": b"old"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_staging_of_killed_runs_is_removed_by_the_next_run(trained_sae, activations_file, graph_target,
                                                                 tmp_path, capsys):
    """Defect 7: a SIGKILL left hidden ``.g.staging-*`` folders (one held two of the three files) forever."""
    dead, alive = dead_pid(), os.getppid()
    for name in (f".g.staging-{dead}-0badc0de", f"..g.staging-{dead}-0badc0de.staging-{dead}-0badc0df",
                 f".g.staging-{alive}-00000001", f".other.staging-{dead}-00000002"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "concept_graph.json").write_text("{}")
    (tmp_path / f".g.old-{dead}-00000003").mkdir()
    assert main(["graph", "--sae", str(trained_sae), "--activations", str(activations_file), "--out",
                 str(graph_target), "--no-progress"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["g", f".g.staging-{alive}-00000001", f".other.staging-{dead}-00000002"])


def test_target_killed_mid_swap_is_put_back(tmp_path):
    """Killed between the two renames of a swap: the old result waits in ``.NAME.old-PID-*``."""
    held = tmp_path / f".sae.old-{dead_pid()}-0000abcd"
    (held / "sae").mkdir(parents=True)
    (held / "sae" / "cfg.json").write_text("{}")
    files.check_target_dir(tmp_path / "sae")
    assert snapshot(tmp_path / "sae") == {"cfg.json": b"{}"} and sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def modes(folder):
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}


def test_trained_sae_and_graph_files_have_umask_rights(umask_027, model_dir, dataset_file, trained_sae,
                                                       activations_file, tmp_path):
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, tmp_path / "sae",
                                                          training_tokens=512))
    assert main(["train", str(config)]) == 0
    assert main(["graph", "--sae", str(trained_sae), "--activations", str(activations_file), "--out",
                 str(tmp_path / "g"), "--no-progress"]) == 0
    for folder in (tmp_path / "sae", tmp_path / "g"):
        got = modes(folder)
        assert got == {name: 0o750 if (folder / name).is_dir() else 0o640 for name in got}, got


def test_save_inference_model_is_all_or_nothing(trained_sae, tmp_path, monkeypatch):
    from sae_causal_plugin.saes import HierarchicalTopKTrainingSAE, HierarchicalTopKTrainingSAEConfig

    sae = HierarchicalTopKTrainingSAE(HierarchicalTopKTrainingSAEConfig(d_in=16, d_sae=32, k=3))
    target = tmp_path / "sae"
    sae.save_inference_model(target)
    assert is_complete_sae(target)
    old = snapshot(target)

    from sae_lens.saes.topk_sae import TopKTrainingSAE

    def broken(self, path):
        (path / "cfg.json").write_text("{")  # half the folder written, then the disk fills
        raise RuntimeError("disk full")

    monkeypatch.setattr(TopKTrainingSAE, "save_inference_model", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        sae.save_inference_model(target)
    assert snapshot(target) == old and sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_concept_graph_files_are_all_or_nothing(tmp_path, monkeypatch):
    graph = ConceptGraph()
    graph.add_edge(1, 0, p_parent_given_child=1.0)
    graph.save_json(tmp_path / "g.json")
    graph.to_graphml(tmp_path / "g.graphml")
    graph.to_dot(tmp_path / "g.dot")
    graph.draw(tmp_path / "g.png")
    old = snapshot(tmp_path)
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        graph.save_json(tmp_path / "g.json")
    assert snapshot(tmp_path) == old  # no half-written file, no staging file


def test_staged_file_removes_a_half_written_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with files.staged_file(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"ne")
            raise KeyboardInterrupt
    assert snapshot(tmp_path) == {"a.bin": b"old"}


def test_other_savers_are_staged(model_dir, tmp_path):
    """save_hooked_transformer, save_multilevel... write through the staged writer (no partial folder)."""
    from sae_causal_plugin.cli.models import load_model, save_hooked_transformer

    model = load_model(str(model_dir)).model
    save_hooked_transformer(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["hooked_transformer.json", "model.safetensors"]
    with pytest.raises(AttributeError):
        save_hooked_transformer(model, tmp_path / "m2", tokenizer=object())  # fails after config + weights
    assert not (tmp_path / "m2").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
