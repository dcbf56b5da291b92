"""quiet_saelens: SAELens bars off and its logger raised inside the block; everything restored after."""

import importlib
import logging
import os

import pytest

from sae_causal_plugin._quiet import SAELENS_TQDM_MODULES, quiet_saelens


def _state() -> tuple[dict[str, object], int]:
    bars = {name: importlib.import_module(name).tqdm for name in SAELENS_TQDM_MODULES}
    return bars, logging.getLogger("sae_lens").level


@pytest.fixture
def logger_level():
    """Run each test from a known non-default level, and put the original back afterwards."""
    logger = logging.getLogger("sae_lens")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield logger
    logger.setLevel(before)


def _assert_quiet(level: int = logging.ERROR) -> None:
    for name in SAELENS_TQDM_MODULES:
        bar = importlib.import_module(name).tqdm(range(3))
        assert bar.disable, name
        bar.close()
    assert logging.getLogger("sae_lens").level == level


def test_every_listed_module_exists_in_installed_saelens():
    # A renamed module would be skipped silently; the installed SAELens must have all of them.
    for name in SAELENS_TQDM_MODULES:
        assert hasattr(importlib.import_module(name), "tqdm"), name


def test_bars_off_and_logger_raised_inside_then_restored(logger_level):
    before = _state()
    loud = importlib.import_module(SAELENS_TQDM_MODULES[0]).tqdm(range(3), disable=False)
    assert not loud.disable
    loud.close()
    with quiet_saelens():
        _assert_quiet()
    after = _state()
    assert after[1] == logging.INFO
    assert after[0].keys() == before[0].keys()
    assert all(after[0][name] is before[0][name] for name in before[0])


def test_restored_after_exception(logger_level):
    before = _state()
    with pytest.raises(RuntimeError, match="inside"):
        with quiet_saelens():
            _assert_quiet()
            raise RuntimeError("inside")
    after = _state()
    assert after[1] == before[1] == logging.INFO
    assert all(after[0][name] is before[0][name] for name in before[0])


def test_nested_inner_restores_outer_state(logger_level):
    before = _state()
    with quiet_saelens():
        outer = _state()
        with quiet_saelens(level=logging.CRITICAL):
            assert logging.getLogger("sae_lens").level == logging.CRITICAL
        inner_exit = _state()
        assert inner_exit[1] == logging.ERROR
        assert all(inner_exit[0][name] is outer[0][name] for name in outer[0])
        _assert_quiet()
    after = _state()
    assert after[1] == logging.INFO
    assert all(after[0][name] is before[0][name] for name in before[0])


def test_level_none_leaves_logger_alone(logger_level):
    before = _state()
    with quiet_saelens(level=None):
        _assert_quiet(level=logging.INFO)
    after = _state()
    assert after[1] == logging.INFO
    assert all(after[0][name] is before[0][name] for name in before[0])


def test_no_environment_variable_changed(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    before = dict(os.environ)
    with quiet_saelens():
        assert dict(os.environ) == before
    assert dict(os.environ) == before


def test_own_tqdm_bars_untouched():
    from tqdm.auto import tqdm

    with quiet_saelens():
        bar = tqdm(range(3), disable=False)
        assert not bar.disable
        bar.close()
