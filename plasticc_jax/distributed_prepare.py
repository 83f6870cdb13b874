"""`plasticc-jax prepare --dask`: the gridding and shard writing of `prepare` on a Dask cluster.

Run by `prepare.prepare` after its checks, while it holds the dataset's lock; the cluster, the
parts and the workers' metadata are `plasticc_jax.distributed`'s. Each part writes its shards
(`shards/<split>-p<i>-<j>.npz`, `shards.write_shards`); the manifest lists them in input order,
so every split holds the objects of a single-process prepare in the same order, and
`shards.stats_from_shards` reproduces its statistics bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from plasticc_jax import distributed, streaming
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import SPLITS
from plasticc_jax.inputs import InputFiles
from plasticc_jax.io_utils import remove_unfinished_writes
from plasticc_jax.lightcurve_rows import FilePart
from plasticc_jax.shards import write_shards

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PrepareTask:
    part: FilePart
    stamp: distributed.MetadataStamp  # the metadata files
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
    index, sorted_ids, sorted_codes = distributed.worker_metadata(task.stamp, task.data)

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

    (shards, counts, rejected), seen, rows = distributed.run_part(
        task.part, index, task.data, 1, consume, stages=task.data.stages
    )
    return _PreparedPart(
        shards, counts, stage_rows, seen, streaming.concat_rejections(rejected), rows
    )


def prepare_shards(
    client: Client,
    inputs: InputFiles,
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
        client: a client of the cluster (`distributed.connect`; `prepare` connects before it
            clears the old dataset).
        inputs: the input files; metadata: their metadata (read by the driver); exclude: the ids
            of objects that the protocol leaves out; out: the dataset folder; data: the resolved
            data config.
        part_mb: MB of plain CSV per task (None: `distributed.DEFAULT_PART_MB`).
        stage_rows: if given, receives the rows per split and stage (`shards.write_shards`).

    Returns:
        As `shards.write_shards` (shard names in input order, counts, rejection frames, the
        last one listing the metadata objects without light curve), and the rows of each
        light-curve file.
    """
    start = time.perf_counter()
    parts = distributed.plan_parts(inputs.lightcurves, part_mb)
    stamp = distributed.metadata_stamp(inputs.metadata)
    tasks = [_PrepareTask(p, stamp, data, str(out), f"p{i:05d}-") for i, p in enumerate(parts)]
    n_workers = len(client.scheduler_info()["workers"])
    log.info("gridding %d parts on %d Dask workers", len(parts), n_workers)
    with distributed.submitted(client, _prepare_part, tasks, "prepare") as futures:
        index = streaming.MetaIndex(metadata, exclude, streaming.source_names(inputs.metadata))
        results = distributed.gathered(client, futures, "the gridding")
    rejected = distributed.driver_rejections(
        index,
        parts,
        [r.seen for r in results],
        [r.rejected for r in results],
        inputs.lightcurves,
    )
    shards = {s: [name for r in results for name in r.shards[s]] for s in SPLITS}
    counts = {s: sum((r.counts[s] for r in results), Counter()) for s in SPLITS}
    if stage_rows is not None:
        for s in SPLITS:
            for r in results:
                stage_rows[s].update(r.stage_rows[s])
    rows = Counter()
    for part, result in zip(parts, results, strict=True):
        rows[part.path] += result.rows
    remove_unfinished_writes(out / "shards")  # from attempts on workers that died
    log.info(
        "gridded %d parts on %d Dask workers in %.1f s",
        len(parts),
        n_workers,
        time.perf_counter() - start,
    )
    return shards, counts, rejected, [rows[Path(p)] for p in inputs.lightcurves]
