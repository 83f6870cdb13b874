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
two.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import gridding, scoring
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.detector import Detector
from plasticc_jax.encoder import TrainedVae, load_vae
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path
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


def _table(
    vae: TrainedVae, detector: Detector, arrays: LightCurveArrays, fused_only: bool = False
) -> pd.DataFrame:
    """The score table of gridded objects (without `rank`), labelled by the run's protocol
    (`fused_only`: `Detector.score`)."""
    arrays = arrays.with_anomalies(vae.config.data.anomaly_classes)
    outputs = scoring.model_outputs(vae, arrays, vae.config.eval.batch_size)
    objects = {**scoring.object_labels(arrays, SPLIT_NAME), **outputs}
    evidence = scoring.evidence(objects, vae.stats, vae.encoder.classes)
    return scoring.score_table(objects, detector.score(evidence, fused_only), detector)


def score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None = None,
    as_of: float | None = None,
) -> Path:
    """Score light-curve files with a trained, evaluated run; returns the output path.

    Args:
        run_dir: run directory (after `train` and `evaluate`).
        lightcurve_paths: light-curve CSV(.gz) files, each grouped by object_id (PLAsTiCC
            Kaggle or unblinded format).
        metadata_paths: their metadata files. Labels, if present (`target`/`true_target`), are
            copied into the table; they never enter the score.
        output: the table; `.parquet`, `.csv` or `.csv.gz`.
        workers: threads gridding the input (None: the run's `data.workers`).
        as_of: score each object with only its observations up to this MJD
            (`early.grid_as_of`); the table then has `days_since_detection` (as_of minus the
            object's first detection; negative: not yet detected). An object without enough
            observations by then is rejected (too few observations).

    Raises:
        UserError: not a trained and evaluated run, a missing file, an unknown output format, or
            bad input (naming the file and line).
    """
    run_dir, output = Path(run_dir), Path(output)
    fmt = _format(output)
    for path in [*lightcurve_paths, *metadata_paths]:
        if not Path(path).is_file():
            raise UserError(f"input file {path} does not exist")
    vae = load_vae(run_dir)
    detector = Detector.load(run_dir / "models")
    output.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    score_parts: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    # The scratch table lives beside the output (same disk) and is removed whatever happens.
    with tempfile.TemporaryDirectory(prefix=".tmp-score-", dir=output.parent) as scratch_dir:
        scratch = Path(scratch_dir) / "unranked.parquet"
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            grids = stream_grids(
                lightcurve_paths, metadata_paths, vae.config.data, workers, as_of=as_of
            )
            for arrays, rejected in grids:
                if len(rejected):
                    rejected_parts.append(rejected)
                if not len(arrays):
                    continue
                frame = _table(vae, detector, arrays)
                if as_of is not None:
                    frame.insert(1, "days_since_detection", arrays.stage.astype(np.float64))
                table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(scratch, schema)
                writer.write_table(table)
                score_parts.append(frame["anomaly_score"].to_numpy())
            if writer is None:  # nothing could be scored: an empty table with the same columns
                empty = _table(vae, detector, gridding.empty_arrays(vae.config.data.n_time_bins))
                if as_of is not None:
                    empty.insert(1, "days_since_detection", np.zeros(0))
                writer = pq.ParquetWriter(scratch, pa.Table.from_pandas(empty).schema)
        finally:
            if writer is not None:
                writer.close()
        scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
        _write_ranked(scratch, scoring.ranks(scores), output, fmt)

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


def _write_ranked(scratch: Path, rank: np.ndarray, output: Path, fmt: str) -> None:
    """Copy the scratch table to `output` batch by batch, inserting `rank` where the score table
    has it (`scoring.rank_position`)."""
    source = pq.ParquetFile(scratch)
    schema = source.schema_arrow
    position = scoring.rank_position(schema.names)
    schema = schema.insert(position, pa.field("rank", pa.int64()))
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
