"""sae-causal train: end to end at tiny size, and every bad config stopped with a message naming the key."""

import json

import pytest

from sae_causal_plugin.cli.main import main

from tests.helpers import train_config, write_yaml


def test_train_saves_a_sae_lens_sae(trained_sae):
    from sae_lens import SAE

    sae = SAE.load_from_disk(trained_sae)
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (16, 32)  # d_in read off the hook
    cfg = json.loads((trained_sae / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    assert cfg["metadata"]["training_architecture"] == "hierarchical_topk"
    assert not [p for p in trained_sae.parent.iterdir() if ".staging-" in p.name]


def run_bad(tmp_path, capsys, model_dir, dataset_file, config, suffix=".yaml"):
    out = tmp_path / "out"
    path = tmp_path / f"bad{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(config))
    else:
        write_yaml(path, config)
    status = main(["train", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err and err.startswith("sae-causal train: error:")
    assert not out.exists(), "a failed run left an output folder"
    return err


@pytest.mark.parametrize("change, named", [
    ({"lerning_rate": 0.1}, "'lerning_rate'"),
    ({"sae": {"d_sae": 32, "kk": 3}}, "'sae.kk'"),
    ({"logger": {"log_to_wandbb": False}}, "'logger.log_to_wandbb'"),
    ({"training_tokens": "many"}, "'training_tokens' must be an integer"),
    ({"context_size": 16.5}, "'context_size' must be an integer"),
    ({"prepend_bos": "yes"}, "'prepend_bos' must be true or false"),
    ({"sae": {"d_sae": 32, "k": "three"}}, "'sae.k' must be an integer, got 'three'"),
    ({"sae": {"d_sae": 32, "level_widths": [4, "x"]}}, "'sae.level_widths'"),
    ({"architecture": "hierarchical_magic"}, "'architecture' must name a registered"),
    ({"sae": {"k": 3}}, "'sae.d_sae'"),
    ({"sae": {"d_sae": 32, "d_in": 99}}, "'sae.d_in' is 99"),
    ({"hook_name": "blocks.0.hook_resid_pots"}, "closest: blocks.0.hook_resid_post"),
    ({"dataset_path": "missing.txt"}, "missing.txt does not exist"),
    ({"n_batches_in_buffer": 4}, "set n_batches_in_buffer to 8 or more"),
    ({"sae": {"d_sae": 32, "compression_coefficient": -1.0}}, "compression_coefficient must be"),
])
def test_bad_config_is_one_clear_message(tmp_path, capsys, model_dir, dataset_file, change, named):
    config = train_config(model_dir, dataset_file, tmp_path / "out", **change)
    err = run_bad(tmp_path, capsys, model_dir, dataset_file, config)
    assert named in err


def test_json_config_and_flat_sae_fields_like_sae_lens_cli(tmp_path, capsys, model_dir, dataset_file):
    config = train_config(model_dir, dataset_file, tmp_path / "out", d_sae=32, k=3, bogus=1)
    del config["sae"]
    err = run_bad(tmp_path, capsys, model_dir, dataset_file, config, suffix=".json")
    assert "unknown config key 'bogus'" in err  # d_sae / k at the top level were accepted


def test_unparsable_file_and_existing_output(tmp_path, capsys, model_dir, dataset_file, trained_sae):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model_name: [unclosed\n")
    assert main(["train", str(bad)]) == 2
    assert "does not parse" in capsys.readouterr().err
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, trained_sae))
    before = {p.name: p.stat().st_mtime_ns for p in trained_sae.iterdir()}
    assert main(["train", str(config)]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in trained_sae.iterdir()} == before


def test_dry_run_trains_nothing(tmp_path, capsys, model_dir, dataset_file):
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, tmp_path / "out"))
    assert main(["train", str(config), "--dry-run"]) == 0
    assert "training hierarchical_topk (d_in=16, d_sae=32)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_the_help_example_config_is_valid(tmp_path):
    from sae_causal_plugin.cli.config import build_runner_config, load_train_config
    from sae_causal_plugin.cli.train import EXAMPLE, check_buffer

    body = EXAMPLE.split("\n\n", 1)[1]
    path = tmp_path / "example.yaml"
    path.write_text("\n".join(line[2:] for line in body.splitlines()))
    spec = load_train_config(path)
    assert spec.architecture == "hierarchical_batchtopk" and spec.sae == {"d_sae": 128, "k": 4, "compression_coefficient": 10.0}
    spec.sae["d_in"] = 64
    cfg = build_runner_config(spec)
    check_buffer(cfg)
    assert cfg.sae.k == 4 and cfg.hook_name == "blocks.1.hook_resid_post" and not cfg.logger.log_to_wandb


def test_overwrite_replaces_the_whole_folder(tmp_path, model_dir, dataset_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.json").write_text("{}")
    config = write_yaml(tmp_path / "c.yaml", train_config(model_dir, dataset_file, out, training_tokens=1024))
    assert main(["train", str(config), "--overwrite"]) == 0
    assert (out / "cfg.json").is_file() and not (out / "stale.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "out"]


def test_train_ends_with_a_summary_of_the_saved_sae(tmp_path, capsys, model_dir, dataset_file):
    import re

    import torch
    from sae_lens import SAE

    from sae_causal_plugin.cli.data import hook_activations, load_tokens
    from sae_causal_plugin.cli.models import load_model
    from sae_causal_plugin.saes.summary import summarise_sae

    out = tmp_path / "sae"
    assert main(["train", str(write_yaml(tmp_path / "t.yaml", train_config(model_dir, dataset_file, out)))]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"saved the SAE to {out}"
    found = re.fullmatch(r"summary: explained variance (-?\d\.\d{3}), L0 (\d+\.\d), dead latents (\d+) / 32 "
                         r"\(on (\d+) activation rows\), first (\d+) sequences of the training data", lines[-1])
    assert found, lines[-1]
    # the same figures from the saved SAE on the same rows
    handle = load_model(str(model_dir))
    tokens = load_tokens(str(dataset_file), handle, context_size=16, n_tokens=4096)[:256]
    again = summarise_sae(SAE.load_from_disk(out), hook_activations(handle, "blocks.0.hook_resid_post", tokens))
    assert found[1] == f"{again.explained_variance:.3f}" and found[2] == f"{again.mean_l0:.1f}"
    assert (int(found[3]), int(found[4]), int(found[5])) == (again.dead_latents, again.n_rows, tokens.shape[0])
    assert torch.isfinite(torch.tensor(again.explained_variance))
