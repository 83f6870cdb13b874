"""`plasticc-jax score`: score new light-curve files with a trained and evaluated run.

Needs only the run directory: the VAE (checkpoint, config.json, stats.json) and the anomaly
detector that `evaluate` saved in `models/`. Inputs stream through in chunks
(`input_pipeline.stream_grids`), so memory stays bounded for files of any size; the table is
written in two passes (scores, then ranks over all objects) through a temporary Parquet file.

Output: the table at `output` (`.parquet`, or `.csv` / `.csv.gz`), with the columns of the
evaluation table (split is `new`, rank is among all scored objects, 1 = most anomalous,
`anomaly_score` = `fused_score`, `flagged` = above the run's threshold), and
`<output name>.rejected.csv` listing every input object that could not be scored and why. Every
input object is in exactly one of the two.
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

from plasticc_jax.anomaly import AnomalyDetector
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError
from plasticc_jax.figures import class_name
from plasticc_jax.io_utils import atomic_path

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


def score_frame(
    arrays: LightCurveArrays,
    outputs: dict[str, np.ndarray],
    detector: AnomalyDetector,
    split: str = SPLIT_NAME,
) -> pd.DataFrame:
    """One table chunk (without `rank`) from gridded objects and their VAE outputs."""
    scored = detector.score(outputs)
    mu = outputs["mu"]
    target = arrays.target.astype(np.int64)
    frame = pd.DataFrame(
        {
            "object_id": arrays.object_id.astype(np.int64),
            "split": np.full(len(arrays), split),
            "target": target,
            "class_name": [class_name(c) for c in target],
            "is_anomaly": arrays.is_anomaly.astype(bool),
            **{f"mu_{j}": mu[:, j].astype(np.float32) for j in range(mu.shape[1])},
            "mean_logvar": outputs["logvar"].mean(axis=1).astype(np.float32),
            "recon_nll": outputs["recon_nll"].astype(np.float64),
            "n_observed": outputs["n_observed"].astype(np.int64),
            "recon_nll_per_cell": scored["recon_nll_per_cell"],
            "chi2_per_cell": scored["chi2_per_cell"],
            "kl": outputs["kl"].astype(np.float64),
            "forest_score": scored["forest_score"],
            "fused_score": scored["fused_score"],
        }
    )
    frame["anomaly_score"] = frame["fused_score"]
    frame["flagged"] = scored["flagged"]
    return frame


def _empty_outputs(latent_dim: int) -> dict[str, np.ndarray]:
    return {
        "mu": np.zeros((0, latent_dim), np.float32),
        "logvar": np.zeros((0, latent_dim), np.float32),
        "recon_nll": np.zeros(0),
        "n_observed": np.zeros(0),
        "kl": np.zeros(0),
        "chi2": np.zeros(0),
    }


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
        workers: processes gridding the input (None: the run's `data.workers`).

    Raises:
        UserError: not a trained and evaluated run, a missing file, an unknown output format, or
            bad input (naming the file and line).
    """
    from plasticc_jax.encoder import load_vae
    from plasticc_jax.evaluate import vae_outputs
    from plasticc_jax.input_pipeline import stream_grids

    run_dir, output = Path(run_dir), Path(output)
    fmt = _format(output)
    for path in [*lightcurve_paths, *metadata_paths]:
        if not Path(path).is_file():
            raise UserError(f"input file {path} does not exist")
    detector = AnomalyDetector.load(run_dir / "models")
    vae = load_vae(run_dir)
    config = vae.config
    batch_size = config.eval.batch_size
    _, anomaly_classes = config.data.classes()
    latent_dim = config.model.latent_dim
    output.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    fused_parts: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    # The scratch table lives beside the output (same disk) and is removed whatever happens.
    with tempfile.TemporaryDirectory(prefix=".tmp-score-", dir=output.parent) as scratch_dir:
        scratch = Path(scratch_dir) / "unranked.parquet"
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            for arrays, rejected in stream_grids(
                lightcurve_paths, metadata_paths, config.data, workers, anomaly_classes
            ):
                if len(rejected):
                    rejected_parts.append(rejected)
                if not len(arrays):
                    continue
                outputs = vae_outputs(vae, arrays, batch_size)
                frame = score_frame(arrays, outputs, detector)
                table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(scratch, schema)
                writer.write_table(table)
                fused_parts.append(frame["fused_score"].to_numpy())
            if writer is None:  # nothing could be scored: an empty table with the same columns
                empty = score_frame(
                    _empty_arrays(config.data.n_time_bins), _empty_outputs(latent_dim), detector
                )
                writer = pq.ParquetWriter(scratch, pa.Table.from_pandas(empty).schema)
        finally:
            if writer is not None:
                writer.close()
        fused = np.concatenate(fused_parts) if fused_parts else np.zeros(0)
        rank = np.empty(fused.size, np.int64)
        rank[np.argsort(-fused, kind="stable")] = np.arange(1, fused.size + 1)
        _write_ranked(scratch, rank, output, fmt)

    rejected = (
        pd.concat(rejected_parts, ignore_index=True)
        if rejected_parts
        else pd.DataFrame({"object_id": [], "reason": [], "source": []})
    )
    with atomic_path(rejected_path(output)) as tmp:
        rejected.to_csv(tmp, index=False)
    n_flagged = int(sum((part > detector.threshold).sum() for part in fused_parts))
    log.info(
        "scored %d objects in %.1f s (%d flagged at the run's %.2g false-positive rate), "
        "%d rejected; wrote %s and %s",
        fused.size,
        time.perf_counter() - start,
        n_flagged,
        detector.target_fpr,
        len(rejected),
        output,
        rejected_path(output),
    )
    return output


def _empty_arrays(n_time_bins: int) -> LightCurveArrays:
    from plasticc_jax.input_pipeline import empty_arrays

    return empty_arrays(n_time_bins)


def _write_ranked(scratch: Path, rank: np.ndarray, output: Path, fmt: str) -> None:
    """Copy the scratch table to `output` batch by batch, inserting `rank` after `anomaly_score`."""
    source = pq.ParquetFile(scratch)
    schema = source.schema_arrow
    position = schema.get_field_index("anomaly_score") + 1
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
