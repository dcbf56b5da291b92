"""Bench command lines built from config dataclasses (``bench/_cli.py``): one field, one option."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import pytest

from sae_causal_plugin.bench._cli import add_dataclass_options, config_from_args, field_docs


@dataclass
class Toy:
    count: int = field(default=3, metadata={"positive": True})
    """how many"""
    rate: float = 0.5
    name: str = "a"
    limit: float | None = None
    """upper bound (none by default)"""
    sizes: tuple[int, ...] = field(default=(1, 2), metadata={"min_items": 2})
    extra: tuple[float, ...] = ()
    mode: Literal["x", "y"] = "x"
    verbose: bool = False
    enabled: bool = field(default=True, metadata={"help": "switch it off"})
    options: dict[str, Any] = field(default_factory=dict)
    renamed: int = field(default=1, metadata={"option": ["--short", "--other"]})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_dataclass_options(p, Toy)
    return p


def _parse(argv: list[str]) -> Toy:
    p = _parser()
    return config_from_args(p, p.parse_args(argv), Toy)


def test_no_options_give_the_defaults():
    assert _parse([]) == Toy()


def test_every_field_type_has_its_option():
    cfg = _parse(["--count", "4", "--rate", "0.25", "--name", "b", "--limit", "2", "--sizes", "5", "6", "7",
                  "--extra", "--mode", "y", "--verbose", "--no-enabled", "--options", '{"a": 1}', "--other", "9"])
    assert cfg == Toy(count=4, rate=0.25, name="b", limit=2.0, sizes=(5, 6, 7), extra=(), mode="y",
                      verbose=True, enabled=False, options={"a": 1}, renamed=9)
    assert _parse(["--extra", "1", "2.5"]).extra == (1.0, 2.5)


def test_help_comes_from_the_field_docstrings_and_metadata(capsys):
    assert field_docs(Toy) == {"count": "how many", "limit": "upper bound (none by default)"}
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--count COUNT how many (default 3)" in out
    assert "--no-enabled switch it off" in out and "--sizes SIZES [SIZES ...] (default [1, 2])" in out


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count must be positive"),
    (["--sizes", "1"], "--sizes needs at least 2 values"),
    (["--options", "[1]"], "--options must be a JSON object"),
    (["--mode", "z"], "invalid choice"),
    (["--count", "x"], "invalid int value"),
])
def test_bad_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_language_world_options_are_its_config_fields():
    from sae_causal_plugin.bench.language_world import parse_args
    from sae_causal_plugin.worlds.language_world import LanguageWorldConfig

    config, args = parse_args([])
    assert config == LanguageWorldConfig() and args.seed == 0 and not args.json
    config, args = parse_args(["--seed", "2", "--hook", "blocks.0.hook_resid_post", "--k", "3", "--read", "nouns",
                               "--steer-positions", "all", "--steer-scale", "2", "--sweep", "0.5", "1",
                               "--no-layers", "--training-tokens", "1000", "--json", "--no-progress"])
    assert config == replace(LanguageWorldConfig(), hook_name="blocks.0.hook_resid_post", k=3, read="nouns",
                             steer_positions="all", steer_scale=2.0, steer_sweep=(0.5, 1.0), layers=False,
                             training_tokens=1000)
    assert args.seed == 2 and args.json and args.no_progress
    assert parse_args(["--sweep"])[0].steer_sweep == ()
    with pytest.raises(SystemExit):
        parse_args(["--k", "0"])


def test_language_world_has_one_set_of_defaults():
    from sae_causal_plugin.worlds.language_world import LanguageWorldConfig
    from sae_causal_plugin.worlds.language_world.saes import default_sae_config

    sae = default_sae_config(64)
    world = LanguageWorldConfig()
    assert (sae.d_sae, sae.k, sae.nested_coefficient, list(sae.level_widths)) == (
        world.d_sae, world.k, world.nested_coefficient, list(world.level_widths))
    assert default_sae_config(16, d_sae=32, k=2).d_sae == 32
    assert {f.name for f in fields(LanguageWorldConfig)} >= {"hook_name", "read", "k", "steer_scale", "layers"}
