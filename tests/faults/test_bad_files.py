"""Truncated, empty, wrong-type and non-finite input files: every one exits 2 with one line that
names the file and the fix, no traceback, and the output folder keeps its old result."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_causal_plugin.cli.main import main
from sae_causal_plugin.graph import ConceptGraph

from tests.helpers import train_config, write_yaml
from .helpers import assert_clean_failure, snapshot


def run_bad(command, argv, capsys, target=None, parent=None):
    """Run a command that must fail cleanly; ``target`` (if given) must keep its old content."""
    old = snapshot(target) if target is not None else None
    names = sorted(p.name for p in parent.iterdir()) if parent is not None else None
    line = assert_clean_failure(main([command, *map(str, argv)]), capsys.readouterr().err, command)
    if target is not None:
        assert snapshot(target) == old, "a failed run changed the output folder"
    if parent is not None:
        assert sorted(p.name for p in parent.iterdir()) == names, "a failed run left files behind"
    return line


def truncated(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def pt(path, value):
    torch.save(value, path)


def npy(path, value):
    np.save(path, value, allow_pickle=True)


def safetensors(path, **tensors):
    save_file(tensors, str(path))


class Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


GOOD = torch.randn(50, 16)
ACTIVATION_FILES = {
    "empty.pt": (lambda p: p.write_bytes(b""), "the file is empty"),
    "empty.npy": (lambda p: p.write_bytes(b""), "the file is empty"),
    "empty.safetensors": (lambda p: p.write_bytes(b""), "the file is empty"),
    "truncated.pt": (lambda p: (pt(p, GOOD), truncated(p)), "not a readable torch.save file"),
    "truncated.npy": (lambda p: (npy(p, GOOD.numpy()), truncated(p)), "not a readable numpy .npy file"),
    "truncated.safetensors": (lambda p: (safetensors(p, a=GOOD), truncated(p)), "not a readable safetensors"),
    "garbage.safetensors": (lambda p: p.write_bytes(b"\xff" * 64), "not a readable safetensors"),
    "text.pt": (lambda p: p.write_text("0.1 0.2 0.3\n"), "not a readable torch.save file"),
    "ints.pt": (lambda p: pt(p, torch.ones(50, 16, dtype=torch.long)), "must be a float tensor"),
    "dict.pt": (lambda p: pt(p, {"acts": GOOD}), "holds a dict, expected one tensor"),
    "list.pt": (lambda p: pt(p, [GOOD]), "holds a list"),
    "evil.pt": (lambda p: pt(p, Evil()), "not a readable torch.save file"),
    "objects.npy": (lambda p: npy(p, np.array([{"a": 1}], dtype=object)), "not a readable numpy .npy file"),
    "vector.pt": (lambda p: pt(p, torch.randn(16)), "must be a float tensor [n, d_in]"),
    "wide.pt": (lambda p: pt(p, torch.randn(50, 7)), "width 7 but the SAE has d_in=16"),
    "no_rows.pt": (lambda p: pt(p, torch.empty(0, 16)), "holds no activation rows"),
    "nan.pt": (lambda p: pt(p, torch.cat([GOOD, torch.full((1, 16), float("nan"))])), "contain NaN values (first in row 50)"),
    "inf.safetensors": (lambda p: safetensors(p, a=torch.cat([torch.full((1, 16), float("inf")), GOOD])), "contain Inf"),
    "two.safetensors": (lambda p: safetensors(p, a=GOOD, b=GOOD.clone()), "holds 2 tensors"),
    "acts.csv": (lambda p: p.write_text("1,2\n"), "unknown file type '.csv'"),
}


@pytest.mark.parametrize("name", sorted(ACTIVATION_FILES))
def test_bad_activation_file(name, trained_sae, graph_target, tmp_path, capsys):
    inputs = tmp_path.parent / f"{tmp_path.name}_in"
    inputs.mkdir()
    write, message = ACTIVATION_FILES[name]
    path = inputs / name
    write(path)
    line = run_bad("graph", ["--sae", trained_sae, "--activations", path, "--out", graph_target, "--no-progress"],
                   capsys, graph_target, tmp_path)
    assert message in line and str(path) in line
    assert "pickle code ran" not in capsys.readouterr().out


def edit_cfg(folder, **changes):
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.update(changes)
    (folder / "cfg.json").write_text(json.dumps(cfg))


def edit_weights(folder, name, fill):
    weights = load_file(str(folder / "sae_weights.safetensors"))
    weights[name] = weights[name].fill_(fill)
    save_file(weights, str(folder / "sae_weights.safetensors"))


SAE_FOLDERS = {
    "cfg empty": (lambda f: (f / "cfg.json").write_text(""), "cfg.json: the file is empty"),
    "cfg truncated": (lambda f: truncated(f / "cfg.json"), "cfg.json: not valid JSON (line"),
    "cfg a list": (lambda f: (f / "cfg.json").write_text("[1, 2]"), "expected a JSON object {...}, found a list"),
    "cfg without d_sae": (lambda f: edit_cfg(f, d_sae=None), "'d_sae' must be a positive integer"),
    "cfg d_in a string": (lambda f: edit_cfg(f, d_in="16"), "'d_in' must be a positive integer"),
    "weights missing": (lambda f: (f / "sae_weights.safetensors").unlink(), "sae_weights.safetensors: missing"),
    "weights empty": (lambda f: (f / "sae_weights.safetensors").write_bytes(b""), "the file is empty"),
    "weights truncated": (lambda f: truncated(f / "sae_weights.safetensors"), "not a readable safetensors"),
    "cfg of another SAE": (lambda f: edit_cfg(f, d_sae=64), "W_enc has shape [16, 32] but cfg.json says d_in=16, d_sae=64"),
    "NaN weights": (lambda f: edit_weights(f, "W_dec", float("nan")), "weights W_dec contain NaN"),
    "Inf weights": (lambda f: edit_weights(f, "b_enc", float("inf")), "weights b_enc contain Inf"),
}


@pytest.mark.parametrize("case", sorted(SAE_FOLDERS))
def test_bad_sae_folder(case, trained_sae, activations_file, graph_target, tmp_path, capsys):
    """Defect 8: a cfg.json of another SAE gave SAELens's multi-line 'size mismatch for W_enc'."""
    folder = tmp_path.parent / f"{tmp_path.name}_sae"
    shutil.copytree(trained_sae, folder)
    break_it, message = SAE_FOLDERS[case]
    break_it(folder)
    line = run_bad("graph", ["--sae", folder, "--activations", activations_file, "--out", graph_target,
                             "--no-progress"], capsys, graph_target, tmp_path)
    assert message in line and str(folder) in line, line
    assert "size mismatch" not in line and "re-save" in line or "retrain" in line


