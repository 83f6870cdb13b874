"""`plasticc-jax score`: score new light-curve files with a trained and evaluated run.

Needs only the run directory: the VAE (checkpoint, config.json, stats.json) and the anomaly
detector that `evaluate` saved in `models/`, which must have been fitted on the run's best
checkpoint (`provenance`: after more training, run `evaluate` again). Inputs stream through in
chunks (`streaming.stream_grids`), so memory stays bounded for files of any size, and each chunk
takes the evaluation's scoring path (`scoring`); the table is written in two passes (scores, then
ranks over all objects) through a scratch folder beside the output (removed at the end, and by
the next run after a kill).

Output: the table at `output` (`.parquet`, or `.csv` / `.csv.gz`), with the columns of the
evaluation table (`scoring.score_table`: split is `new`, rank is among all scored objects, 1 =
most anomalous, `flagged` = above the run's threshold), and `<output name>.rejected.csv` listing
every input object that could not be scored and why. Every input object is in exactly one of the
two (checked), and no score is NaN. The output may not be one of the inputs or a file of the run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import gridding, provenance, readers, runs, scoring
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.detector import Detector
from plasticc_jax.doctor import log_backend
from plasticc_jax.encoder import TrainedVae, load_vae
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import folder_lock, refuse_overwrite, scratch_dir
from plasticc_jax.streaming import NO_METADATA, stream_grids

log = logging.getLogger(__name__)

SPLIT_NAME = "new"
_FORMATS = (".parquet", ".csv", ".csv.gz")
SCRATCH_PREFIX = ".tmp-score-"
# The `source` of rejections made after gridding, by the model and the detector.
MODEL_SOURCE = "model"


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
    vae: TrainedVae, detector: Detector, arrays: LightCurveArrays
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The score table of gridded objects (without `rank`), labelled by the run's protocol, and
    the objects that could not be scored (non-finite VAE outputs or features, a NaN score) with
    the reason: no NaN score reaches the table."""
    arrays = arrays.with_anomalies(vae.config.data.anomaly_classes)
    outputs = scoring.model_outputs(vae, arrays, vae.config.eval.batch_size)
    finite = scoring.finite_outputs(outputs)
    unscorable = [(arrays.object_id[~finite], scoring.NON_FINITE_OUTPUT)]
    if not finite.all():
        arrays = arrays.take(np.flatnonzero(finite))
        outputs = {key: values[finite] for key, values in outputs.items()}
    objects = {**scoring.object_labels(arrays, SPLIT_NAME), **outputs}
    evidence = scoring.evidence(objects, vae.stats, vae.encoder.classes)
    frame = scoring.score_table(objects, detector.score(evidence, fused_only=True), detector)
    nan = np.isnan(frame["anomaly_score"].to_numpy(np.float64))
    if nan.any():
        unscorable.append((frame["object_id"].to_numpy()[nan], scoring.NAN_SCORE))
        frame = frame[~nan].reset_index(drop=True)
    rejected = pd.DataFrame(
        {
            "object_id": np.concatenate([ids for ids, _ in unscorable]).astype(np.int64),
            "reason": [reason for ids, reason in unscorable for _ in ids],
            "source": MODEL_SOURCE,
        }
    )
    return frame, rejected


def _load_run(run_dir: Path) -> tuple[TrainedVae, Detector]:
    """The run's VAE and detector, after checking that they belong together.

    Raises:
        UserError: an incomplete or unevaluated run, a detector file missing or damaged, a
            detector fitted on another checkpoint, an unreadable run file.
    """
    runs.read_config(run_dir)  # first: a folder that is no run at all says so
    provenance.require_complete(run_dir)
    record = provenance.check_detector_files(run_dir)
    vae = load_vae(run_dir)
    provenance.check_checkpoint(run_dir, record, vae.epoch, vae.params)
    try:
        detector = Detector.load(run_dir / "models")
    except UserError:
        raise
    except Exception as error:  # e.g. a file of another scikit-learn version
        raise UserError(
            f"{run_dir / 'models'}: the anomaly detector cannot be read ({type(error).__name__}: "
            f"{error}); run `plasticc-jax evaluate` for {run_dir} again"
        ) from None
    return vae, detector


