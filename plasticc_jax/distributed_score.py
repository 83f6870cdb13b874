"""`plasticc-jax score --dask`: score light-curve files on a Dask cluster.

Run by `score.score` after the checks of the single-process path (inputs, output, metadata, the
run's provenance), holding the run's shared lock; the cluster, the parts and the workers' metadata
are `plasticc_jax.distributed`'s. The workers score with the run the driver loaded and checked,
sent with the tasks (`distributed.shipped`): no worker reads the run's files, so every part is
scored by the same model, and no worker restores a checkpoint. Pass 1 writes
each part's table without ranks on the single-process scoring path (`score_output.write_unranked`:
only the fused components, objects that cannot be scored rejected); the driver ranks all the
scores in input order (`scoring.ranks`: the single-process ranks, ties included), and pass 2
writes each part's table with its ranks. Everything is written into a scratch folder beside the
output and moved into place only when complete (the old rejections out, the dataset in, then its
rejections): the output is
a Parquet dataset, a folder holding `part-<i>.parquet` and `_manifest.json`, and
`pd.read_parquet(output)` is the single-process table, row for row.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plasticc_jax import distributed, interrupts, scoring, streaming
from plasticc_jax.io_utils import (
    _UMASK,
    atomic_path,
    atomic_write_text,
    remove_unfinished_writes,
    scratch_dir,
    stale_scratch,
)
from plasticc_jax.lightcurve_rows import FilePart
from plasticc_jax.score_output import (
    MANIFEST,
    SCRATCH_PREFIX,
    by_reason,
    check_accounting,
    ranked_schema,
    refuse_if_none_scored,
    rejected_path,
    warn_if_flagged_far_above,
    warn_never_detected,
    warn_trained_on,
    write_ranked,
    write_unranked,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ScoreTask:
    part: FilePart
    stamp: distributed.MetadataStamp  # the metadata files
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
    never_detected: int  # scored objects never detected (`write_unranked`)
    schema: pa.Schema | None  # of the unranked table; None when it is empty


def _score_part(task: _ScoreTask, scorer: scoring.Scorer) -> _ScoredPart:
    """Pass 1 (on a worker): grid and score one part into its unranked table, on the path of
    `plasticc-jax score` (`score_output.write_unranked`, `scoring.Scorer.table`), with the
    driver's `scorer` (one object per worker: its model is compiled once there)."""
    index, _, _ = distributed.worker_metadata(task.stamp, None)
    path = Path(task.unranked)

    def consume(grids: Iterator) -> tuple[np.ndarray, np.ndarray, list[pd.DataFrame], int, int]:
        with atomic_path(path) as tmp:
            return write_unranked(grids, scorer, tmp)

    (scores, ids, rejected, never_detected, flagged), seen, rows = distributed.run_part(
        task.part, index, scorer.config.data, task.workers, consume
    )
    schema = pq.read_schema(path) if scores.size else None
    return _ScoredPart(
        scores,
        ids,
        seen,
        streaming.concat_rejections(rejected),
        rows,
        flagged,
        never_detected,
        schema,
    )


def _rank_part(args: tuple[str, np.ndarray, str, pa.Schema]) -> None:
    """Pass 2 (on a worker): the part's table with its ranks, written atomically."""
    unranked, rank, output, schema = args
    with atomic_path(Path(output)) as tmp:
        if rank.size:
            write_ranked(Path(unranked), rank, tmp, ".parquet")
        else:  # the columns and types of the other parts
            pq.write_table(schema.empty_table(), tmp)


def _install(dataset: Path, output: Path, scratch: Path) -> None:
    """Put the complete dataset at `output`, moving an old one (or file) out of the way into
    the scratch folder (removed with it; after a kill in between, `_restore_previous` puts it
    back)."""
    previous = _previous(scratch, output)
    moved = output.is_dir() and not output.is_symlink()
    if moved:
        os.rename(output, previous)
    elif output.exists() or output.is_symlink():
        output.unlink()
    try:
        os.rename(dataset, output)
    except BaseException:  # a Ctrl-C or SIGTERM in between: the old one back, not neither
        if moved:
            os.rename(previous, output)
        raise


def _previous(scratch: Path, output: Path) -> Path:
    """Where `_install` keeps the output it replaces (named after it: several outputs may share
    a folder, and their scratch folders)."""
    return scratch / f"previous-{output.name}"


