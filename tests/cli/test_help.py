"""--help of every command explains every option."""

import argparse

import pytest

from sae_causal_plugin.cli.main import build_parser, main

COMMANDS = ["demo", "train", "graph", "steer"]


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command, capsys):
    sub = subparsers()[command]
    for action in sub._actions:
        assert action.help and len(action.help) > 10, f"{command} {action.option_strings or action.dest}"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in text


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in COMMANDS)