def score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None = None,
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

    Raises:
        UserError: not a trained and evaluated run (or one whose detector does not belong to its
            checkpoint), a missing file, an unknown output format, an output that is an input,
            or bad input (naming the file and line).
    """
    run_dir, output = Path(run_dir), Path(output)
    fmt = _format(output)
    inputs = [Path(p) for p in [*lightcurve_paths, *metadata_paths]]
    for path in inputs:
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
    run_files, run_folders = runs.protected_paths(run_dir)
    refuse_overwrite(
        [output, rejected_path(output)], [*inputs, *run_files], run_folders, what="--output"
    )
    metadata = readers.read_metadata_files(metadata_paths)
    log_backend()
    # Read while no evaluate or train rewrites the run (they hold its lock).
    with folder_lock(run_dir, "score", shared=True):
        vae, detector = _load_run(run_dir)
    output.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    score_parts: list[np.ndarray] = []
    scored_ids: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    # The scratch folder lives beside the output (same disk); the outputs are moved into place
    # from it only when complete.
    with scratch_dir(output.parent, SCRATCH_PREFIX) as scratch:
        unranked = scratch / "unranked.parquet"
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            grids = stream_grids(
                lightcurve_paths, metadata_paths, vae.config.data, workers, metadata=metadata
            )
            for arrays, rejected in grids:
                if len(rejected):
                    rejected_parts.append(rejected)
                if not len(arrays):
                    continue
                frame, unscorable = _table(vae, detector, arrays)
                if len(unscorable):
                    rejected_parts.append(unscorable)
                table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(unranked, schema)
                writer.write_table(table)
                score_parts.append(frame["anomaly_score"].to_numpy())
                scored_ids.append(frame["object_id"].to_numpy())
            if writer is None:  # nothing could be scored: an empty table with the same columns
                empty, _ = _table(vae, detector, gridding.empty_arrays(vae.config.data.n_time_bins))
                writer = pq.ParquetWriter(unranked, pa.Table.from_pandas(empty).schema)
        finally:
            if writer is not None:
                writer.close()
        scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
        rejected = (
            pd.concat(rejected_parts, ignore_index=True)
            if rejected_parts
            else pd.DataFrame({"object_id": [], "reason": [], "source": []})
        )
        _check_accounting(metadata, scored_ids, rejected)
        table_path, rejected_tmp = scratch / f"table{fmt}", scratch / "rejected.csv"
        _write_ranked(unranked, scoring.ranks(scores), table_path, fmt)
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


def _check_accounting(
    metadata: pd.DataFrame, scored_ids: list[np.ndarray], rejected: pd.DataFrame
) -> None:
    """Every input object (metadata objects, and light curves without metadata) is scored or
    rejected, exactly once. A failure here is a bug, not a user error."""
    ids = np.concatenate([*scored_ids, rejected["object_id"].to_numpy(np.int64)])
    n_input = len(metadata) + int((rejected["reason"] == NO_METADATA).sum())
    if ids.size != n_input or np.unique(ids).size != ids.size:
        raise RuntimeError(
            f"counts do not add up: {ids.size - len(rejected)} scored + {len(rejected)} rejected "
            f"!= {n_input} input objects, or an object counted twice"
        )


def _write_ranked(unranked: Path, rank: np.ndarray, path: Path, fmt: str) -> None:
    """Copy the unranked table to `path` batch by batch, inserting `rank` where the score table
    has it (`scoring.rank_position`)."""
    source = pq.ParquetFile(unranked)
    schema = source.schema_arrow
    position = scoring.rank_position(schema.names)
    schema = schema.insert(position, pa.field("rank", pa.int64()))
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
