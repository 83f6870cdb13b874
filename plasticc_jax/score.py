"""`plasticc-jax score`: score new light-curve files with a trained and evaluated run.

Needs only the run directory: the VAE (checkpoint, config.json, stats.json) and the anomaly
detector that `evaluate` saved in `models/`, which must have been fitted on the run's best
checkpoint (`provenance`: after more training, run `evaluate` again). Inputs stream through in
chunks (`streaming.stream_grids`), so memory stays bounded for files of any size, and each chunk
takes the evaluation's scoring path (`scoring.Scorer.table`); the table is written in two passes
(scores, then ranks over all objects) through a scratch folder beside the output (removed at the
end, and by the next run after a kill).

Output: the table at `output` (`.parquet`, or `.csv` / `.csv.gz`), with the columns of the
evaluation table (`scoring.score_table`: split is `new`, rank is among all scored objects, 1 =
most anomalous, `flagged` = above the run's threshold), and `<output name>.rejected.csv` listing
every input object that could not be scored and why. Every input object is in exactly one of the
two (checked), and no score is NaN. The output may not be one of the inputs or a file of the run.
With `dask`, the work runs on a Dask cluster (`plasticc_jax.distributed`) after the same checks,
with the same guarantees, and the table is a Parquet dataset (a folder) with the same rows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import gridding, readers, runs, scoring
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.doctor import log_backend
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import folder_lock, refuse_overwrite, scratch_dir
from plasticc_jax.scoring import Scorer
from plasticc_jax.streaming import NO_METADATA, stream_grids

log = logging.getLogger(__name__)

SPLIT_NAME = "new"
_FORMATS = (".parquet", ".csv", ".csv.gz")
SCRATCH_PREFIX = ".tmp-score-"
# The `source` of rejections made after gridding, by the model and the detector.
MODEL_SOURCE = scoring.MODEL_SOURCE


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
    grids: Iterable[tuple[LightCurveArrays, pd.DataFrame]],
    scorer: Scorer,
    path: Path,
    *,
    days_since_detection: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[pd.DataFrame]]:
    """Score gridded chunks (`stream_grids`) into a Parquet table without `rank`, chunk by chunk
    (`Scorer.table`: objects that cannot be scored are rejected, never written with a NaN).
    With `days_since_detection` (`score --as-of`), the table has that column (second), from the
    gridded objects' `stage` (`early.grid_as_of`).

    Returns:
        The objects' `anomaly_score`s (n,) and object ids (n,) in table order, and the rejection
        frames (the stream's and the model's).
    """
    score_parts: list[np.ndarray] = []
    scored_ids: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        for arrays, rejected in grids:
            if len(rejected):
                rejected_parts.append(rejected)
            if not len(arrays):
                continue
            frame, unscorable = scorer.table(arrays, SPLIT_NAME)
            if len(unscorable):
                rejected_parts.append(unscorable)
            if days_since_detection:  # the table keeps the order of the objects it scored
                scored = np.isin(arrays.object_id, frame["object_id"].to_numpy())
                frame.insert(1, "days_since_detection", arrays.stage[scored].astype(np.float64))
            table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            score_parts.append(frame["anomaly_score"].to_numpy())
            scored_ids.append(frame["object_id"].to_numpy(np.int64))
        if writer is None:  # nothing could be scored: an empty table with the same columns
            n_times = scorer.config.data.n_time_bins
            empty, _ = scorer.table(gridding.empty_arrays(n_times), SPLIT_NAME)
            if days_since_detection:
                empty.insert(1, "days_since_detection", np.zeros(0))
            writer = pq.ParquetWriter(path, pa.Table.from_pandas(empty).schema)
    finally:
        if writer is not None:
            writer.close()
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    ids = np.concatenate(scored_ids) if scored_ids else np.zeros(0, np.int64)
    return scores, ids, rejected_parts


def concat_rejected(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One rejection frame (object_id, reason, source) of several, also of none."""
    if not parts:
        return pd.DataFrame({"object_id": np.zeros(0, np.int64), "reason": [], "source": []})
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def refuse_output(
    output: Path, inputs: Sequence[Path], run_dir: Path, *, dataset: bool = False
) -> None:
    """`--output` (and its rejections file) may not replace an input or a file of the run, nor
    lie in the run's folders. With `dataset` (`--dask`) the output is a folder: it may not hold
    an input or the run either.

    Raises:
        UserError: the output would overwrite or hold what the command reads or must keep.
    """
    run_files, run_folders = runs.protected_paths(run_dir)
    kept = [*inputs, *run_files]
    if dataset and output.is_dir():
        target = output.resolve()
        inside = next(
            (p for p in [*kept, *run_folders, run_dir] if p.resolve().is_relative_to(target)),
            None,
        )
        if inside is not None:
            raise UserError(
                f"--output {output} holds {inside}, which this command reads or must keep; "
                "choose another output path"
            )
        from plasticc_jax.distributed import MANIFEST

        outputs = [output / MANIFEST, rejected_path(output)]
    else:
        outputs = [output, rejected_path(output)]
    refuse_overwrite(outputs, kept, run_folders, what="--output")


