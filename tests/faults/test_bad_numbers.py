"""Non-finite and out-of-range numbers: every float option of the command line, the config file's
float keys, and the float arguments of the public API are refused with a message naming them."""

import math

import pytest
import torch

from sae_causal_plugin._options import is_float_option
from sae_causal_plugin.cli.main import build_parser, main

from tests.helpers import train_config, write_yaml
from .helpers import assert_clean_failure

#: the other arguments each command needs to reach its float options (argparse checks them first).
REQUIRED = {
    "graph": ["--sae", "s", "--dataset", "d", "--out", "o"],
    "steer": ["--sae", "s", "--graph", "g", "--concept", "0", "--mode", "add", "--value", "1", "--prompt", "p"],
    "train": ["c.yaml"],
    "demo": [],
}
NON_FINITE = ("nan", "inf", "-inf", "NaN", "+Infinity")


def float_options():
    """``(command, option, action)`` for every option that takes a number with a fraction."""
    sub = next(a for a in build_parser()._actions if a.choices and "graph" in a.choices)
    out = []
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if action.type is float or is_float_option(action.type):
                out.append((command, action.option_strings[-1], action))
    return out


def test_every_float_option_is_checked():
    options = float_options()
    assert {(c, o) for c, o, _ in options} >= {("graph", "--min-conditional"), ("graph", "--min-lift"),
                                               ("steer", "--value"), ("steer", "--strength"),
                                               ("steer", "--temperature")}
    bare = [(c, o) for c, o, action in options if action.type is float]
    assert not bare, f"options typed float, not float_option: {bare}"


@pytest.mark.parametrize("command, option", [(c, o) for c, o, _ in float_options()])
@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_float_option_exits_2(command, option, value, capsys):
    """Defect 3: steer --value nan / --strength nan ran and printed '<bos>' text."""
    with pytest.raises(SystemExit) as exit_:
        main([command, *REQUIRED[command], f"{option}={value}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"argument {option}: must be a finite number" in err and repr(value) in err


@pytest.mark.parametrize("option, value", [("--min-conditional", "1.5"), ("--min-conditional", "-0.1"),
                                           ("--explain-margin", "2"), ("--min-lift", "-1"),
                                           ("--min-activation", "-0.5")])
def test_out_of_range_graph_option_exits_2(option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["graph", *REQUIRED["graph"], option, value])
    assert exit_.value.code == 2 and f"argument {option}: must be a finite number" in capsys.readouterr().err


def test_negative_temperature_exits_2(capsys):
    with pytest.raises(SystemExit):
        main(["steer", *REQUIRED["steer"], "--temperature", "-1"])
    assert "must be a finite number >= 0" in capsys.readouterr().err


FLOAT_KEYS = ["lr", "adam_beta1", "adam_beta2", "dead_feature_threshold", "activations_mixing_fraction",
              "sae.compression_coefficient", "sae.aux_loss_coefficient", "sae.decoder_init_norm"]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan"])
def test_non_finite_config_number_exits_2(key, value, model_dir, dataset_file, tmp_path, capsys):
    cfg = train_config(model_dir, dataset_file, tmp_path / "out")
    if key.startswith("sae."):
        cfg["sae"] = {**cfg["sae"], key[4:]: value}
    else:
        cfg[key] = value
    status = main(["train", str(write_yaml(tmp_path / "c.yaml", cfg))])
    line = assert_clean_failure(status, capsys.readouterr().err, "train")
    assert f"config key {key!r}: the value must be a finite number" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.fixture(scope="module")
def steering_parts(model_dir, trained_sae):
    from sae_causal_plugin.cli.models import load_model
    from sae_causal_plugin.cli.sae_dirs import load_sae_dir

    return load_model(str(model_dir)).model, load_sae_dir(str(trained_sae))


@pytest.mark.parametrize("kwargs, name", [
    (dict(value=math.nan), "value"), (dict(value=math.inf), "value"), (dict(value=[1.0, math.nan]), "value"),
    (dict(value=torch.tensor([math.inf])), "value"), (dict(value=1.0, strength=math.nan), "strength"),
    (dict(value=1.0, strength=-math.inf), "strength"), (dict(value="1"), "value"),
])
def test_language_steering_refuses_non_finite_numbers(steering_parts, kwargs, name):
    from sae_causal_plugin.steering.language import LanguageSteering

    model, sae = steering_parts
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        LanguageSteering(model, sae, [0], "add", **kwargs)


@pytest.mark.parametrize("temperature", [math.nan, math.inf, -1.0])
def test_generate_refuses_a_bad_temperature(steering_parts, temperature):
    from sae_causal_plugin.steering.language import generate

    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        generate(steering_parts[0], torch.tensor([[1, 2]]), temperature=temperature)


@pytest.mark.parametrize("kwargs", [dict(min_lift=math.nan), dict(max_parent_rate_ratio=math.nan),
                                    dict(min_conditional=math.nan), dict(explain_margin=math.inf),
                                    dict(min_activation=math.nan)])
def test_recover_concept_graph_refuses_nan_thresholds(steering_parts, kwargs):
    """Defect 6 (fixed in graph/recovery.py by another change): nan thresholds silently changed the graph."""
    from sae_causal_plugin.graph import recover_concept_graph

    with pytest.raises(ValueError):
        recover_concept_graph(steering_parts[1], torch.randn(64, 16), **kwargs)
