"""The child processes of `replay --jobs` (`plasticc_jax.processes`): results, failures, and
no child outliving its parent."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import running

from plasticc_jax import processes, runs
from plasticc_jax.errors import UserError


def test_results_come_back_in_the_tasks_order() -> None:
    tasks = [(f"task {n}", (n, 3)) for n in (10, 20, 30, 40)]
    assert processes.run_tasks(divmod, tasks, jobs=2) == [divmod(n, 3) for n in (10, 20, 30, 40)]
    assert processes.run_tasks(divmod, [], jobs=2) == []


def test_a_failing_task_ends_the_run_with_its_message(tmp_path: Path) -> None:
    # A UserError: its message alone, as the command line prints it.
    with pytest.raises(UserError, match="does not exist") as raised:
        processes.run_tasks(runs.read_config, [("the run", (tmp_path / "none",))], jobs=1)
    assert "Traceback" not in str(raised.value)
    # Anything else: raised again, the task named in its cause with the child's traceback. So
    # the command line tells a full disk in one line, as in one process (found by an audit).
    with pytest.raises(ZeroDivisionError) as raised:
        processes.run_tasks(divmod, [("task a", (1, 1)), ("task b", (1, 0))], jobs=2)
    cause = raised.value.__cause__
    assert isinstance(cause, processes.ChildTraceback)
    assert re.match(r"(?s)in the process of task b:\nTraceback.*ZeroDivisionError", str(cause))
    missing = tmp_path / "none.txt"
    with pytest.raises(FileNotFoundError) as raised:
        processes.run_tasks(Path.read_text, [("task c", (missing,))], jobs=1)
    assert raised.value.filename == str(missing)
    # One that cannot be unpickled in the parent: the child's traceback alone.
    with pytest.raises(processes.ChildTraceback, match=r"(?s)task d:.*Unpicklable: \(1, 2\)"):
        processes.run_tasks(_raise_unpicklable, [("task d", ())], jobs=1)


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickled with one argument: cannot be rebuilt
        super().__init__((a, b))


def _raise_unpicklable() -> None:
    raise Unpicklable(1, 2)


@pytest.mark.parametrize(
    ("target", "args", "said"),
    [(os._exit, (3,), "ended with exit status 3"), (os.abort, (), "was killed by SIGABRT")],
)
def test_a_child_that_dies_is_named(target, args, said: str) -> None:
    with pytest.raises(UserError, match=f"the process of group 7 {said} before it finished"):
        processes.run_tasks(target, [("group 7", args)], jobs=1)


@pytest.mark.parametrize("thread_lock", [True, False])
def test_progress_bars_leave_no_lock_of_multiprocessing(thread_lock: bool) -> None:
    """tqdm's first bar makes a multiprocessing lock, which a process killed with the command (a
    Dask worker, the figure process) left for multiprocessing to warn of at the end."""
    # In a child started by spawn or forkserver (Dask's workers): there the lock is a named one.
    script = "import multiprocessing; multiprocessing.set_start_method('spawn'); "
    script += "from multiprocessing import resource_tracker as r; made = []; "
    script += "r.register = lambda name, kind: made.append(kind); "
    script += "from plasticc_jax import processes; from tqdm import tqdm; "
    script += "processes.thread_lock_for_progress_bars(); " if thread_lock else ""
    script += "tqdm(disable=True); print(made)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout == ("[]\n" if thread_lock else "['semaphore']\n"), done.stderr


def workers(pid: int) -> list[int]:
    """The children of `pid` that run tasks (not multiprocessing's resource tracker)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # the process has ended
        return []
    return [c for c in children if b"spawn_main" in _command_line(c)]


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended since it was listed (a short-lived child)
        return b""


@contextlib.contextmanager
def script_with_a_worker(
    script: str, **popen: Any
) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """`script` run by a new Python process (stderr piped), once a task's process of it runs
    Python; killed on leaving."""
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, **popen)
    try:
        deadline = time.monotonic() + 30
        while not (children := workers(parent.pid)):
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.005)  # not a core taken from the processes waited for (2 in CI)
        yield parent, children
    finally:
        parent.kill()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_ctrl_c_while_the_children_start_stops_them_quietly() -> None:
    """A terminal's Ctrl-C reaches every process of the command: children still importing what
    their task needs (JAX, here: seconds) leave it to their parent, without a traceback."""
    script = "from plasticc_jax import processes, scoring; from pathlib import Path; "
    script += "processes.run_tasks(scoring.Scorer.load, [('a', (Path('x'),))], 1)"
    with script_with_a_worker(script, start_new_session=True) as (parent, children):
        time.sleep(0.3)  # past the interpreter's own start, into the imports
        os.killpg(parent.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, err = parent.communicate(timeout=30)
    assert err.count(b"Traceback") == 1, err.decode()[-3000:]  # the parent's (a bare script)
    assert err.rstrip().endswith(b"KeyboardInterrupt"), err.decode()[-3000:]
    assert not any(running(c) for c in children)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_a_child_starts_ends_the_command(signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM to the whole command while a child's interpreter starts and its parent
    writes it a task larger than a pipe holds: the command ends (before, the child died of it
    before reading its task, and the parent waited forever to finish writing it)."""
    script = "from plasticc_jax import processes; import pickle; "
    script += "processes.run_tasks(pickle.loads, [('a', (pickle.dumps(bytes(2**20)),))], 1)"
    with script_with_a_worker(script, start_new_session=True) as (parent, children):
        os.killpg(parent.pid, signum)
        _, err = parent.communicate(timeout=30)
    if signum == signal.SIGINT:  # the parent's KeyboardInterrupt (a bare script)
        assert err.count(b"Traceback") == 1, err.decode()[-3000:]
        assert err.rstrip().endswith(b"KeyboardInterrupt"), err.decode()[-3000:]
    else:
        assert parent.returncode == -signal.SIGTERM and not err, err.decode()[-3000:]
    deadline = time.monotonic() + 10
    while any(running(c) for c in children):
        assert time.monotonic() < deadline, "a child left running"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_child_ignores_ctrl_c_from_its_interpreters_start() -> None:
    """A child is born with Ctrl-C blocked: SIGINTs sent to it alone, every few milliseconds from
    the moment it runs Python (its start, then its task: a second), leave it to finish its task
    (before, the first one, during the interpreter's start, killed it or made it print an error)."""
    script = "from plasticc_jax import processes; import time; "
    script += "print(processes.run_tasks(time.sleep, [('a', (1,))], 1))"
    with script_with_a_worker(script, stdout=subprocess.PIPE) as (parent, children):
        sent = 0
        while parent.poll() is None and running(children[0]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(children[0], signal.SIGINT)
                sent += 1
            time.sleep(0.005)
        out, err = parent.communicate(timeout=30)
    assert parent.returncode == 0 and out == b"[None]\n", err.decode()[-3000:]
    assert b"Traceback" not in err, err.decode()[-3000:]
    assert sent > 10


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_ctrl_c_ends_the_figure_process_without_a_word() -> None:
    """`evaluate`'s figure process (`figures.FigureProcess`) printed a traceback on Ctrl-C, while
    it imported its modules (seconds) or while it waited for work. Now one during its imports is
    dropped (its parent took it too, and stops it), and one later ends it quietly."""
    script = "from plasticc_jax import figures; import time; f = figures.FigureProcess(); "
    script += "f.submit(figures._started).result(); "
    script += "print('ready', flush=True); time.sleep(60)"
    with script_with_a_worker(script, stdout=subprocess.PIPE) as (parent, children):
        time.sleep(0.3)  # into its imports (seconds)
        os.kill(children[0], signal.SIGINT)
        assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"  # it went on
        os.kill(children[0], signal.SIGINT)  # waiting for work
        deadline = time.monotonic() + 30
        while b"zombie" not in _state(children[0]):
            assert time.monotonic() < deadline, "the figure process did not end"
            time.sleep(0.05)
    _, err = parent.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()[-3000:]


def _state(pid: int) -> bytes:
    """/proc's status of `pid`, "zombie" once it has ended (its parent has not waited for it)."""
    try:
        return Path(f"/proc/{pid}/status").read_bytes()
    except OSError:  # reaped
        return b"zombie"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_no_child_outlives_its_parent() -> None:
    """kill -9 of the command: its children stop by themselves (a rerun never meets one still
    writing); a SIGTERM'd parent stops them itself."""
    script = "from plasticc_jax import processes; import time; "
    script += "processes.run_tasks(time.sleep, [('a', (60,)), ('b', (60,))], jobs=2)"
    for stop in (signal.SIGKILL, signal.SIGTERM):
        parent = subprocess.Popen([sys.executable, "-c", script])
        try:
            deadline = time.monotonic() + 30
            while len(children := workers(parent.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(children) == 2
            parent.send_signal(stop)
            parent.wait(timeout=30)
            deadline = time.monotonic() + 10
            while any(running(c) for c in children):
                assert time.monotonic() < deadline, f"children left running after {stop.name}"
                time.sleep(0.1)
        finally:
            parent.kill()
