"""Prepare and score on a Dask cluster, with the results of one machine: what both share.

`plasticc-jax prepare --dask ADDRESS` and `plasticc-jax score --dask ADDRESS` run the code of the
single-process path, spread over the workers of a Dask cluster (`connect`: a scheduler address, a
scheduler file, or `local:N` for a `distributed.LocalCluster` of N one-thread worker processes on
this machine). This module holds the cluster, the parts and what a worker keeps between parts;
each command's tasks and driver are `plasticc_jax.distributed_prepare` and
`plasticc_jax.distributed_score`.

**Partitions.** The light-curve files are cut into parts of whole objects
(`lightcurve_rows.split_file`): a plain CSV file at byte offsets about `part_mb` apart, each cut
moved to the next object boundary; a gzip file is one part (it cannot be entered in the middle).
One task per part streams it in chunks of `data.chunk_rows` rows (`run_part`), exactly as the
single-process path streams a file, so a worker's memory is bounded by the chunk size, plus the
model and the metadata.

**Workers.** A worker process reads the metadata files and loads the run once, for its first
part (`scoring.Scorer.cached`; the metadata likewise: `worker_metadata`), and reuses them for the
next parts. Every worker needs the same plasticc_jax (the same container image) and the inputs
and outputs at the same paths (shared storage); `connect` checks the version.

**Outputs.** Every part writes its own output atomically under a name fixed by its position in
the input, so a task that runs twice (its worker died and Dask ran it again) writes the same file
again: no object is lost or duplicated. The driver gathers each part's small summary (its object
ids, scores and rejections), checks that no object is in two parts (`check_unique`: files must be
grouped by object), lists the metadata objects that no part saw (as the single-process stream
does, and in the same order), and checks that every input object is scored or rejected exactly
once.

**Faults.** When a worker dies (killed, out of memory, its machine lost) the scheduler runs its
tasks again elsewhere, or on the worker that replaces it (up to
`distributed.scheduler.allowed-failures` deaths per task, 3 by default). A task that raises (bad
input: a `UserError`) stops the run with that error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import multiprocessing
import pickle
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import forkserver
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from distributed.diagnostics.plugin import WorkerPlugin

from plasticc_jax import lightcurve_rows, readers, streaming
from plasticc_jax.config import DataConfig
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import check_unchanged, file_stamp
from plasticc_jax.lightcurve_rows import FilePart
from plasticc_jax.shards import LEFT_OUT, split_objects

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

DEFAULT_PART_MB = 64.0
CONNECT_TIMEOUT_S = 20
HANDSHAKE_MARGIN_S = 10  # beyond the connection's timeout, for the scheduler's handshake
WORKER_WAIT_S = 120
WAIT_POLL_S = 5.0  # how often a driver waiting for its tasks looks for workers
_LOCAL = re.compile(r"local:(\d+)")
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# The cluster.


@contextmanager
def connect(address: str) -> Iterator[Client]:
    """A client of the Dask cluster that `address` names, closed on exit.

    Args:
        address: `local:N` (a `LocalCluster` of N worker processes with one thread each, on this
            machine, shut down on exit), a scheduler address (`tcp://host:8786`), or a scheduler
            file (`*.json`, written by `dask scheduler --scheduler-file`).

    Raises:
        UserError: a malformed `local:N`, an unreachable scheduler, no worker joining within
            `WORKER_WAIT_S`, or workers without this version of plasticc_jax.
    """
    from distributed import Client, LocalCluster

    address = address.strip()
    local = _LOCAL.fullmatch(address)
    # `local`, `local:0`, `local:x`; not `localhost:8786` (a scheduler's address).
    if address.split(":")[0] == "local" and (local is None or int(local[1]) < 1):
        raise UserError(f"--dask {address}: use local:N with N >= 1 worker processes")
    if local:
        n_workers = int(local[1])
        log.info("starting a local Dask cluster: %d worker processes, 1 thread each", n_workers)
        with _workers_born_ignoring_ctrl_c():
            try:
                cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    # Any free port on this machine only (None still took 8787, with a warning
                    # when another cluster held it).
                    dashboard_address="127.0.0.1:0",
                    # This process reports what goes wrong in one line: not the workers' own
                    # logs of the same error (a task's traceback, a closed connection at the end).
                    silence_logs=logging.CRITICAL,
                )
            except (RuntimeError, OSError, TimeoutError) as error:  # a worker died starting
                raise UserError(
                    f"--dask {address}: the local Dask cluster did not start ({error})"
                ) from None
            try:
                client = Client(cluster)
            except BaseException:  # Ctrl-C meanwhile, say
                cluster.close()
                raise
            try:
                client.wait_for_workers(n_workers, timeout=WORKER_WAIT_S)
                # Ctrl-C reaches every process of the terminal's group: the workers leave it to
                # this process, which stops the cluster. A plugin: it runs on every worker,
                # those the nanny restarts after a crash included.
                client.register_plugin(_IgnoreCtrlC(), name="plasticc-jax-ignore-ctrl-c")
            except BaseException as error:  # Ctrl-C meanwhile, say
                client.close()
                cluster.close()
                if isinstance(error, OSError | TimeoutError):
                    raise UserError(
                        f"--dask {address}: the local Dask cluster did not start ({error})"
                    ) from None
                raise
            with _quiet_event_loop(), cluster, client:
                yield client
        return
    if address.endswith(".json"):
        _check_scheduler_file(address)
    else:
        _check_port(address)
    try:
        if address.endswith(".json"):
            client = _client_within(scheduler_file=address, timeout=CONNECT_TIMEOUT_S)
        else:
            client = _client_within(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise UserError(
            f"--dask {address}: cannot reach a Dask scheduler there ({error}); give its address "
            "(tcp://host:8786), a scheduler file, or local:N"
        ) from None
    with _quiet_event_loop(), client:
        _check_workers(client, address)
        yield client


def _check_port(address: str) -> None:
    """One line at once for a `host:port` (or `tcp://host:port`) that is no port or where
    nothing listens: Dask's client retried a refused connection for its whole timeout (20-25 s,
    found by an audit). Anything else (names, TLS, other protocols) is left to Dask."""
    host, colon, port = address.removeprefix("tcp://").rpartition(":")
    if not colon or not port.isdigit() or "://" in host:
        return
    if not 0 < int(port) < 65536:
        raise UserError(f"--dask {address}: {port} is not a port number (1-65535)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except ConnectionRefusedError:
        raise UserError(
            f"--dask {address}: nothing listens there (connection refused): start the scheduler "
            "(`dask scheduler`) or give its address (tcp://host:8786), a scheduler file, or "
            "local:N"
        ) from None
    except OSError:
        return  # a name that does not resolve, a timeout: Dask's own message says it


def _client_within(*args: Any, timeout: float, **kwargs: Any) -> Client:
    """`Client(*args, timeout=timeout, **kwargs)`, or a TimeoutError after about `timeout`
    seconds: Dask's own timeout bounds the connection, not the handshake, so a port that
    accepts and stays silent (the dashboard's, 8787, given for the scheduler's) waited forever.
    The client is made in a daemon thread, left behind if it never answers."""
    from distributed import Client

    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["client"] = Client(*args, timeout=timeout, **kwargs)
        except BaseException as error:  # handed to the caller
            made["error"] = error

    thread = threading.Thread(target=make, name="dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + HANDSHAKE_MARGIN_S)
    if thread.is_alive():
        raise TimeoutError(
            f"no Dask scheduler answered within {timeout + HANDSHAKE_MARGIN_S:g} s: is it the "
            "scheduler's port (8786 by default), not the dashboard's (8787)?"
        )
    if "error" in made:
        raise made["error"]
    return made["client"]


@contextmanager
def _workers_born_ignoring_ctrl_c() -> Iterator[None]:
    """While in the block, the local cluster's worker processes ignore Ctrl-C from their first
    instruction (a terminal's Ctrl-C reaches them too: one that came while they started had
    each print its tracebacks); this process stops the cluster. They are forked by
    multiprocessing's fork server, itself started with SIGINT ignored, which its children
    inherit; this process keeps heeding Ctrl-C (SIGINT ignored here while the cluster started
    lost a Ctrl-C then: the command ran to its end). Without a fork server (Windows), SIGINT is
    ignored here while the cluster starts."""
    import dask

    if "forkserver" not in multiprocessing.get_all_start_methods():
        with _ctrl_c_ignored():
            yield
        return
    with _ctrl_c_ignored():
        forkserver.ensure_running()  # if it is not running yet; then with SIGINT ignored
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield


@contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored by this process (and so by the processes it starts) inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _IgnoreCtrlC(WorkerPlugin):
    """SIGINT ignored in each worker process of a local cluster, restarted ones included."""

    def setup(self, worker: Any) -> None:
        with contextlib.suppress(ValueError):  # not the process's main thread: nothing to do
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _quiet_event_loop() -> Iterator[None]:
    """While the client is in use: no "Task exception was never retrieved" traceback from
    asyncio for each task cancelled by an interruption (Ctrl-C); the interruption itself is
    reported in one line."""
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_scheduler_file(address: str) -> None:
    """A scheduler file (`dask scheduler --scheduler-file`) must exist and name an address."""
    path = Path(address)
    if not path.is_file():
        raise UserError(f"--dask {address}: no such scheduler file")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("address"), str):
        raise UserError(
            f'--dask {address}: not a scheduler file (JSON with an "address", as `dask '
            "scheduler --scheduler-file` writes)"
        )


def _plasticc_version() -> str:
    import plasticc_jax

    return plasticc_jax.__version__


def _check_workers(client: Client, address: str) -> None:
    """Wait for a worker; refuse workers that cannot run this version of plasticc_jax."""
    if not client.scheduler_info().get("workers"):
        log.info("waiting up to %d s for a Dask worker to join %s", WORKER_WAIT_S, address)
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise UserError(
            f"--dask {address}: no worker joined the scheduler within {WORKER_WAIT_S} s; start "
            f"workers with `dask worker {_worker_target(address)}` (README: Beyond one machine)"
        ) from None
    expected = _plasticc_version()
    versions = client.run(_plasticc_version, on_error="return")
    wrong = {w: v for w, v in versions.items() if v != expected}
    if wrong:
        worker, found = next(iter(wrong.items()))
        found = f"plasticc_jax {found}" if isinstance(found, str) else f"no plasticc_jax ({found})"
        raise UserError(
            f"--dask {address}: worker {worker} (and {len(wrong) - 1} more) has {found}, this "
            f"machine plasticc_jax {expected}: run the same container image (or install) on the "
            "workers"
        )


def _worker_target(address: str) -> str:
    """What `dask worker` takes to join the cluster at `address`."""
    return f"--scheduler-file {address}" if address.endswith(".json") else address


# ---------------------------------------------------------------------------------------------
# Parts of the input, and what a worker keeps between parts.


def plan_parts(lightcurve_paths: Sequence[Path], part_mb: float | None) -> list[FilePart]:
    """The light-curve files cut into parts of whole objects of about `part_mb` MB, in input
    order (`lightcurve_rows.split_file`; a gzip file is one part), named by absolute paths:
    a worker may run in another folder. A file without a row is refused, as without Dask (a
    part reads only its own bytes)."""
    size = part_bytes(part_mb)
    paths = [Path(path).absolute() for path in lightcurve_paths]
    for path in paths:
        if not lightcurve_rows.has_rows(path):
            raise lightcurve_rows.no_rows_error(path)
    parts = [part for path in paths for part in lightcurve_rows.split_file(path, size)]
    return [dataclasses.replace(part, stamp=file_stamp(part.path)) for part in parts]


def part_bytes(part_mb: float | None) -> int:
    """Bytes of plain CSV per part (`--part-mb`; None: `DEFAULT_PART_MB`), or a UserError."""
    part_mb = DEFAULT_PART_MB if part_mb is None else part_mb
    if not part_mb > 0 or not np.isfinite(part_mb):
        raise UserError(f"--part-mb {part_mb}: give a size above 0 (MB of CSV per task)")
    return max(int(part_mb * 1e6), 1)


def _describe(part: FilePart) -> str:
    if part.start is None:
        return str(part.path)
    return f"{part.path} (bytes {part.start}-{part.stop})"


MetadataStamp = tuple[tuple[str, int, int, str], ...]


def metadata_stamp(paths: Sequence[Path]) -> MetadataStamp:
    """Each file's resolved path, size and modification time (the key of a worker's cached
    metadata), and its name in rejection lists (`streaming.source_names` of the paths as given,
    as without Dask: a review found the resolved paths named)."""
    names = streaming.source_names(paths)
    return tuple(
        (str(Path(path).resolve()), *file_stamp(path), name)
        for path, name in zip(paths, names, strict=True)
    )


@functools.lru_cache(maxsize=1)
def worker_metadata(
    stamp: MetadataStamp, data: DataConfig | None
) -> tuple[streaming.MetaIndex, np.ndarray | None, np.ndarray | None]:
    """The metadata index, read once per worker process (per files and config).

    With `data` (prepare), objects whose class the protocol leaves out are excluded, and every
    object's split code (`shards.split_objects`) is returned by object_id: (index, sorted ids,
    sorted codes); without it, (index, None, None).
    """
    paths, names = [Path(s[0]) for s in stamp], [s[3] for s in stamp]
    now = metadata_stamp(paths)
    if [s[:3] for s in now] != [s[:3] for s in stamp]:
        changed = next(new[0] for new, old in zip(now, stamp, strict=True) if new[:3] != old[:3])
        raise UserError(
            f"the metadata file {changed} changed while the run was going (size or "
            "modification time): run again once the files are complete"
        )
    metadata = readers.read_metadata_files(paths)
    if data is None:  # scoring: labels are optional
        # The driver has warned of labels that are not class numbers: the workers do not again.
        metadata = readers.labels_optional(metadata, warn=False)
        return streaming.MetaIndex(metadata, names=names), None, None
    ids = metadata["object_id"].to_numpy()
    codes, _ = split_objects(ids, metadata["target"].to_numpy(), data)
    order = np.argsort(ids, kind="stable")
    return streaming.MetaIndex(metadata, ids[codes == LEFT_OUT], names), ids[order], codes[order]


def run_part(
    part: FilePart,
    index: streaming.MetaIndex,
    data: DataConfig,
    workers: int,
    consume: Callable[[Iterator[tuple[Any, pd.DataFrame]]], T],
    stages: Sequence[float] = (),
) -> tuple[T, np.ndarray, int]:
    """Stream one part's gridded chunks into `consume` (with `stages`, each object's staged
    rows too: `streaming.stream_grids`).

    Returns:
        What `consume` returns, the ids of every object of the part, and its rows.

    Raises:
        UserError: bad input, with the line numbers of the file (a part in the middle of a file
            counts the rows before it only on this path, and reads the part again to raise it).
    """
    seen, rows = index.fresh(), []
    check_unchanged(part.path, part.stamp)
    try:
        grids = streaming.stream_grids(
            [part], [], data, workers, index=seen, file_rows=rows, stages=stages
        )
        result = consume(grids)
        check_unchanged(part.path, part.stamp)  # not written to while it was read
    except UserError:
        first_row = 0 if part.start is None else lightcurve_rows.count_rows(part)
        if first_row == part.first_row:
            raise
        exact = dataclasses.replace(part, first_row=first_row)
        for _ in streaming.stream_grids([exact], [], data, 1, index=index.fresh()):
            pass
        raise
    return result, seen.seen_ids(), rows[0] if rows else 0


def shipped(client: Client, value: Any, name: str) -> Future:
    """`value` on the cluster, for tasks to take as an argument: the result of a task that
    unpickles it, so the driver's object travels once with the task graph, moves between
    workers as they need it, and is rebuilt by the scheduler if every worker holding it dies
    (data given to `Client.scatter` would be lost with them)."""
    import dask

    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    key = f"plasticc-{name}-{uuid.uuid4().hex[:8]}"
    # Sent once, on purpose: not the repeated data Dask's large-graph warning is about.
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GiB"}):
        return client.submit(pickle.loads, blob, key=key, pure=False)


@contextmanager
def submitted(
    client: Client, fn: Callable, tasks: list, name: str, *shared: Any
) -> Iterator[list[Future]]:
    """`fn(task, *shared)` submitted for every task (one Dask task each, in task order, named
    `plasticc-<name>-<run token>-<i>`); those still running are cancelled on exit. `shared`:
    the same arguments for every task (e.g. the future of `shipped`)."""
    token = uuid.uuid4().hex[:8]
    keys = [f"plasticc-{name}-{token}-{i:05d}" for i in range(len(tasks))]
    repeated = [[value] * len(tasks) for value in shared]
    futures = client.map(fn, tasks, *repeated, key=keys, pure=False)
    try:
        yield futures
    finally:
        client.cancel(futures)


def gathered(client: Client, futures: list[Future], what: str) -> list:
    """`client.gather(futures)`, with the cluster's failures as one line: a task whose workers
    all died running it (out of memory, killed: a traceback of Dask's `KilledWorker` before),
    or no worker left in the cluster for `WORKER_WAIT_S` (it waited silently for ever before;
    both found by an audit). A failed task's error is raised within `WAIT_POLL_S`."""
    from distributed import KilledWorker, wait

    alone_since: float | None = None
    while True:
        try:
            wait(futures, timeout=WAIT_POLL_S)
            break
        except TimeoutError:
            if any(f.status == "error" for f in futures):
                break  # a part failed: said now, not once every other part has run (a review)
            if client.scheduler_info().get("workers"):
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > WORKER_WAIT_S:
                raise UserError(
                    f"no Dask worker left in the cluster for {WORKER_WAIT_S} s while {what} "
                    "ran: start workers again (or use local:N), then rerun"
                ) from None
    try:
        failed = [f for f in futures if f.status == "error"]
        if failed:  # the first in task order of those failed by now (`submitted` cancels the rest)
            failed[0].result()
        return client.gather(futures)
    except KilledWorker as error:
        raise UserError(
            f"the Dask workers died running {what}, each worker that tried a part of it "
            f"({type(error).__name__}): most often out of memory; give each worker more (dask "
            "worker --memory-limit), or make the parts smaller (--part-mb)"
        ) from None


def named_sources(
    parts: Sequence[FilePart], rejected: Sequence[pd.DataFrame], lightcurve_paths: Sequence[Path]
) -> list[pd.DataFrame]:
    """Each part's rejections (`source`: its file's name, all a worker sees) with the file named
    as without Dask (`streaming.source_names` of every input: two files of one name by path).
    Rows of another source (the model's, `scoring.MODEL_SOURCE`) keep theirs."""
    names = dict(
        zip(
            (Path(p).absolute() for p in lightcurve_paths),
            streaming.source_names(lightcurve_paths),
            strict=True,
        )
    )
    named = []
    for part, frame in zip(parts, rejected, strict=True):
        if len(frame):
            own = frame["source"] == part.path.name
            name = names.get(part.path, part.path.name)
            frame = frame.assign(source=frame["source"].where(~own, name))
        named.append(frame)
    return named


def driver_rejections(
    index: streaming.MetaIndex,
    parts: Sequence[FilePart],
    seen: Sequence[np.ndarray],
    rejected: Sequence[pd.DataFrame],
    lightcurve_paths: Sequence[Path],
) -> list[pd.DataFrame]:
    """A Dask run's rejections, completed by the driver: each part's, its file named as without
    Dask (`named_sources`), and the metadata's objects that no part held. The parts' objects
    (`seen`) are marked in `index` first (`check_unique`: an object in two parts is refused)."""
    index.mark_seen(check_unique(parts, seen))
    own = named_sources(parts, rejected, lightcurve_paths)
    return [frame for frame in own if len(frame)] + [index.unseen_rejections()]


def check_unique(parts: Sequence[FilePart], seen: Sequence[np.ndarray]) -> np.ndarray:
    """All object ids of all parts; a UserError if an object is in two of them."""
    ids = np.concatenate([np.zeros(0, np.int64), *seen])
    owner = np.repeat(np.arange(len(seen)), [s.size for s in seen])
    order = np.argsort(ids, kind="stable")
    twice = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if twice.size:
        first, second = owner[order][twice[0]], owner[order][twice[0] + 1]
        raise UserError(
            f"object {ids[order][twice[0]]} is in {_describe(parts[first])} and in "
            f"{_describe(parts[second])}: light-curve files must be grouped by object_id (sort the "
            "file by object_id), and an object must not be in two files"
        )
    return ids
