"""Ctrl-C and SIGTERM as exceptions that are never lost.

A signal handler raises in whatever Python code runs at that moment. When that is a garbage
collector's callback (JAX frees device buffers from one, often while it compiles), Python prints
"Exception ignored in ..." and the command goes on to its end with exit status 0 (found by an
audit: `train` and `evaluate` ran to the end after Ctrl-C and SIGTERM). So the handlers also
record the signal, which is delivered again as soon as its exception is dropped (to raise in
the code that runs next), `check()` (between epochs and stages) raises it again, and the command
line checks once more when the command returns (`plasticc_jax.cli`).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


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
    previous_hook = sys.unraisablehook
    sys.unraisablehook = redelivering = _delivering_again(previous_hook)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if sys.unraisablehook is redelivering:
            sys.unraisablehook = previous_hook
        _received.clear()


def _delivering_again(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """`hook`, then a signal whose exception it was given delivered again: raised where Python
    could not raise it (a garbage collector's callback), it was dropped there, and the command
    went on for as long as it had to run (found by an audit: a Ctrl-C in `score`'s first seconds
    waited for the whole scoring). It now raises in the code that runs next."""

    def hook_then_deliver_again(unraisable: Any) -> None:
        hook(unraisable)
        if _received and isinstance(unraisable.exc_value, KeyboardInterrupt):
            # From another thread, a moment later: delivered from this one, the signal would
            # raise at once, here, and be dropped again.
            timer = threading.Timer(0.01, _deliver_again, (_received[-1],))
            timer.daemon = True
            timer.start()

    return hook_then_deliver_again


def _deliver_again(signum: int) -> None:
    if _received:  # still in `handled`: its handler raises at the main thread's next step
        _thread.interrupt_main(signum)


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


def stop_line(command: str, terminated: bool) -> tuple[str, int]:
    """The one line of a command stopped by Ctrl-C (or SIGTERM), and its exit status, 130
    (143)."""
    return f"plasticc-jax {command}: {'terminated' if terminated else 'interrupted'}", (
        143 if terminated else 130
    )


def ending(command: str) -> None:
    """For the rest of the process, once its command has returned (the libraries' threads and
    exit handlers wind down): Ctrl-C or SIGTERM ends it at once with the command's one line
    and exit status. Before, SIGTERM killed it without a word (-15, seen at the end of
    `prepare --dask`) and Ctrl-C raised where nothing could catch it (-2). Where Ctrl-C is
    ignored (a job started in the background by a script), it stays ignored."""

    def end(signum: int, frame: object) -> None:
        line, status = stop_line(command, signum == signal.SIGTERM)
        os.write(2, f"{line}\n".encode())
        os._exit(status)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, end)
