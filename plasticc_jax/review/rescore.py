"""`plasticc-jax score --review-labels`: rank a new score table with what the expert taught.

The active model (`active.ActiveRanker`) is grown on the new table's objects and fitted on the
answers of a labels file; the labelled objects' features are looked up by object id in the new
table and in the run's own `scores.parquet` (answers about objects in neither are ignored, with a
warning). Two columns are added to the table in place: `review_score` (higher = more anomalous by
the expert's standards) and `review_rank` (1 = the first to show the expert: the objects answered
or skipped already last, equal scores by the detector's `anomaly_score`). The table is
rewritten batch by batch (Parquet) or whole (CSV).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from plasticc_jax import provenance
from plasticc_jax.csv_files import header, input_stream
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path, folder_lock
from plasticc_jax.provenance import table_checkpoint
from plasticc_jax.review import active
from plasticc_jax.review.labels import latest, read_answers
from plasticc_jax.review.pool import check_checkpoint, read_table
from plasticc_jax.scoring import places

log = logging.getLogger(__name__)
# The score table's columns of text (`scoring.score_table`), whatever their values look like.
TEXT_COLUMNS = ("split", "class_name", "nearest_class_name")


def _read_features(path: Path, models_dir: Path) -> pd.DataFrame:
    """`object_id` and the candidate feature columns of a table (Parquet: only those)."""
    if not path.name.lower().endswith(".parquet"):
        return read_table(path)
    if not path.is_file():
        raise UserError(f"no score table at {path}")
    columns = pq.read_schema(path).names
    wanted = ["object_id", "anomaly_score", *active.candidate_columns(columns, models_dir)]
    return pd.read_parquet(path, columns=[c for c in dict.fromkeys(wanted) if c in columns])


def check_labels(labels_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(object ids, is anomaly) of a labels file's informative answers, and the ids of every
    object answered (skipped ones too: the page shows them no more, as the answered).

    Raises:
        UserError: no labels file, a damaged one, or no "anomaly" / "not interesting" answer.
    """
    labels_path = Path(labels_path)
    if not labels_path.is_file():
        raise UserError(f"no labels file at {labels_path}: review candidates first")
    answers = latest(read_answers(labels_path))
    ids, is_anomaly = active.informative(answers)
    if not ids.size:
        raise UserError(f"{labels_path} holds no 'anomaly' or 'not interesting' answer")
    return ids, is_anomaly, np.fromiter(answers, np.int64, len(answers))


def rerank_scored(run_dir: Path, table_path: Path, labels_path: Path) -> Path:
    """Add `review_score` and `review_rank` to a score table, from a labels file's answers.

    Args:
        run_dir: the run that wrote the table (its `scores.parquet` and `models/`).
        table_path: a table written by `plasticc-jax score` (`.parquet`, `.csv`, `.csv.gz`).
        labels_path: a review's labels file (JSON lines) or the page's CSV export of one.

    Raises:
        UserError: no labels file, or no "anomaly" / "not interesting" answer about an object
            of the table or the run.
    """
    run_dir, table_path = Path(run_dir), Path(table_path)
    ids, is_anomaly, answered_ids = check_labels(labels_path)
    models = run_dir / "models"
    # Read while no evaluate or train rewrites the run (they hold its lock), as score reads it:
    # its `models/*.json` name the feature columns of both tables.
    with folder_lock(run_dir, "score", shared=True):
        provenance.require_complete(run_dir)  # not a table half rewritten by evaluate
        table = _read_features(table_path, models)
        names = active.feature_columns(table, models)
        run_table = _read_features(run_dir / "scores.parquet", models)
        run_checkpoint = table_checkpoint(run_dir / "scores.parquet")
    check_checkpoint(table_path, run_checkpoint, run_dir)  # its latents beside the run's
    missing = [n for n in names if n not in run_table.columns]
    if missing:
        raise UserError(
            f"{run_dir / 'scores.parquet'} lacks the feature columns {missing}: run `plasticc-jax "
            f"evaluate` for {run_dir} again"
        )

    # Each answered object's features: from the new table, else from the run's table.
    features, labels = [], []
    remaining = np.ones(ids.size, bool)
    for source in (table, run_table):
        source = source.drop_duplicates("object_id")
        position = pd.Index(source["object_id"].to_numpy(np.int64)).get_indexer(ids)
        take = remaining & (position >= 0)
        features.append(active.feature_matrix(source.iloc[position[take]], names))
        labels.append(is_anomaly[take])
        remaining &= ~take
    if remaining.all():
        raise UserError(f"none of the answered objects of {labels_path} is in the table or run")
    if remaining.any():
        log.warning("%d answered objects are in neither table: ignored", int(remaining.sum()))
    static = (
        table["anomaly_score"].to_numpy(np.float64) if "anomaly_score" in table.columns else None
    )
    ranker = active.ActiveRanker(active.feature_matrix(table, names), static)
    score = ranker.scores(np.concatenate(features), np.concatenate(labels))
    # As the page ranks them: the objects answered already (or skipped) after the others.
    answered = np.isin(table["object_id"].to_numpy(np.int64), answered_ids)
    _add_columns(table_path, score, places(ranker.order(score, answered)))
    log.info(
        "ranked %d objects of %s with %d answers (%d anomalies); wrote %s and %s",
        len(score),
        table_path,
        int((~remaining).sum()),
        int(np.concatenate(labels).sum()),
        active.REVIEW_SCORE,
        active.REVIEW_RANK,
    )
    return table_path


def _add_columns(path: Path, score: np.ndarray, rank: np.ndarray) -> None:
    """Append (or replace) the review columns of a table file, atomically."""
    new = {active.REVIEW_SCORE: pa.array(score), active.REVIEW_RANK: pa.array(rank)}
    with atomic_path(path) as tmp:
        if path.name.lower().endswith(".parquet"):
            source = pq.ParquetFile(path)
            schema = source.schema_arrow
            for name in new:
                if name in schema.names:
                    schema = schema.remove(schema.get_field_index(name))
            schema = schema.append(pa.field(active.REVIEW_SCORE, pa.float64()))
            schema = schema.append(pa.field(active.REVIEW_RANK, pa.int64()))
            done = 0
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in source.iter_batches():
                    n = batch.num_rows
                    old = [batch.column(name) for name in schema.names[:-2]]
                    added = [column[done : done + n] for column in new.values()]
                    writer.write_batch(pa.RecordBatch.from_arrays([*old, *added], schema=schema))
                    done += n
                if done == 0:
                    writer.write_table(schema.empty_table())
        else:
            _add_csv_columns(path, tmp, new)


def _add_csv_columns(path: Path, out: Path, new: dict[str, pa.Array]) -> None:
    """`path`'s CSV (gzipped if named so) with the `new` columns, written to `out` as `score`
    writes its CSV (pyarrow's: `true`, not pandas' `True`), every other column's text unchanged:
    the score table's text columns are read as text (a class of one's own, `123`, is no number:
    pandas read a large file's column of such names as numbers and text, which no writer
    takes), the others as pyarrow infers them, missing values only where a field is empty."""
    names = header(path)
    options = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in TEXT_COLUMNS if name in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    with input_stream(path) as stream:
        table = pa_csv.read_csv(stream, convert_options=options)
    for name, column in new.items():
        if name in table.column_names:
            table = table.drop_columns(name)
        table = table.append_column(name, column)
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    with pa.output_stream(str(out), compression=compression) as sink:
        pa_csv.write_csv(table, sink)
