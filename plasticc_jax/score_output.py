"""What `plasticc-jax score` writes: the score table and its rejections, in two passes.

The table is one file (`.parquet`, `.csv` or `.csv.gz`, by suffix: `output_format`) or, with
`--dask`, a Parquet dataset: a folder of `part-<i>.parquet` and `MANIFEST`
(`check_dataset_folder`). `<name>.rejected.csv` beside it lists every input object that could not
be scored, and why (`rejected_path`). Pass 1 scores gridded chunks into a table without ranks
(`write_unranked`), pass 2 copies it with the ranks over all objects (`write_ranked`), and
`check_accounting` checks that every input object is in exactly one of the two. Shared by
`plasticc_jax.score` and `plasticc_jax.distributed_score`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import gridding, plasticc, provenance, scoring
from plasticc_jax.calibration import AgeThreshold
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError, listing
from plasticc_jax.scoring import Scorer
from plasticc_jax.streaming import NO_METADATA

log = logging.getLogger(__name__)

SPLIT_NAME = "new"  # the `split` column of the table
# Parquet metadata: the thresholds of `score --as-of --threshold-from` (`with_flag_thresholds`).
FLAG_THRESHOLDS_KEY = b"plasticc_jax.flag_thresholds"
_FORMATS = (".parquet", ".csv", ".csv.gz")
# The scratch folder beside the output, where the outputs are written before they move into place.
SCRATCH_PREFIX = ".tmp-score-"
# The Parquet dataset's record of its parts, counts and timings; what such a folder may hold.
MANIFEST = "_manifest.json"
_OURS = re.compile(r"part-\d+\.parquet|\.tmp-.*|\.unranked|" + re.escape(MANIFEST))


def output_format(output: Path) -> str:
    """The table's format, `.parquet`, `.csv` or `.csv.gz`, by the output's suffix."""
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
    stem = output.name[: -len(output_format(output))]
    return output.with_name(f"{stem}.rejected.csv")


def refuse_shared_rejections(output: Path) -> None:
    """Raise a UserError where the score would replace another output's rejection list: the
    output's list exists beside a table of the same name in another format (`y.csv` for
    `y.parquet`: both list their rejections in `y.rejected.csv`), or the output is a table's
    existing rejection list."""
    fmt = output_format(output)
    stem = output.name[: -len(fmt)]
    rejections = rejected_path(output)
    for other in _FORMATS:
        sibling = output.with_name(stem + other)
        if other != fmt and sibling.exists() and rejections.exists():
            raise UserError(
                f"--output {output}: {sibling.name} beside it keeps its rejections in "
                f"{rejections.name} too, which this score would replace: choose another name (or "
                f"remove {sibling.name})"
            )
    if fmt == ".csv" and stem.lower().endswith(".rejected") and output.exists():
        table = stem[: -len(".rejected")]
        for other in _FORMATS:
            if output.with_name(table + other).exists():
                raise UserError(
                    f"--output {output} is the rejection list of {table + other} beside it: "
                    "choose another name"
                )


def with_flag_thresholds(schema: pa.Schema, age_threshold: AgeThreshold | None) -> pa.Schema:
    """`schema` whose metadata also holds the thresholds that made `flagged`
    (`FLAG_THRESHOLDS_KEY`, `AgeThreshold.to_json`) where they are not the detector's."""
    if age_threshold is None:
        return schema
    named = json.dumps(age_threshold.to_json(), sort_keys=True).encode()
    return schema.with_metadata({**(schema.metadata or {}), FLAG_THRESHOLDS_KEY: named})