def score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None = None,
    *,
    dask: str | None = None,
    part_mb: float | None = None,
    as_of: float | None = None,
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
        as_of: score each object with only its observations up to this MJD
            (`early.grid_as_of`); the table then has `days_since_detection` (as_of minus the
            object's first detection; negative: not yet detected). An object without enough
            observations by then is rejected (too few observations). Not with `dask`. Works
            with any run; a run trained with partial light curves (`configs/early.py`) is the
            one meant for it (docs/early.md).

    Raises:
        UserError: not a trained and evaluated run (or one whose detector does not belong to its
            checkpoint, or an incomplete one), a missing file, an unknown output format, an
            output that is an input or lies in the run, or bad input (naming the file and line).
    """
    run_dir, output = Path(run_dir), Path(output)
    fmt = _format(output)
    if dask is not None and as_of is not None:
        raise UserError("--as-of is not supported with --dask: score in this process instead")
    if dask is not None and fmt != ".parquet":
        raise UserError(
            f"--output {output}: with --dask the table is a Parquet dataset (a folder); give a "
            "name ending in .parquet"
        )
    inputs = [Path(p) for p in [*lightcurve_paths, *metadata_paths]]
    for path in inputs:
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
    refuse_output(output, inputs, run_dir, dataset=dask is not None)
    if dask is not None:
        from plasticc_jax import distributed

        distributed.check_dataset_folder(output)
    metadata = readers.read_metadata_files(metadata_paths)
    log_backend()
    if dask is not None:
        # Checked here, as below; the run stays locked (shared) while the workers read it.
        with folder_lock(run_dir, "score", shared=True):
            scorer = Scorer.load(run_dir)
            return distributed.score(
                dask,
                scorer,
                lightcurve_paths,
                metadata_paths,
                metadata,
                output,
                workers,
                part_mb=part_mb,
            )
    # Read while no evaluate or train rewrites the run (they hold its lock).
    with folder_lock(run_dir, "score", shared=True):
        scorer = Scorer.load(run_dir)
    detector = scorer.detector
    output.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    # The scratch folder lives beside the output (same disk); the outputs are moved into place
    # from it only when complete.
    with scratch_dir(output.parent, SCRATCH_PREFIX) as scratch:
        unranked = scratch / "unranked.parquet"
        grids = stream_grids(
            lightcurve_paths,
            metadata_paths,
            scorer.config.data,
            workers,
            metadata=metadata,
            as_of=as_of,
        )
        scores, scored_ids, rejected_parts = write_unranked(
            grids, scorer, unranked, days_since_detection=as_of is not None
        )
        rejected = concat_rejected(rejected_parts)
        check_accounting(metadata, [scored_ids], rejected)
        table_path, rejected_tmp = scratch / f"table{fmt}", scratch / "rejected.csv"
        write_ranked(unranked, scoring.ranks(scores), table_path, fmt)
        rejected.to_csv(rejected_tmp, index=False)
        os.replace(rejected_tmp, rejected_path(output))
        os.replace(table_path, output)
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


def check_accounting(
    metadata: pd.DataFrame, scored_ids: Sequence[np.ndarray], rejected: pd.DataFrame
) -> None:
    """Every input object (metadata objects, and light curves without metadata) is scored or
    rejected, exactly once. A failure here is a bug, not a user error."""
    ids = np.concatenate(
        [np.zeros(0, np.int64), *scored_ids, rejected["object_id"].to_numpy(np.int64)]
    )
    n_input = len(metadata) + int((rejected["reason"] == NO_METADATA).sum())
    if ids.size != n_input or np.unique(ids).size != ids.size:
        raise RuntimeError(
            f"counts do not add up: {ids.size - len(rejected)} scored + {len(rejected)} rejected "
            f"!= {n_input} input objects, or an object counted twice"
        )


def ranked_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of an unranked score table with `rank` (int64) where the table has it."""
    return schema.insert(scoring.rank_position(schema.names), pa.field("rank", pa.int64()))


def write_ranked(unranked: Path, rank: np.ndarray, path: Path, fmt: str) -> None:
    """Copy the unranked table to `path` batch by batch, inserting `rank` where the score table
    has it (`scoring.rank_position`). Not atomic: write into a scratch folder or `atomic_path`."""
    source = pq.ParquetFile(unranked)
    schema = ranked_schema(source.schema_arrow)
    position = schema.get_field_index("rank")
    if fmt == ".parquet":
        writer = pq.ParquetWriter(path, schema)
    else:
        sink = pa.CompressedOutputStream(str(path), "gzip") if fmt == ".csv.gz" else str(path)
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
