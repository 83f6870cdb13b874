"""Prepare and score on a Dask cluster, with the results of one machine.

`plasticc-jax prepare --dask ADDRESS` and `plasticc-jax score --dask ADDRESS` run the code of the
single-process path, spread over the workers of a Dask cluster (`connect`: a scheduler address, a
scheduler file, or `local:N` for a `distributed.LocalCluster` of N one-thread worker processes on
this machine).

**Partitions.** The light-curve files are cut into parts of whole objects (`readers.split_file`):
a plain CSV file at byte offsets about `part_mb` apart, each cut moved to the next object
boundary; a gzip file is one part (it cannot be entered in the middle). One task per part streams
it in chunks of `data.chunk_rows` rows, exactly as the single-process path streams a file, so a
worker's memory is bounded by the chunk size, plus the model and the metadata.

**Workers.** A worker process reads the metadata files and loads the run once, for its first
part (`scoring.Scorer.cached`; the metadata likewise), and reuses them for the next parts. Every
worker needs the same plasticc_jax (the same container image) and the inputs and outputs at the
same paths (shared storage); `connect` checks the version.

**Outputs.** Every part writes its own output atomically under a name fixed by its position in
the input, so a task that runs twice (its worker died and Dask ran it again) writes the same file
again: no object is lost or duplicated. The driver gathers each part's small summary (its object
ids, scores and rejections), checks that no object is in two parts (files must be grouped by
object), lists the metadata objects that no part saw (as the single-process stream does, and in
the same order), and checks that every input object is scored or rejected exactly once.

- `score`: run by `score.score` after the checks of the single-process path (inputs, output,
  metadata, the run's provenance), holding the run's shared lock; each worker loads and checks
  the run again (`scoring.Scorer.cached`) and refuses it if it changed since the driver checked
  it. Pass 1 writes each part's table without ranks on the single-process scoring path
  (`score.write_unranked`: only the fused components, objects that cannot be scored rejected);
  the driver ranks all the scores in input order (`scoring.ranks`: the single-process ranks,
  ties included), and pass 2 writes each part's table with its ranks. Everything is written
  into a scratch folder beside the output and moved into place only when complete (the
  rejections, then the dataset): the output is a Parquet dataset, a folder holding
  `part-<i>.parquet` and `_manifest.json`, and `pd.read_parquet(output)` is the
  single-process table, row for row.
- `prepare_shards`: each part writes its shards (`shards/<split>-p<i>-<j>.npz`); the manifest
  lists them in input order, so every split holds the objects of a single-process prepare in the
  same order, and `prepare.stats_from_shards` reproduces its statistics bit for bit.

**Faults.** When a worker dies (killed, out of memory, its machine lost) the scheduler runs its
tasks again elsewhere, or on the worker that replaces it (up to
`distributed.scheduler.allowed-failures` deaths per task, 3 by default). A task that raises (bad
input: a `UserError`) stops the run with that error.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plasticc_jax import readers, scoring, streaming
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import SPLITS
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import _UMASK, atomic_path, atomic_write_text, scratch_dir

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

DEFAULT_PART_MB = 64.0
MANIFEST = "_manifest.json"
CONNECT_TIMEOUT_S = 20
WORKER_WAIT_S = 120
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
    if address.startswith("local") and (local is None or int(local[1]) < 1):
        raise UserError(f"--dask {address}: use local:N with N >= 1 worker processes")
    if local:
        n_workers = int(local[1])
        log.info("starting a local Dask cluster: %d worker processes, 1 thread each", n_workers)
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    if address.endswith(".json") and not Path(address).is_file():
        raise UserError(f"--dask {address}: no such scheduler file")
    try:
        if address.endswith(".json"):
            client = Client(scheduler_file=address, timeout=CONNECT_TIMEOUT_S)
        else:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise UserError(
            f"--dask {address}: cannot reach a Dask scheduler there ({error}); give its address "
            "(tcp://host:8786), a scheduler file, or local:N"
        ) from None
    with client:
        _check_workers(client, address)
        yield client


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
            f"workers with `dask worker {address}` (README: Beyond one machine)"
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


# ---------------------------------------------------------------------------------------------
# Parts of the input, and what a worker keeps between parts.


def plan_parts(lightcurve_paths: Sequence[Path], part_mb: float | None) -> list[readers.FilePart]:
    """The light-curve files cut into parts of whole objects of about `part_mb` MB, in input
    order (`readers.split_file`; a gzip file is one part)."""
    part_mb = DEFAULT_PART_MB if part_mb is None else part_mb
    if not part_mb > 0:
        raise UserError(f"--part-mb {part_mb}: give a size above 0 (MB of CSV per task)")
    part_bytes = max(int(part_mb * 1e6), 1)
    return [part for path in lightcurve_paths for part in readers.split_file(path, part_bytes)]


def _describe(part: readers.FilePart) -> str:
    if part.start is None:
        return str(part.path)
    return f"{part.path} (bytes {part.start}-{part.stop})"


def _stamp(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times: the key of a worker's cached metadata."""
    stamp = []
    for path in paths:
        stat = Path(path).stat()
        stamp.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return tuple(stamp)


