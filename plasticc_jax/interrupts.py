"""Ctrl-C and SIGTERM as exceptions that are never lost.

A signal handler raises in whatever Python code runs at that moment. When that is a garbage
collector's callback (JAX frees device buffers from one, often while it compiles), Python prints
"Exception ignored in ..." and the command goes on to its end with exit status 0 (found by an
audit: `train` and `evaluate` ran to the end after Ctrl-C and SIGTERM). So the handlers also
record the signal, `check()` (between epochs and stages) raises it again, and the command line
checks once more when the command returns (`plasticc_jax.cli`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM (`docker stop`, `kill`, a batch system's time limit), handled as Ctrl-C is: the
    same cleanup, one line, exit status 143."""


_received: list[int] = []  # the signals received and not yet handled


def _raise(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise (and are recorded) while in the context (main thread only);
    what was recorded is forgotten on leaving it (a notebook's later calls must not raise it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    # Ctrl-C only where it raises already (not where the parent ignores it: a job started in
    # the background by a script).
    signums = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signums.append(signal.SIGINT)
    previous = {s: signal.signal(s, _raise) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


def check() -> None:
    """Raise the signal received since the last `handled` or `clear`, if any (its exception
    may have been swallowed where it was raised)."""
    if _received:
        raise Terminated if _received[-1] == signal.SIGTERM else KeyboardInterrupt


def received() -> int | None:
    """The last signal received since the last `handled` or `clear` (None: none)."""
    return _received[-1] if _received else None


def clear() -> None:
    """Forget the signals received: their exception was caught and handled (e.g. Ctrl-C ends
    `review`'s server, as it should)."""
    _received.clear()
