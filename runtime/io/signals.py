"""Stop signals, handled explicitly: SIGINT (Ctrl-C) and SIGTERM (service managers, ``docker stop``).

A process started from a script's background job inherits SIGINT *ignored*, and Python then installs
no Ctrl-C handler of its own; SIGTERM by default kills at once (an mp4 without its index, no report).
So the CLI installs both handlers itself (:func:`installed`):

* outside a running pipeline SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises :class:`Terminated`
  (a ``KeyboardInterrupt`` whose ``exit_code`` is 0: a requested stop, not a failure);
* inside :func:`redirected` (a running pipeline) the signals call back instead of raising, so the
  stop happens where it is safe: the first one flushes every stream, the second skips the flush, a
  third ends the process at once (default action of the signal).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
Callback = Callable[[int, int], None]
"""``callback(signum, hits)``: ``hits`` counts the stop signals received while redirected (1, 2, ...)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a running pipeline: unwinds like Ctrl-C; the CLI exits with ``exit_code``."""

    exit_code = 0


_callbacks: list[Callback] = []
_hits = [0]


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _handler(signum: int, frame: object) -> None:
    if _callbacks:
        _hits[0] += 1
        if _hits[0] >= 3:  # third time: stop now, whatever is pending
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        _callbacks[-1](signum, _hits[0])
        return
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def installed() -> Iterator[None]:
    """SIGINT and SIGTERM handled by this module while inside (main thread only; restored after)."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def redirected(callback: Callback) -> Iterator[None]:
    """While inside, a stop signal calls ``callback(signum, hits)`` instead of raising (main thread only)."""
    if not _main_thread():
        yield
        return
    with installed():
        _callbacks.append(callback)
        saved, _hits[0] = _hits[0], 0
        try:
            yield
        finally:
            _callbacks.pop()
            _hits[0] = saved


def exit_code(exc: KeyboardInterrupt) -> int:
    """The documented exit status for a stop: 0 after SIGTERM, 130 after Ctrl-C."""
    return int(getattr(exc, "exit_code", 130))


@contextmanager
def on_hangup(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGHUP calls ``callback()`` (keep it short: set a flag or an event); main thread only."""
    if not _main_thread() or not hasattr(signal, "SIGHUP"):
        yield
        return
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: callback())
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)
