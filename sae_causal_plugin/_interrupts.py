"""Ctrl-C, whoever turns it into an exception: recognise it, hold it for a moment, undo others' handlers.

* :func:`is_interrupt`: ``KeyboardInterrupt``, or SAELens's ``InterruptedException`` (its training
  runner installs a SIGINT / SIGTERM handler that raises it), also when wrapped by another error.
* :func:`held`: SIGINT / SIGTERM arriving inside the block are delivered when it ends (used while
  finished files are moved into place, so an interrupt never leaves half a result).
* :func:`handlers_restored`: the SIGINT / SIGTERM handlers are put back as they were when the
  block ends (SAELens's runner replaces them and never restores them).
* :func:`keyboard_interrupt_in_training`: a SAELens training runner whose Ctrl-C / SIGTERM stay
  a ``KeyboardInterrupt``.  SAELens's own handler raises ``InterruptedException``, an ``Exception``,
  which any ``except Exception`` swallows (torch's lazy import in the first optimiser step does,
  logging a traceback, and training went on as if Ctrl-C had not been pressed).
* :func:`noticed`: Ctrl-C inside the block raises ``KeyboardInterrupt`` as usual and is also
  recorded, so an interrupt that a library turned into another error (torch can report one as
  a ``ValueError`` from deep inside a load) is still recognised; one that Python itself swallowed
  (raised inside a weakref callback or ``__del__``) is delivered again.

All three are no-ops outside the main thread, where Python allows no signal handlers.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: how long :func:`noticed` waits before sending a swallowed Ctrl-C again (the hook must have returned)
REDELIVERY_DELAY_S = 0.005


def interrupt_types() -> tuple[type[BaseException], ...]:
    """``KeyboardInterrupt`` and the interrupt exceptions of libraries already imported."""
    types: list[type[BaseException]] = [KeyboardInterrupt]
    sae_lens_interruption = sys.modules.get("sae_lens.training._interruption")
    exc = getattr(sae_lens_interruption, "InterruptedException", None)
    if isinstance(exc, type) and issubclass(exc, BaseException):
        types.append(exc)
    return tuple(types)


def is_interrupt(err: BaseException | None) -> bool:
    """Whether ``err``, or an exception it was raised from or while handling, is an interrupt."""
    kinds, seen = interrupt_types(), set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kinds):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handlers_restored() -> Iterator[None]:
    """Put the SIGINT / SIGTERM handlers back as they were when the block ends."""
    if not _main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT / SIGTERM inside the block; deliver the first one to the old handler after it."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    with handlers_restored():
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            signal.signal(sig, lambda signum, frame: caught.append(signum))
        yield
    if caught:
        handler = previous[caught[0]]
        if callable(handler):
            handler(caught[0], None)
        elif handler == signal.SIG_DFL:
            if caught[0] == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(caught[0])


@dataclass
class Noticed:
    """Whether a SIGINT arrived inside :func:`noticed`."""

    seen: bool = False


@contextmanager
def noticed() -> Iterator[Noticed]:
    """Record SIGINTs inside the block; each is still passed on to the handler that was there."""
    state = Noticed()
    previous = signal.getsignal(signal.SIGINT) if _main_thread() else None
    if not callable(previous):  # ignored, or not ours to wrap: leave it alone
        yield state
        return

    def record(signum: int, frame: object) -> None:
        state.seen = True
        previous(signum, frame)

    unraisable = sys.unraisablehook

    def redeliver(info: Any) -> None:
        # Ctrl-C that lands in a callback Python runs for itself (a weakref callback of the import
        # machinery, a __del__) is swallowed and printed as "Exception ignored in ...": send it again
        # from another thread once this hook has returned, so it arrives in ordinary code and ends
        # the command like any other Ctrl-C (sent from here, it would be swallowed in the hook too).
        if isinstance(info.exc_value, KeyboardInterrupt):
            threading.Timer(REDELIVERY_DELAY_S, signal.raise_signal, (signal.SIGINT,)).start()
        else:
            unraisable(info)

    sys.unraisablehook = redeliver
    try:
        with handlers_restored():
            signal.signal(signal.SIGINT, record)
            yield state
    finally:
        sys.unraisablehook = unraisable


def _keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def keyboard_interrupt_in_training(runner: Any) -> Any:
    """``runner`` (a SAELens ``LanguageModelSAETrainingRunner``) with SIGINT / SIGTERM raising
    ``KeyboardInterrupt`` during ``fit`` instead of SAELens's ``InterruptedException``.

    Only this runner object changes; as in SAELens, an interrupted fit saves a checkpoint first
    when ``cfg.checkpoint_path`` is set, and the handlers are restored afterwards.
    """
    if not hasattr(runner, "run_trainer_with_interruption_handling"):
        return runner  # another SAELens version: keep its behaviour (main() still exits 130)

    def run_trainer(trainer: Any) -> Any:
        with handlers_restored():
            if _main_thread():
                if not callable(signal.getsignal(signal.SIGINT)):
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, _keyboard_interrupt)
            try:
                return trainer.fit()
            except KeyboardInterrupt:
                if runner.cfg.checkpoint_path is not None:
                    runner.save_checkpoint(Path(runner.cfg.checkpoint_path) / str(trainer.n_training_samples))
                raise

    runner.run_trainer_with_interruption_handling = run_trainer
    return runner