@functools.lru_cache(maxsize=1)
def _worker_metadata(
    stamp: tuple[tuple[str, int, int], ...], data: DataConfig | None
) -> tuple[streaming.MetaIndex, np.ndarray | None, np.ndarray | None]:
    """The metadata index, read once per worker process (per files and config).

    With `data` (prepare), objects whose class the protocol leaves out are excluded, and every
    object's split code (`prepare.split_objects`) is returned by object_id: (index, sorted ids,
    sorted codes); without it, (index, None, None).
    """
    metadata = readers.read_metadata_files([Path(path) for path, _, _ in stamp])
    if data is None:
        return streaming.MetaIndex(metadata), None, None
    from plasticc_jax.prepare import split_objects

    ids = metadata["object_id"].to_numpy()
    codes, _ = split_objects(ids, metadata["target"].to_numpy(), data)
    order = np.argsort(ids, kind="stable")
    return streaming.MetaIndex(metadata, ids[codes < 0]), ids[order], codes[order]


def _run_part(
    part: readers.FilePart,
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
    try:
        grids = streaming.stream_grids(
            [part], [], data, workers, index=seen, file_rows=rows, stages=stages
        )
        result = consume(grids)
    except UserError:
        first_row = 0 if part.start is None else readers.count_rows(part)
        if first_row == part.first_row:
            raise
        exact = dataclasses.replace(part, first_row=first_row)
        for _ in streaming.stream_grids([exact], [], data, 1, index=index.fresh()):
            pass
        raise
    return result, seen.seen_ids(), rows[0] if rows else 0


@contextmanager
def _submitted(client: Client, fn: Callable, tasks: list, name: str) -> Iterator[list[Future]]:
    """`fn` submitted for every task (one Dask task each, in task order, named
    `plasticc-<name>-<run token>-<i>`); those still running are cancelled on exit."""
    token = uuid.uuid4().hex[:8]
    keys = [f"plasticc-{name}-{token}-{i:05d}" for i in range(len(tasks))]
    futures = client.map(fn, tasks, key=keys, pure=False)
    try:
        yield futures
    finally:
        client.cancel(futures)


def _check_unique(parts: Sequence[readers.FilePart], seen: Sequence[np.ndarray]) -> np.ndarray:
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


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({"object_id": np.zeros(0, np.int64), "reason": [], "source": []})
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# score --dask


@dataclass(frozen=True)
class _ScoreTask:
    part: readers.FilePart
    stamp: tuple[tuple[str, int, int], ...]  # the metadata files
    run_dir: str
    fingerprint: str
    unranked: str  # the part's table without ranks (pass 1)
    workers: int


@dataclass(frozen=True)
class _ScoredPart:
    scores: np.ndarray  # (n,) anomaly_score, in table order
    ids: np.ndarray  # (n,) the scored objects' ids, in table order
    seen: np.ndarray  # every object id of the part
    rejected: pd.DataFrame
    rows: int
    flagged: int
    schema: pa.Schema | None  # of the unranked table; None when it is empty


def _score_part(task: _ScoreTask) -> _ScoredPart:
    """Pass 1 (on a worker): grid and score one part into its unranked table, on the path of
    `plasticc-jax score` (`score.write_unranked`, `scoring.Scorer.table`), with the run loaded
    and checked once per worker (and refused if it is no longer the run the driver checked)."""
    from plasticc_jax.score import write_unranked

    scorer = scoring.Scorer.cached(task.run_dir, task.fingerprint)
    index, _, _ = _worker_metadata(task.stamp, None)
    path = Path(task.unranked)

    def consume(grids: Iterator) -> tuple[np.ndarray, np.ndarray, list[pd.DataFrame]]:
        with atomic_path(path) as tmp:
            return write_unranked(grids, scorer, tmp)

    (scores, ids, rejected), seen, rows = _run_part(
        task.part, index, scorer.config.data, task.workers, consume
    )
    flagged = int(scorer.detector.flag(scores).sum())
    schema = pq.read_schema(path) if scores.size else None
    return _ScoredPart(scores, ids, seen, _concat(rejected), rows, flagged, schema)


def _rank_part(args: tuple[str, np.ndarray, str, pa.Schema]) -> None:
    """Pass 2 (on a worker): the part's table with its ranks, written atomically."""
    from plasticc_jax.score import write_ranked

    unranked, rank, output, schema = args
    with atomic_path(Path(output)) as tmp:
        if rank.size:
            write_ranked(Path(unranked), rank, tmp, ".parquet")
        else:  # the columns and types of the other parts
            pq.write_table(schema.empty_table(), tmp)


_OURS = re.compile(r"part-\d+\.parquet|\.tmp-.*|\.unranked|" + re.escape(MANIFEST))


def check_dataset_folder(output: Path) -> None:
    """`output` may become a dataset of ours: it does not exist, is a file, or is a folder that
    holds only a dataset of ours (which the new one replaces when complete).

    Raises:
        UserError: `output` is a folder that holds other files (not a dataset of ours).
    """
    if output.is_dir() and not output.is_symlink():
        others = sorted(p.name for p in output.iterdir() if not _OURS.fullmatch(p.name))
        if others:
            raise UserError(
                f"--output {output} is a folder holding other files ({', '.join(others[:3])}): "
                "give another name, or remove it"
            )
    elif output.is_symlink() and output.is_dir():
        raise UserError(f"--output {output} is a link to a folder: give another name")


def _install(dataset: Path, output: Path, scratch: Path) -> None:
    """Put the complete dataset at `output`, moving an old one (or file) out of the way into
    the scratch folder (removed with it)."""
    if output.is_dir() and not output.is_symlink():
        os.rename(output, scratch / "previous")
    elif output.exists() or output.is_symlink():
        output.unlink()
    os.rename(dataset, output)


def score(
    address: str,
    scorer: scoring.Scorer,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    metadata: pd.DataFrame,
    output: Path,
    workers: int | None = None,
    *,
    part_mb: float | None = None,
) -> Path:
    """`plasticc-jax score --dask`: score light-curve files on a Dask cluster.

    Called by `score.score` after its checks (the output, the inputs, the metadata, the run),
    while it holds the run's shared lock; the workers load and check the run again
    (`scoring.Scorer.cached`) and refuse it if it changed since.

    Args:
        address: the cluster (`connect`).
        scorer: the run, loaded and checked (`scoring.Scorer.load`).
        lightcurve_paths, metadata_paths: as `score.score`; metadata: the metadata files, read.
        output: the table, a Parquet dataset: a folder named `*.parquet` holding
            `part-<i>.parquet` (in input order) and `_manifest.json` (the parts, counts and
            timings). `<stem>.rejected.csv` beside it, as without Dask. Both are written in a
            scratch folder beside `output` and moved into place only when complete (the
            rejections first), as without Dask.
        workers: threads gridding each part (None: 1; a worker runs one part per thread).
        part_mb: MB of plain CSV per task (None: `DEFAULT_PART_MB`).

    Returns:
        `output`.

    Raises:
        UserError: as `score.score`, and `connect`'s errors.
    """
    from plasticc_jax.score import (
        SCRATCH_PREFIX,
        check_accounting,
        ranked_schema,
        rejected_path,
    )

    start = time.perf_counter()
    output, run_dir = Path(output).absolute(), scorer.run_dir.resolve()
    fingerprint = scoring.run_fingerprint(run_dir)
    parts = plan_parts(lightcurve_paths, part_mb)
    stamp = _stamp(metadata_paths)
    output.parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir(output.parent, SCRATCH_PREFIX) as scratch:
        # Workers (maybe other users on other machines) write here: the usual permissions.
        os.chmod(scratch, 0o777 & ~_UMASK)
        dataset, unranked = scratch / "dataset", scratch / ".unranked"
        dataset.mkdir()
        unranked.mkdir()
        names = [f"part-{i:05d}.parquet" for i in range(len(parts))]
        tasks = [
            _ScoreTask(p, stamp, str(run_dir), fingerprint, str(unranked / n), workers or 1)
            for p, n in zip(parts, names, strict=True)
        ]
        seconds: dict[str, float] = {"plan": time.perf_counter() - start}
        with connect(address) as client:
            n_workers = len(client.scheduler_info()["workers"])
            log.info("scoring %d parts on %d Dask workers", len(parts), n_workers)
            tick = time.perf_counter()
            with _submitted(client, _score_part, tasks, "score") as futures:
                # While the workers score: the metadata index, for the objects no part holds.
                index = streaming.MetaIndex(metadata)
                seconds["driver_metadata"] = time.perf_counter() - tick
                results = client.gather(futures)
            seconds["score_parts"] = time.perf_counter() - tick

            # The driver's share: object ids checked, metadata without light curves, ranks.
            tick = time.perf_counter()
            index.mark_seen(_check_unique(parts, [r.seen for r in results]))
            rejected = _concat(
                [r.rejected for r in results if len(r.rejected)]
                + [index.unseen_rejections(metadata_paths)]
            )
            check_accounting(metadata, [r.ids for r in results], rejected)
            scores = np.concatenate([np.zeros(0), *(r.scores for r in results)])
            bounds = np.cumsum([r.scores.size for r in results])[:-1]
            ranks = np.split(scoring.ranks(scores), bounds)
            schemas = [r.schema for r in results if r.schema is not None]
            # With no object scored anywhere, the first part's empty table gives the columns.
            schema = ranked_schema(schemas[0] if schemas else pq.read_schema(tasks[0].unranked))
            seconds["driver"] = time.perf_counter() - tick

            tick = time.perf_counter()
            rank_tasks = [
                (t.unranked, r, str(dataset / n), schema)
                for t, r, n in zip(tasks, ranks, names, strict=True)
            ]
            with _submitted(client, _rank_part, rank_tasks, "rank") as futures:
                client.gather(futures)
            seconds["rank_parts"] = time.perf_counter() - tick

        tick = time.perf_counter()
        for leftover in dataset.glob(".tmp-*"):  # from attempts on workers that died
            leftover.unlink()
        rejected_tmp = scratch / "rejected.csv"
        rejected.to_csv(rejected_tmp, index=False)
        flagged = sum(r.flagged for r in results)
        seconds["finish"] = time.perf_counter() - tick
        seconds["total"] = time.perf_counter() - start
        manifest = {
            "table": "the score table of `plasticc-jax score`: pd.read_parquet(<this folder>)",
            "run": str(run_dir),
            "run_fingerprint": fingerprint,
            "metadata": [str(Path(p).absolute()) for p in metadata_paths],
            "parts": [
                {
                    "file": name,
                    "source": str(part.path.absolute()),
                    "bytes": None if part.start is None else [part.start, part.stop],
                    "rows": r.rows,
                    "objects": int(r.scores.size),
                }
                for name, part, r in zip(names, parts, results, strict=True)
            ],
            "objects": int(scores.size),
            "flagged": flagged,
            "rejected": len(rejected),
            "rejected_file": rejected_path(output).name,
            "dask": {"address": address, "workers": n_workers},
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        }
        atomic_write_text(dataset / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        os.replace(rejected_tmp, rejected_path(output))
        _install(dataset, output, scratch)
    log.info(
        "scored %d objects in %.1f s on %d Dask workers (%d flagged at the run's %.2g "
        "false-positive rate), %d rejected; wrote %s and %s",
        scores.size,
        seconds["total"],
        n_workers,
        flagged,
        scorer.detector.target_fpr,
        len(rejected),
        output,
        rejected_path(output),
    )
    return output


# ---------------------------------------------------------------------------------------------
# prepare --dask


@dataclass(frozen=True)
class _PrepareTask:
    part: readers.FilePart
    stamp: tuple[tuple[str, int, int], ...]  # the metadata files
    data: DataConfig
    out: str
    prefix: str


@dataclass(frozen=True)
class _PreparedPart:
    shards: dict[str, list[str]]
    counts: dict[str, Counter]
    stage_rows: dict[str, Counter]
    seen: np.ndarray
    rejected: pd.DataFrame
    rows: int


def _prepare_part(task: _PrepareTask) -> _PreparedPart:
    """On a worker: grid one part and write its shards."""
    from plasticc_jax.prepare import write_shards

    index, sorted_ids, sorted_codes = _worker_metadata(task.stamp, task.data)

    stage_rows: dict[str, Counter] = {s: Counter() for s in SPLITS}

    def consume(grids: Iterator) -> tuple:
        return write_shards(
            grids,
            Path(task.out),
            task.data,
            sorted_ids,
            sorted_codes,
            prefix=task.prefix,
            stage_rows=stage_rows,
        )

    (shards, counts, rejected), seen, rows = _run_part(
        task.part, index, task.data, 1, consume, stages=task.data.stages
    )
    return _PreparedPart(shards, counts, stage_rows, seen, _concat(rejected), rows)


def prepare_shards(
    address: str,
    inputs: readers.InputFiles,
    metadata: pd.DataFrame,
    exclude: np.ndarray,
    out: Path,
    data: DataConfig,
    *,
    part_mb: float | None = None,
    stage_rows: dict[str, Counter] | None = None,
) -> tuple[dict[str, list[str]], dict[str, Counter], list[pd.DataFrame], list[int]]:
    """The gridding and shard writing of `prepare`, on a Dask cluster.

    Args:
        address: the cluster (`connect`).
        inputs: the input files; metadata: their metadata (read by the driver); exclude: the ids
            of objects that the protocol leaves out; out: the dataset folder; data: the resolved
            data config.
        part_mb: MB of plain CSV per task (None: `DEFAULT_PART_MB`).
        stage_rows: if given, receives the rows per split and stage (`prepare.write_shards`).

    Returns:
        As `prepare.write_shards` (shard names in input order, counts, rejection frames, the
        last one listing the metadata objects without light curve), and the rows of each
        light-curve file.
    """
    start = time.perf_counter()
    parts = plan_parts(inputs.lightcurves, part_mb)
    stamp = _stamp(inputs.metadata)
    tasks = [_PrepareTask(p, stamp, data, str(out), f"p{i:05d}-") for i, p in enumerate(parts)]
    with connect(address) as client:
        n_workers = len(client.scheduler_info()["workers"])
        log.info("gridding %d parts on %d Dask workers", len(parts), n_workers)
        with _submitted(client, _prepare_part, tasks, "prepare") as futures:
            index = streaming.MetaIndex(metadata, exclude)
            results = client.gather(futures)
    index.mark_seen(_check_unique(parts, [r.seen for r in results]))
    shards = {s: [name for r in results for name in r.shards[s]] for s in SPLITS}
    counts = {s: sum((r.counts[s] for r in results), Counter()) for s in SPLITS}
    if stage_rows is not None:
        for s in SPLITS:
            for r in results:
                stage_rows[s].update(r.stage_rows[s])
    rejected = [r.rejected for r in results if len(r.rejected)]
    rejected.append(index.unseen_rejections(inputs.metadata))
    rows = Counter()
    for part, result in zip(parts, results, strict=True):
        rows[part.path] += result.rows
    for leftover in (out / "shards").glob(".tmp-*"):  # from attempts on workers that died
        leftover.unlink()
    log.info(
        "gridded %d parts on %d Dask workers in %.1f s",
        len(parts),
        n_workers,
        time.perf_counter() - start,
    )
    return shards, counts, rejected, [rows[Path(p)] for p in inputs.lightcurves]