def write_unranked(
    grids: Iterable[tuple[LightCurveArrays, pd.DataFrame]],
    scorer: Scorer,
    path: Path,
    *,
    days_since_detection: bool = False,
    age_threshold: AgeThreshold | None = None,
) -> tuple[np.ndarray, np.ndarray, list[pd.DataFrame], int, int]:
    """Score gridded chunks (`stream_grids`) into a Parquet table without `rank`, chunk by chunk
    (`Scorer.table`: objects that cannot be scored are rejected, never written with a NaN).
    With `days_since_detection` (`score --as-of`), the table has that column (second), from the
    gridded objects' `stage` (`early.grid_as_of`); with `age_threshold` too (`score --as-of
    --threshold-from`), `flagged` is by its thresholds of that age and the object's depth.

    Returns:
        The objects' `anomaly_score`s (n,) and object ids (n,) in table order, the rejection
        frames (the stream's and the model's), how many scored objects were never detected
        (`warn_never_detected`), and how many are flagged.
    """
    score_parts: list[np.ndarray] = []
    scored_ids: list[np.ndarray] = []
    rejected_parts: list[pd.DataFrame] = []
    n_never_detected = n_flagged = 0
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
            if frame.empty:  # its empty text columns would give the table a wrong schema
                continue
            if days_since_detection:
                scoring.insert_days_since_detection(frame, arrays)
                if age_threshold is not None:
                    scoring.flag_by_age(frame, age_threshold)
            table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
            if writer is None:
                schema = with_flag_thresholds(
                    provenance.with_checkpoint(table.schema, scorer.checkpoint), age_threshold
                )
                table = table.replace_schema_metadata(schema.metadata)
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            # Copies: a view would keep the chunk's whole table alive to the end of the run
            # (about 90 bytes an object instead of 16; found by a review at 500,000 objects).
            score_parts.append(frame["anomaly_score"].to_numpy(np.float64, copy=True))
            scored_ids.append(frame["object_id"].to_numpy(np.int64, copy=True))
            n_flagged += int(frame["flagged"].sum())
            never = arrays.object_id[gridding.never_detected(arrays.features)]
            n_never_detected += int(np.isin(scored_ids[-1], never).sum())
        if writer is None:  # nothing could be scored: an empty table with the same columns
            n_times = scorer.config.data.n_time_bins
            empty, _ = scorer.table(gridding.empty_arrays(n_times), SPLIT_NAME)
            if days_since_detection:
                empty.insert(1, "days_since_detection", np.zeros(0))
            schema = pa.Table.from_pandas(empty).schema
            schema = provenance.with_checkpoint(schema, scorer.checkpoint)
            writer = pq.ParquetWriter(path, with_flag_thresholds(schema, age_threshold))
    finally:
        if writer is not None:
            writer.close()
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    ids = np.concatenate(scored_ids) if scored_ids else np.zeros(0, np.int64)
    return scores, ids, rejected_parts, n_never_detected, n_flagged


def warn_never_detected(n_never_detected: int) -> None:
    """Warn of scored objects never detected (`write_unranked`'s count; under Dask the sum of
    the parts', on the driver, where the user sees it)."""
    if n_never_detected:  # every training object has detections: noise is unlike them all
        log.warning(
            "%d scored objects were never detected (no point flagged detected or at S/N >= %g): "
            "their scores say how unlike the known classes their noise is, not that a transient "
            "is there (score --as-of and replay reject them; docs/evaluation.md)",
            n_never_detected,
            gridding.DETECTION_SNR,
        )


def warn_trained_on(run_dir: Path, scored_ids: np.ndarray) -> None:
    """Say how many scored objects have the ids of the run's train split: if they are those
    objects, the detector was fitted on them and scores them in-sample (a new-user review scored
    the training file and read its 4,801 train objects' scores as new ones', up to 5.4 from their
    out-of-fold ones)."""
    table = Path(run_dir) / "scores.parquet"
    if not scored_ids.size or not table.is_file():
        return
    run = pq.read_table(table, columns=["object_id", "split"]).to_pandas()
    train = run["object_id"].to_numpy(np.int64)[run["split"].to_numpy() == "train"]
    n_trained = int(np.isin(scored_ids, train).sum())
    if n_trained:
        log.warning(
            "%d scored objects have the ids of the run's train split: if they are those objects, "
            "the detector was fitted on them and scores them in-sample, lower than new objects "
            "(the run's scores.parquet has their scores out of fold)",
            n_trained,
        )


# A flagged share this many times the target rate, among at least FLAGGED_MIN_OBJECTS scored
# objects, is far past chance for known objects (10 of 100 at a 1% rate: p < 1e-7).
FLAGGED_FACTOR = 10
FLAGGED_MIN_OBJECTS = 100


def warn_if_flagged_far_above(n_flagged: int, n_scored: int, target_fpr: float) -> None:
    """Say so when far more objects are flagged than the threshold lets through among known
    objects: a sample rich in anomalies does that, and so does input unlike the training
    data's (a review: every `detected` flag 0 flagged 300 of 300 objects without a word)."""
    if n_scored < FLAGGED_MIN_OBJECTS or n_flagged <= FLAGGED_FACTOR * target_fpr * n_scored:
        return
    log.warning(
        "%d of %d scored objects (%.0f%%) are flagged, where the threshold flags %.2g%% of the "
        "run's known objects: a sample rich in anomalies does that, and so does input unlike "
        "the training data's (`detected` flags all 0 or all 1, fluxes in other units, passbands "
        "numbered otherwise, a survey of another depth)",
        n_flagged,
        n_scored,
        100 * n_flagged / n_scored,
        100 * target_fpr,
    )


