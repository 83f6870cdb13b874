"""Tasks in child processes, a few at a time, none outliving the command (`replay --jobs`).

Each task runs in a fresh interpreter (multiprocessing's `spawn`: the threads of JAX and of the
tree ensembles do not survive a `fork`), started as a slot frees, with the parent's logging.
A child that fails ends the whole run with its exception, raised again in the parent (the
child's traceback as its cause); one that dies (out of memory, say) is named with its signal. On
Ctrl-C, SIGTERM or any error the parent stops the children still running (SIGTERM), and a child
whose parent died (kill -9) stops itself within a second, so a rerun never meets a child of the
last one still writing. Their work must therefore be safe to kill at any moment, as a replay's
nights are. A terminal's Ctrl-C reaches every process of the command: a child ignores it from
its first line of Python on, before it imports what its task needs (the parent stops it), and
the parent takes it, and SIGTERM, only once a child it is starting has started. The child is
born with both blocked until that first line: one that came during its interpreter's start killed
it before it had read its task, and the parent, still writing the task to it, waited forever.

`concurrent.futures.ProcessPoolExecutor` has no way to stop a running task before Python 3.14;
`multiprocessing.Pool` waits forever for a task whose worker died.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

from tqdm import tqdm

from plasticc_jax.errors import UserError

_SPAWN = multiprocessing.get_context("spawn")
PARENT_CHECK_S = 0.5  # how often a child looks whether its parent is still there
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run_tasks(
    target: Callable[..., Any], tasks: Sequence[tuple[str, tuple[Any, ...]]], jobs: int
) -> list[Any]:
    """`target(*args)` of each `(name, args)` task, at most `jobs` at once, each in a child
    process; returns their results in the tasks' order (each must pickle, as `target` and the
    arguments must).

    Raises:
        UserError: a task raised one (its message), or its process died (the signal named).
        Exception: what a task raised otherwise, raised again (the child's traceback as its
            cause, `ChildTraceback`). The tasks still running are stopped first.
    """
    results: list[Any] = [None] * len(tasks)
    waiting = list(enumerate(tasks))
    running: dict[Connection, tuple[int, Any]] = {}  # the pipe from a child -> (task, process)
    logging_setup = _logging_setup()
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                index, (_, args) = waiting.pop(0)
                # The task travels pickled, unpickled by `_child` once it ignores Ctrl-C: the
                # modules it imports (JAX...) take seconds, during which a terminal's Ctrl-C,
                # which reaches every process of the command, printed the child's traceback.
                task = pickle.dumps((target, args))
                receive, send = _SPAWN.Pipe(duplex=False)
                process = _SPAWN.Process(
                    target=_child,
                    args=(task, os.getpid(), logging_setup, send),
                    daemon=True,
                )
                running[receive] = (index, process)  # before it starts: an interrupt stops it
                with _interrupts_deferred():
                    process.start()
                send.close()  # the child's end: the parent reads only
            # A pipe is ready when its child sent its outcome, or ended without (end of file).
            for receive in wait(list(running)):
                index, process = running[receive]
                try:
                    outcome = receive.recv()
                except EOFError:
                    outcome = None
                process.join()
                del running[receive]  # once joined: an interrupt before leaves it to `finally`
                receive.close()
                results[index] = _result(tasks[index][0], outcome, process.exitcode)
    finally:
        started = [process for _, process in running.values() if process.pid is not None]
        for process in started:  # an error or an interrupt: the rest stopped
            process.terminate()
        for process in started:
            process.join()
    return results


def _result(name: str, outcome: tuple[str, Any] | None, exitcode: int | None) -> Any:
    if outcome is None:
        how = (
            f"was killed by {signal.Signals(-exitcode).name}"
            if exitcode is not None and exitcode < 0
            else f"ended with exit status {exitcode}"
        )
        hint = " (out of memory? fewer jobs at once hold less)" if exitcode == -9 else ""
        raise UserError(f"the process of {name} {how} before it finished{hint}")
    kind, value = outcome
    if kind == "user":
        raise UserError(value)
    if kind == "error":
        # The child's exception itself, so that the command line tells a full disk or a lack of
        # memory in one line as in one process (found by an audit: the child's traceback was
        # printed instead); the child's traceback is its cause, as `concurrent.futures` gives it.
        pickled, child_traceback = value
        cause = ChildTraceback(f"in the process of {name}:\n{child_traceback}")
        if pickled is None:
            raise cause
        raise pickle.loads(pickled) from cause
    return value


class ChildTraceback(Exception):
    """Where a task failed in its child process: the child's traceback, as text."""


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM taken once a child has started, not while it starts: a start cut short
    left a child that printed an error as it died (its data from the parent truncated)."""
    if threading.current_thread() is not threading.main_thread():  # handlers: main thread only
        with stop_signals_blocked():
            yield
        return
    received: list[int] = []
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in handled}
    try:
        with stop_signals_blocked():  # one that comes meanwhile: taken on leaving, by the above
            yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:  # now, to the handlers the command had
            signal.raise_signal(signum)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread: a child started meanwhile inherits the mask,
    so one sent during its interpreter's start (and its imports) waits until the child takes
    them over (`_child`; `unblock_stop_signals`)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    # The resource tracker's first start unblocks them after it (multiprocessing's own code).
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unblock_stop_signals() -> None:
    """In a child born under `stop_signals_blocked`, once it has set what Ctrl-C does there:
    the signals sent meanwhile are delivered now."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@functools.cache
def thread_lock_for_progress_bars() -> None:
    """tqdm's lock a thread's, in this process, instead of the multiprocessing lock it makes at
    its first progress bar: this project's bars are each drawn by one process, and a process
    killed holding that lock (a Dask worker or the figure process, stopped with the command)
    left it for multiprocessing to warn of at the end ("leaked semaphore objects")."""
    tqdm.set_lock(threading.RLock())


def _logging_setup() -> tuple[int, list[tuple[logging.Formatter | None, list[Any]]]]:
    """The root logger's level, and the formatter and filters of each of its handlers that write
    to stderr (a child logs there as the parent does)."""
    root = logging.getLogger()
    to_stderr = [h for h in root.handlers if type(h) is logging.StreamHandler]
    to_stderr = [h for h in to_stderr if h.stream is sys.stderr]
    return root.level, [(h.formatter, list(h.filters)) for h in to_stderr]


def _child(
    task: bytes,
    parent: int,
    logging_setup: tuple[int, list[tuple[logging.Formatter | None, list[Any]]]],
    connection: Connection,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    unblock_stop_signals()  # a SIGTERM since it was born ends it now
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    level, handlers = logging_setup
    root = logging.getLogger()
    root.setLevel(level)
    for formatter, filters in handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        for f in filters:
            handler.addFilter(f)
        root.addHandler(handler)
    try:
        target, args = pickle.loads(task)
        outcome: tuple[str, Any] = ("ok", target(*args))
    except UserError as error:
        outcome = ("user", str(error))
    except Exception as error:  # raised again in the parent, which names the task
        outcome = ("error", (_pickled_or_none(error), traceback.format_exc()))
    connection.send(outcome)
    connection.close()


def _pickled_or_none(error: Exception) -> bytes | None:
    """`error` pickled, if the parent can unpickle it (not every exception can)."""
    try:
        data = pickle.dumps(error)
        pickle.loads(data)
    except Exception:
        return None
    return data


def _exit_without(parent: int) -> None:
    """End this process once its parent is gone (then it has been re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)