DATASETS = {
    "empty.txt": (lambda p: p.write_text(""), "holds no documents"),
    "latin1.txt": (lambda p: p.write_bytes("caf\xe9 1 2\n".encode("latin-1")), "not a text file (not UTF-8)"),
    "truncated.jsonl": (lambda p: p.write_text('{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2'), "line 2: not valid JSON"),
    "empty.json": (lambda p: p.write_text(""), "the file is empty"),
    "number.json": (lambda p: p.write_text("3"), "expected a list of documents"),
    "records.json": (lambda p: p.write_text('[{"txt": "1 2"}]'), "record 0 has no 'text' string"),
    "floats.pt": (lambda p: pt(p, torch.randn(4, 16)), "must be an integer tensor [n, context]"),
    "truncated.pt": (lambda p: (pt(p, torch.ones(4, 16, dtype=torch.long)), truncated(p)), "not a readable torch.save"),
    "vocab.pt": (lambda p: pt(p, torch.full((4, 16), 99)), "token ids outside the model's vocabulary [0, 40)"),
    "negative.pt": (lambda p: pt(p, torch.full((4, 16), -1)), "token ids outside the model's vocabulary"),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bad_dataset_file(name, trained_sae, graph_target, tmp_path, capsys):
    inputs = tmp_path.parent / f"{tmp_path.name}_in"
    inputs.mkdir()
    write, message = DATASETS[name]
    path = inputs / name
    write(path)
    line = run_bad("graph", ["--sae", trained_sae, "--dataset", path, "--out", graph_target, "--no-progress"],
                   capsys, graph_target, tmp_path)
    assert message in line and str(path) in line, line


CONFIGS = {
    "empty.yaml": (lambda p: p.write_text(""), "must hold a mapping"),
    "truncated.yaml": (lambda p: p.write_text("model_name: [unclosed\n"), "does not parse"),
    "list.yaml": (lambda p: p.write_text("- 1\n- 2\n"), "must hold a mapping"),
    "truncated.json": (lambda p: p.write_text('{"model_name": "x", '), "does not parse"),
    "nan.yaml": ("lr", ".nan"), "inf.yaml": ("lr", ".inf"), "minus_inf.yaml": ("adam_beta1", "-.inf"),
    "nan_string.yaml": ("lr", "nan"), "sae_nan.yaml": ("sae.compression_coefficient", ".nan"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_train_config(name, model_dir, dataset_file, tmp_path, capsys):
    path = tmp_path / name
    spec = CONFIGS[name]
    if callable(spec[0]):
        spec[0](path)
        message = spec[1]
    else:
        key, value = spec
        cfg = train_config(model_dir, dataset_file, tmp_path / "out")
        write_yaml(path, cfg)
        text = path.read_text()
        if key.startswith("sae."):
            text = text.replace("sae:\n", f"sae:\n  {key[4:]}: {value}\n")
        else:
            text = text.replace("lr: 3e-3", "").replace("lr: '3e-3'", "") + f"{key}: {value}\n"
        path.write_text(text)
        message = f"config key {key!r}: the value must be a finite number"
    line = run_bad("train", [path], capsys, parent=tmp_path)
    assert message in line and (str(path) in line or "config key" in line), line


DROP = object()
GRAPHS = {
    "empty": ("", "the file is empty"),
    "truncated": ('{"format": "sae_causal_plugin.ConceptGraph", "version": 1, "nodes": [{"id": 0', "not valid JSON (line 1"),
    "a list": ("[]", "expected a JSON object {...}, found a list"),
    "a string": ('"graph"', "found a string"),
    "no format": ({"format": DROP}, "no 'format' key"),
    "no version": ({"version": DROP}, "version None is not supported"),
    "another format": ({"format": "networkx", "version": 1, "nodes": [], "edges": []}, "format 'networkx'"),
    "a future version": ({"version": 2}, "version 2 is not supported"),
    "a version string": ({"version": "1"}, "version '1' is not supported"),
    "unknown key": ({"colour": "red"}, "unknown key 'colour'"),
    "nodes not a list": ({"nodes": {"0": {}}}, "'nodes' must be a list"),
    "unknown node key": ({"nodes": [{"id": 0, "atrs": {}}]}, "nodes[0] has unknown key 'atrs'"),
    "node without id": ({"nodes": [{"attrs": {}}]}, "nodes[0] lacks the key 'id'"),
    "float id": ({"nodes": [{"id": 1.5}]}, "concept ids must be int or str"),
    "node twice": ({"nodes": [{"id": 0}, {"id": 0}]}, "declared twice"),
    "attrs a list": ({"nodes": [{"id": 0, "attrs": [1]}]}, "'attrs' must be an object"),
    "undeclared endpoint": ({"nodes": [{"id": 0}], "edges": [{"child": 5, "parent": 0}]}, "[5] not declared in 'nodes'"),
    "edge without parent": ({"nodes": [{"id": 0}], "edges": [{"child": 0}]}, "edges[0] lacks the key 'parent'"),
    "cycle": ({"nodes": [{"id": 0}, {"id": 1}], "edges": [{"child": 0, "parent": 1}, {"child": 1, "parent": 0}]},
              "would create a cycle"),
    "self loop": ({"nodes": [{"id": 0}], "edges": [{"child": 0, "parent": 0}]}, "self-loop"),
    "meta a list": ({"meta": [1]}, "'meta' must be an object"),
}


def graph_text(spec):
    """A valid graph file with ``spec``'s keys changed (``DROP``: removed); a string is the file as is."""
    if isinstance(spec, str):
        return spec
    data = {"format": "sae_causal_plugin.ConceptGraph", "version": 1, "meta": {},
            "nodes": [{"id": 0, "attrs": {}}], "edges": []}
    data.update(spec)
    return json.dumps({k: v for k, v in data.items() if v is not DROP})


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_bad_graph_json_for_steer(case, trained_sae, tmp_path, capsys):
    """Defect 4: format / version / unknown keys / undeclared endpoints were accepted; a list crashed."""
    spec, message = GRAPHS[case]
    path = tmp_path / "concept_graph.json"
    path.write_text(graph_text(spec))
    line = run_bad("steer", ["--sae", trained_sae, "--graph", path, "--concept", "0", "--mode", "add",
                             "--value", "1", "--prompt", "5 6"], capsys)
    assert message in line and str(path) in line and "ConceptGraph.save_json" in line, line
    assert "Expecting" not in line  # json's own words


@pytest.mark.parametrize("case", sorted(c for c in GRAPHS if isinstance(GRAPHS[c][0], dict)))
def test_concept_graph_from_dict_is_strict(case):
    spec, message = GRAPHS[case]
    with pytest.raises(ValueError, match="concept graph: ") as err:
        ConceptGraph.from_dict(json.loads(graph_text(spec)))
    assert message in str(err.value)
    assert ConceptGraph.from_dict(json.loads(graph_text({}))).concepts == [0]


def test_top_level_list_is_a_value_error():
    with pytest.raises(ValueError, match="found a list"):
        ConceptGraph.from_dict([])


def write_selection_code(folder, *, header=None, **tensors):
    folder.mkdir(exist_ok=True)
    head = {"format": "sae-causal-selection-code", "version": 1, "d_in": 16, "d_sae": 32, "n_links": 2, "meta": {}}
    head.update(header or {})
    (folder / "selection_code.json").write_text(json.dumps(head))
    data = {"children": torch.tensor([1, 2]), "parents": torch.tensor([0, 0]), "weights": torch.tensor([0.5, 0.2])}
    data.update(tensors)
    save_file({k: v for k, v in data.items() if v is not None}, str(folder / "selection_code.safetensors"))


SELECTION_CODES = {
    "wrong format": (dict(header={"format": "x"}), "not a sae-causal-selection-code file"),
    "future version": (dict(header={"version": 3}), "version 3 is not supported"),
    "unknown key": (dict(header={"extra": 1}), "unknown key 'extra'"),
    "other SAE": (dict(header={"d_sae": 64}), "fitted to an SAE with d_sae=64"),
    "float ids": (dict(children=torch.tensor([1.0, 2.0])), "'children' must be a 1-D int tensor"),
    "missing tensor": (dict(weights=None), "expected tensors"),
    "id out of range": (dict(parents=torch.tensor([0, 40])), "outside [0, 32)"),
    "NaN weight": (dict(weights=torch.tensor([0.5, float("nan")])), "finite and non-negative"),
    "length": (dict(header={"n_links": 3}), "n_links=3"),
}


@pytest.mark.parametrize("case", sorted(SELECTION_CODES))
def test_selection_code_file_schema(case, tmp_path):
    from sae_causal_plugin._validation import check_selection_code_files

    write_selection_code(tmp_path / "ok")
    header, tensors = check_selection_code_files(tmp_path / "ok", d_in=16, d_sae=32)
    assert header["n_links"] == 2 and tensors["weights"].tolist() == pytest.approx([0.5, 0.2])
    kwargs, message = SELECTION_CODES[case]
    write_selection_code(tmp_path / "bad", **kwargs)
    with pytest.raises(ValueError, match="selection_code") as err:
        check_selection_code_files(tmp_path / "bad", d_in=16, d_sae=32)
    assert message in str(err.value)


def test_truncated_selection_code_tensors(tmp_path):
    from sae_causal_plugin._validation import check_selection_code_files

    write_selection_code(tmp_path)
    truncated(tmp_path / "selection_code.safetensors")
    with pytest.raises(ValueError, match="selection_code.safetensors: not a readable safetensors file"):
        check_selection_code_files(tmp_path)


def test_hook_other_than_the_sae_s_is_refused_unless_forced(trained_sae, dataset_file, old_graph_dir, graph_target,
                                                             tmp_path, capsys):
    """Defect 5: a --hook of the same width as the SAE's recorded one was accepted silently, so graph
    replaced a good result with a degenerate one and steer edited the wrong hook."""
    other = "blocks.0.hook_resid_pre"  # width 16, like the recorded blocks.0.hook_resid_post
    line = run_bad("graph", ["--sae", trained_sae, "--dataset", dataset_file, "--hook", other, "--out", graph_target,
                             "--no-progress"], capsys, graph_target, tmp_path)
    assert f"--hook {other!r} is not the hook the SAE in {trained_sae} was trained on" in line
    assert "--force-hook" in line
    graph_file = old_graph_dir / "concept_graph.json"
    steer = ["--sae", trained_sae, "--graph", graph_file, "--concept",
             str(ConceptGraph.load_json(graph_file).concepts[0]), "--mode", "add", "--value", "1", "--prompt", "5 6",
             "--max-new-tokens", "2", "--hook", other]
    assert "--force-hook" in run_bad("steer", steer, capsys)
    assert main(["steer", *map(str, steer), "--force-hook"]) == 0
    assert f"at {other}" in capsys.readouterr().out

