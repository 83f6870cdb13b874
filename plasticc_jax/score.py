"""`plasticc-jax score`: score new light-curve files with a trained and evaluated run.

Needs only the run directory: the VAE (checkpoint, config.json, stats.json) and the anomaly
detector that `evaluate` saved in `models/`. Inputs stream through in chunks
(`streaming.stream_grids`), so memory stays bounded for files of any size, and each chunk takes
the evaluation's scoring path (`scoring`); the table is written in two passes (scores, then ranks
over all objects) through a temporary Parquet file.

Output: the table at `output` (`.parquet`, or `.csv` / `.csv.gz`), with the columns of the
evaluation table (`scoring.score_table`: split is `new`, rank is among all scored objects, 1 =
most anomalous, `flagged` = above the run's threshold), and `<output name>.rejected.csv` listing
every input object that could not be scored and why. Every input object is in exactly one of the
two. With `dask`, the work runs on a Dask cluster (`plasticc_jax.distributed`) and the table is
a Parquet dataset (a folder) with the same rows.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import gridding, scoring
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path
from plasticc_jax.scoring import Scorer
from plasticc_jax.streaming import stream_grids

log = logging.getLogger(__name__)

SPLIT_NAME = "new"
_FORMATS = (".parquet", ".csv", ".csv.gz")


def _format(output: Path) -> str:
    name = output.name.lower()
    for suffix in _FORMATS:
        if name.endswith(suffix):
            return suffix
    raise UserError(
        f"--output {output}: use a name ending in {', '.join(_FORMATS)} (the suffix picks the "
        "format)"
    )


def rejected_path(output: Path) -> Path:
    """`scores.parquet` -> `scores.rejected.csv` (beside the table)."""
    stem = output.name[: -len(_format(output))]
    return output.with_name(f"{stem}.rejected.csv")


def write_unranked(
    grids: Iterable[tuple[LightCurveArrays, pd.DataFrame]], scorer: Scorer, path: Path
) -> tuple[np.ndarray, list[pd.DataFrame]]:
    """Score gridded chunks (`stream_grids`) into a Parquet table without `rank`, chunk by chunk.

    Returns:
        The objects' `anomaly_score`s (n,) in table order, and the chunks' rejection frames.
    """
    score_parts: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        for arrays, rejected in grids:
            if len(rejected):
                rejected_parts.append(rejected)
            if not len(arrays):
                continue
            frame = scorer.score_arrays(arrays, SPLIT_NAME)
            table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            score_parts.append(frame["anomaly_score"].to_numpy())
        if writer is None:  # nothing could be scored: an empty table with the same columns
            n_times = scorer.config.data.n_time_bins
            empty = scorer.score_arrays(gridding.empty_arrays(n_times), SPLIT_NAME)
            writer = pq.ParquetWriter(path, pa.Table.from_pandas(empty).schema)
    finally:
        if writer is not None:
            writer.close()
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    return scores, rejected_parts


def score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None = None,
    *,
    dask: str | None = None,
    part_mb: float | None = None,
) -> Path:
    """Score light-curve files with a trained, evaluated run; returns the output path.

    Args:
        run_dir: run directory (after `train` and `evaluate`).
        lightcurve_paths: light-curve CSV(.gz) files, each grouped by object_id (PLAsTiCC
            Kaggle or unblinded format).
        metadata_paths: their metadata files. Labels, if present (`target`/`true_target`), are
            copied into the table; they never enter the score.
        output: the table; `.parquet`, `.csv` or `.csv.gz` (with `dask`: `.parquet`, a folder).
        workers: threads gridding the input (None: the run's `data.workers`; with `dask`: 1 per
            task).
        dask: run on this Dask cluster (`distributed.connect`: a scheduler address, a scheduler
            file, or `local:N`); None: in this process.
        part_mb: with `dask`, MB of plain CSV per task (`distributed.score`).

    Raises:
        UserError: not a trained and evaluated run, a missing file, an unknown output format, or
            bad input (naming the file and line).
    """
    run_dir, output = Path(run_dir), Path(output)
    fmt = _format(output)
    for path in [*lightcurve_paths, *metadata_paths]:
        if not Path(path).is_file():
            raise UserError(f"input file {path} does not exist")
    if dask is not None:
        from plasticc_jax import distributed

        return distributed.score(
            dask, run_dir, lightcurve_paths, metadata_paths, output, workers, part_mb=part_mb
        )
    scorer = Scorer.cached(run_dir)
    detector = scorer.detector
    output.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    # The scratch table lives beside the output (same disk) and is removed whatever happens.
    with tempfile.TemporaryDirectory(prefix=".tmp-score-", dir=output.parent) as scratch_dir:
        scratch = Path(scratch_dir) / "unranked.parquet"
        grids = stream_grids(lightcurve_paths, metadata_paths, scorer.config.data, workers)
        scores, rejected_parts = write_unranked(grids, scorer, scratch)
        write_ranked(scratch, scoring.ranks(scores), output, fmt)

    rejected = (
        pd.concat(rejected_parts, ignore_index=True)
        if rejected_parts
        else pd.DataFrame({"object_id": [], "reason": [], "source": []})
    )
    with atomic_path(rejected_path(output)) as tmp:
        rejected.to_csv(tmp, index=False)
    n_flagged = int(detector.flag(scores).sum())
    log.info(
        "scored %d objects in %.1f s (%d flagged at the run's %.2g false-positive rate), "
        "%d rejected; wrote %s and %s",
        scores.size,
        time.perf_counter() - start,
        n_flagged,
        detector.target_fpr,
        len(rejected),
        output,
        rejected_path(output),
    )
    return output


def write_ranked(scratch: Path, rank: np.ndarray, output: Path, fmt: str) -> None:
    """Copy the scratch table to `output` batch by batch, inserting `rank` where the score table
    has it (`scoring.rank_position`)."""
    source = pq.ParquetFile(scratch)
    schema = ranked_schema(source.schema_arrow)
    position = schema.get_field_index("rank")
    with atomic_path(output) as tmp:
        if fmt == ".parquet":
            writer = pq.ParquetWriter(tmp, schema)
        else:
            sink = pa.CompressedOutputStream(str(tmp), "gzip") if fmt == ".csv.gz" else str(tmp)
            writer = pa_csv.CSVWriter(sink, schema)
        done = 0
        with writer:
            for batch in source.iter_batches():
                column = pa.array(rank[done : done + batch.num_rows])
                batch = pa.RecordBatch.from_arrays(
                    [*batch.columns[:position], column, *batch.columns[position:]], schema=schema
                )
                writer.write_batch(batch)
                done += batch.num_rows
            if done == 0:
                writer.write_table(schema.empty_table())
        if fmt == ".csv.gz":
            sink.close()


def ranked_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of an unranked score table with `rank` (int64) where the table has it."""
    return schema.insert(scoring.rank_position(schema.names), pa.field("rank", pa.int64()))