def note_unknown_classes(metadata: pd.DataFrame, data: DataConfig) -> None:
    """Say which labels of the metadata belong to classes the run neither trained on nor held
    out (PLAsTiCC's test-only 991-995, a class its protocol left out, a mistyped number), with
    the number of metadata rows of each: their objects count as anomalies in `is_anomaly`
    (`scoring.unknown_to_the_run`) where scored."""
    if "target" not in metadata:
        return
    target = metadata["target"].to_numpy(np.int64)
    named = (*data.known_classes, *data.anomaly_classes)
    other = target[(target >= 0) & ~np.isin(target, named)]
    if other.size:
        classes, counts = np.unique(other, return_counts=True)
        most = np.argsort(-counts, kind="stable")  # the largest first: a long list is cut
        named_counts = (
            f"{plasticc.class_name(c)} ({c}): {n}" if c in plasticc.CLASS_NAMES else f"{c}: {n}"
            for c, n in zip(classes[most].tolist(), counts[most].tolist(), strict=True)
        )
        log.warning(
            "%d objects of the metadata are labelled with classes the run neither trained on "
            "nor held out, counted as anomalies (is_anomaly) where scored: %s",
            other.size,
            listing(named_counts, limit=10),
        )


def check_dataset_folder(output: Path) -> None:
    """`output` may become a dataset of ours: it does not exist, is a file, or is a folder that
    holds only a dataset of ours (which the new one replaces when complete).

    Raises:
        UserError: `output` is a folder that holds other files (not a dataset of ours).
    """
    if output.is_dir() and not output.is_symlink():
        names = [p.name for p in output.iterdir()]
        others = sorted(name for name in names if not _OURS.fullmatch(name))
        # Part files without our manifest: another tool's dataset (pyarrow names its parts so).
        if not others and any(n.startswith("part-") for n in names) and MANIFEST not in names:
            others = sorted(n for n in names if n.startswith("part-"))
        if others:
            raise UserError(
                f"--output {output} is a folder holding other files ({', '.join(others[:3])}): "
                "give another name, or remove it"
            )
    elif output.is_symlink() and output.is_dir():
        raise UserError(f"--output {output} is a link to a folder: give another name")


def check_accounting(
    n_metadata: int, scored_ids: Sequence[np.ndarray], rejected: pd.DataFrame
) -> None:
    """Every input object (the `n_metadata` metadata objects, and light curves without
    metadata) is scored or rejected, exactly once. A failure here is a bug, not a user error."""
    ids = np.concatenate(
        [np.zeros(0, np.int64), *scored_ids, rejected["object_id"].to_numpy(np.int64)]
    )
    n_input = n_metadata + int((rejected["reason"] == NO_METADATA).sum())
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
    try:
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
    finally:  # also on an error: the gzip stream holds the file open
        if fmt == ".csv.gz":
            sink.close()


def by_reason(rejected: pd.DataFrame, most: int = 3) -> str:
    """The rejections' counts by reason, the `most` commonest: "12 flux missing, 3 ..."."""
    reasons = rejected["reason"].value_counts()
    shown = ", ".join(f"{n} {reason}" for reason, n in reasons.head(most).items())
    rest = int(reasons.iloc[most:].sum())
    return shown + (f", {rest} for {reasons.size - most} other reasons" if rest else "")


def refuse_if_none_scored(
    n_scored: int, rejected: pd.DataFrame, output: Path, *, as_of: float | None = None
) -> None:
    """An error when every object was rejected (its outputs are written: the empty table and
    the rejections that account for every object). A review had a `score && publish` pipeline
    replace a good table with an empty one, exit 0, a warning the only sign. As of a date
    (`as_of`) a warning: before its objects are detected, none can be scored."""
    if n_scored or not len(rejected):
        return
    problem = (
        f"no object was scored: all {len(rejected)} were rejected ({by_reason(rejected)}); "
        f"{output} is empty, and {rejected_path(output)} says why for each object"
    )
    if as_of is None:
        raise UserError(problem)
    log.warning("%s", problem)