def _restore_previous(output: Path) -> None:
    """A kill -9 between `_install`'s two renames leaves no dataset at `output` and the old one
    in a scratch folder that the next run clears (a review lost it so): put it back first."""
    if output.exists() or output.is_symlink():
        return
    for folder in stale_scratch(output.parent, SCRATCH_PREFIX):
        previous = _previous(folder, output)
        if previous.is_dir():
            os.rename(previous, output)
            log.warning("put back %s, which an interrupted run had moved out of its place", output)
            return


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
    while it holds the run's shared lock; the workers score with `scorer`, sent to them.

    Args:
        address: the cluster (`connect`).
        scorer: the run, loaded and checked (`scoring.Scorer.load`).
        lightcurve_paths, metadata_paths: as `score.score`; metadata: the metadata files, read.
        output: the table, a Parquet dataset: a folder named `*.parquet` holding
            `part-<i>.parquet` (in input order) and `_manifest.json` (the parts, counts and
            timings). `<stem>.rejected.csv` beside it, as without Dask. Both are written in a
            scratch folder beside `output` and moved into place only when complete, as without
            Dask: the old rejections removed first, then the dataset in, then its rejections.
        workers: threads gridding each part (None: 1; a worker runs one part per thread).
        part_mb: MB of plain CSV per task (None: `distributed.DEFAULT_PART_MB`).

    Returns:
        `output`.

    Raises:
        UserError: as `score.score`, and `connect`'s errors.
    """
    start = time.perf_counter()
    output, run_dir = Path(output).absolute(), scorer.run_dir.resolve()
    fingerprint = scoring.run_fingerprint(run_dir)
    parts = distributed.plan_parts(lightcurve_paths, part_mb)
    stamp = distributed.metadata_stamp(metadata_paths)
    output.parent.mkdir(parents=True, exist_ok=True)
    _restore_previous(output)
    with scratch_dir(output.parent, SCRATCH_PREFIX) as scratch:
        # Workers (maybe other users on other machines) write here: the usual permissions.
        os.chmod(scratch, 0o777 & ~_UMASK)
        dataset, unranked = scratch / "dataset", scratch / ".unranked"
        dataset.mkdir()
        unranked.mkdir()
        names = [f"part-{i:05d}.parquet" for i in range(len(parts))]
        tasks = [
            _ScoreTask(p, stamp, str(unranked / n), workers or 1)
            for p, n in zip(parts, names, strict=True)
        ]
        seconds: dict[str, float] = {"plan": time.perf_counter() - start}
        with distributed.connect(address) as client:
            n_workers = len(client.scheduler_info()["workers"])
            log.info("scoring %d parts on %d Dask workers", len(parts), n_workers)
            tick = time.perf_counter()
            model = distributed.shipped(client, scorer, "run")
            seconds["send_run"] = time.perf_counter() - tick
            tick = time.perf_counter()
            with distributed.submitted(client, _score_part, tasks, "score", model) as futures:
                # While the workers score: the metadata index, for the objects no part holds.
                index = streaming.MetaIndex(metadata, names=streaming.source_names(metadata_paths))
                seconds["driver_metadata"] = time.perf_counter() - tick
                results = distributed.gathered(client, futures, "the scoring")
            seconds["score_parts"] = time.perf_counter() - tick

            # The driver's share: object ids checked, metadata without light curves, ranks.
            tick = time.perf_counter()
            rejected = streaming.concat_rejections(
                distributed.driver_rejections(
                    index,
                    parts,
                    [r.seen for r in results],
                    [r.rejected for r in results],
                    lightcurve_paths,
                )
            )
            check_accounting(len(metadata), [r.ids for r in results], rejected)
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
            with distributed.submitted(client, _rank_part, rank_tasks, "rank") as futures:
                distributed.gathered(client, futures, "the ranking")
            seconds["rank_parts"] = time.perf_counter() - tick

        tick = time.perf_counter()
        remove_unfinished_writes(dataset)  # from attempts on workers that died
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
        # A Ctrl-C whose exception was swallowed (in JAX's garbage collection): the old output
        # stays, rather than replaced and then reported interrupted (found by an audit).
        interrupts.check()
        rejected_path(output).unlink(missing_ok=True)  # first, as `score.score` does
        _install(dataset, output, scratch)
        os.replace(rejected_tmp, rejected_path(output))
    log.info(
        "scored %d objects in %.1f s on %d Dask workers (%d flagged at the run's %.2g "
        "false-positive rate), %d rejected%s; wrote %s and %s",
        scores.size,
        seconds["total"],
        n_workers,
        flagged,
        scorer.detector.target_fpr,
        len(rejected),
        f" ({by_reason(rejected)})" if len(rejected) else "",
        output,
        rejected_path(output),
    )
    warn_never_detected(sum(r.never_detected for r in results))
    warn_trained_on(run_dir, np.concatenate([np.zeros(0, np.int64), *(r.ids for r in results)]))
    warn_if_flagged_far_above(flagged, scores.size, scorer.detector.target_fpr)
    refuse_if_none_scored(scores.size, rejected, output)
    return output
