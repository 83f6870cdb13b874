"""What every output was made from, and the checks its consumers make before they trust it.

- A prepared dataset is named by its manifest's `fingerprint` (data config and input hashes);
  a rebuild with the same fingerprint gives byte-identical shards.
- `train` records the dataset it trained on in `<run>/provenance.json`; `evaluate` refuses a
  dataset with another fingerprint (prepared again since, with another seed, window, preset...),
  and `train` refuses a dataset prepared with other data settings than its config's.
- `evaluate` records in `<run>/models/provenance.json` the checkpoint its detector was fitted on
  (epoch and a SHA-256 of its parameters), the dataset, the threshold and the SHA-256 of every
  detector file; `score` refuses a run whose best checkpoint or detector files differ (after more
  training, or a damaged file) and says to run `evaluate`. `metrics.json` names the same
  checkpoint.
- While `evaluate` rewrites a run directory it holds an `INCOMPLETE` marker there, removed only
  when every output is written: after a kill the marker says the outputs mix old and new, and
  `score` refuses the run until `evaluate` has run again. `train` leaves the same marker when it
  continues an evaluated run.
- A score table in Parquet names that checkpoint in its metadata (`write_parquet`,
  `with_checkpoint`): `review` refuses a table whose latent columns are another run's
  (`table_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plasticc_jax.config import Config, DataConfig
from plasticc_jax.errors import UserError, listing
from plasticc_jax.io_utils import atomic_write_text, sha256_file

log = logging.getLogger(__name__)

RECORD = "provenance.json"
# Files of a run directory that `models/provenance.json` records beside the detector's own.
RUN_FILES: tuple[str, ...] = ("config.json", "stats.json")
INCOMPLETE = "INCOMPLETE"
# Data settings that say where files are or how fast they are made, not what a dataset holds.
NOT_CONTENT = ("raw_dir", "processed_dir", "source", "workers", "chunk_rows")
# Data settings added since datasets were first prepared: a dataset without one was prepared
# with this value (and its fingerprint leaves them out at that value: `prepare._fingerprint`).
ADDED_SETTINGS = {"time_anchor": "peak", "gp_fit": "full"}


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None if there is no file.

    Raises:
        UserError: the file is not a JSON object (damaged).
    """
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        value = error
    if not isinstance(value, dict):
        raise _damaged(path, value)
    return value


def _damaged(path: Path, value: Any) -> UserError:
    """The error for a damaged record, saying which stage writes it again."""
    again = (
        "run `plasticc-jax evaluate` for the run again, which writes it"
        if path.parent.name == "models"
        else "restore it, or remove it and run `plasticc-jax train` with the run's options "
        "again, which writes it back"
    )
    return UserError(f"{path} is damaged ({value}): {again}")


def _part(record: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    """`record[key]`, a JSON object ({} if absent: written by an older version).

    Raises:
        UserError: it is there but not an object (the file is damaged).
    """
    value = record.get(key, {})
    if not isinstance(value, dict):
        raise _damaged(path, f"{key}: {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Datasets.


def dataset_record(dataset_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """How outputs name a prepared dataset: its folder, fingerprint and manifest hash."""
    return {
        "path": str(dataset_dir),
        "fingerprint": manifest.get("fingerprint"),
        "manifest_sha256": sha256_file(Path(dataset_dir) / "manifest.json"),
    }


def data_differences(prepared: Mapping[str, Any], data: DataConfig, whose: str) -> list[str]:
    """The data settings (that shape a dataset) where a dataset's config and `data` differ, as
    `data.seed: 1 in the dataset, 0 in <whose>`."""
    wanted = json.loads(json.dumps(dataclasses.asdict(data)))  # tuples as lists, like the JSON
    prepared = {**ADDED_SETTINGS, **prepared}
    return [
        f"data.{key}: {prepared.get(key)!r} in the dataset, {value!r} in {whose}"
        for key, value in wanted.items()
        if key not in NOT_CONTENT and key in prepared and prepared[key] != value
    ]


def check_dataset_config(dataset_dir: Path, manifest: Mapping[str, Any], config: Config) -> None:
    """A dataset must have been prepared with the data settings of the config that uses it
    (known classes may be left out).

    Raises:
        UserError: the settings differ (the message names each one).
    """
    prepared = manifest.get("config", {}).get("data", {})
    data = config.data
    # A run may leave known classes out (the validation folds do): they become anomalies.
    left_out = set(prepared.get("known_classes", data.known_classes)) - set(data.known_classes)
    if left_out and set(data.known_classes) <= set(prepared.get("known_classes", ())):
        anomalies = tuple(c for c in data.anomaly_classes if c not in left_out)
        data = dataclasses.replace(
            data, known_classes=tuple(prepared["known_classes"]), anomaly_classes=anomalies
        )
    differences = data_differences(prepared, data, "this config")
    if differences:
        raise UserError(
            f"{dataset_dir} was prepared with other data settings ({listing(differences, 4)}): "
            "run `plasticc-jax prepare` with the same --config/--set options first"
        )


def record_training(run_dir: Path, dataset_dir: Path, manifest: Mapping[str, Any]) -> None:
    """`<run>/provenance.json`: the dataset the run trains on (written when training starts)."""
    record = {"dataset": dataset_record(dataset_dir, manifest)}
    atomic_write_text(Path(run_dir) / RECORD, json.dumps(record, indent=2) + "\n")


def trained_on(run_dir: Path) -> dict[str, Any] | None:
    """The dataset record of a run (None for a run trained before provenance was recorded)."""
    path = Path(run_dir) / RECORD
    record = _read_json(path)
    return None if record is None or "dataset" not in record else _part(record, "dataset", path)


def check_run_dataset(
    run_dir: Path, config: Config, dataset_dir: Path, manifest: Mapping[str, Any]
) -> None:
    """A run's consumer (`evaluate`) must read the dataset the run was trained on.

    Runs trained before provenance was recorded are compared by their feature statistics, a copy
    of the dataset's taken when training started.

    Raises:
        UserError: the dataset was prepared again since (other settings or other inputs).
    """
    record = trained_on(run_dir)
    if record is None:
        if not _same_statistics(Path(run_dir) / "stats.json", Path(dataset_dir) / "stats.json"):
            raise UserError(
                f"{dataset_dir} is not the dataset {run_dir} was trained on (its stats.json "
                f"differs), or {run_dir} lost its {RECORD}: prepare the dataset again with the "
                "run's settings (its config.json), or train the run again with them (a finished "
                f"training only writes its {RECORD} again)"
            )
        log.warning(
            "%s records no dataset fingerprint (trained by an older version): checked its "
            "feature statistics instead",
            run_dir,
        )
        return
    if record.get("fingerprint") != manifest.get("fingerprint"):
        prepared = manifest.get("config", {}).get("data", {})
        differences = data_differences(prepared, config.data, "the run's config")
        why = listing(differences, 4) if differences else "other input files"
        raise UserError(
            f"{dataset_dir} is not the dataset {run_dir} was trained on: it was prepared again "
            f"since ({why}). Prepare it again with the run's settings (its config.json), or "
            "train again"
        )


def _same_statistics(run_stats: Path, data_stats: Path) -> bool:
    """Whether the run's feature statistics (those of the network's features) are the dataset's
    for the same features (the dataset has more: an audit found the two files compared whole,
    which never matched)."""
    run, data = _read_json(run_stats), _read_json(data_stats)
    if not (isinstance(run, dict) and isinstance(data, dict)):
        return False
    names, quantiles = run.get("names"), run.get("quantiles")
    if not (isinstance(names, list) and isinstance(quantiles, list) and names):
        return False
    rows = dict(zip(data.get("names") or [], data.get("quantiles") or [], strict=False))
    return len(names) == len(quantiles) and all(
        n in rows and rows[n] == q for n, q in zip(names, quantiles, strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints and the detector.


def _arrays(node: Any, path: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """(path, array) of each leaf of a tree of parameter arrays, in name order."""
    if isinstance(node, Mapping):
        for key in sorted(node, key=str):
            yield from _arrays(node[key], f"{path}/{key}")
    else:
        yield path, np.ascontiguousarray(np.asarray(node))


def params_sha256(params: Mapping[str, Any]) -> str:
    """SHA-256 of a tree of parameter arrays (names, dtypes, shapes and bytes, in name order):
    the same weights give the same hash however the checkpoint is stored."""
    digest = hashlib.sha256()
    for path, array in _arrays(params):
        digest.update(f"{path}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def params_finite(params: Mapping[str, Any]) -> bool:
    """Whether every parameter of a tree of arrays is finite (a damaged file gives NaN)."""
    return all(np.isfinite(array).all() for _, array in _arrays(params))


def checkpoint_record(epoch: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """How outputs name a checkpoint: its epoch and the hash of its parameters."""
    return {"epoch": int(epoch), "sha256": params_sha256(params)}


def record_detector(
    models_dir: Path,
    *,
    checkpoint: Mapping[str, Any],
    dataset: Mapping[str, Any],
    threshold: Mapping[str, Any],
) -> None:
    """`models/provenance.json`: what the detector in `models_dir` was fitted on, and the hash
    of each of its files (written after them)."""
    models_dir = Path(models_dir)
    files = {
        p.name: sha256_file(p)
        for p in sorted(models_dir.iterdir())
        if p.is_file() and p.name != RECORD and not p.name.startswith(".")
    }
    # The run's own files the detector's scores depend on (how light curves are gridded, the
    # feature normalisation): a hand edit would change every score without a word.
    run_files = {
        name: sha256_file(models_dir.parent / name)
        for name in RUN_FILES
        if (models_dir.parent / name).is_file()
    }
    record = {
        "checkpoint": dict(checkpoint),
        "dataset": dict(dataset),
        "threshold": dict(threshold),
        "files": files,
        "run_files": run_files,
    }
    atomic_write_text(models_dir / RECORD, json.dumps(record, indent=2) + "\n")


def model_sha256(run_dir: Path) -> str | None:
    """The SHA-256 of the run's detector record (`models/provenance.json`, which names its
    checkpoint and detector files): what a replay's outputs depend on of the run; None if the
    run has none."""
    from plasticc_jax.io_utils import sha256_file

    record = Path(run_dir) / "models" / RECORD
    return sha256_file(record) if record.is_file() else None


def detector_dataset(run_dir: Path) -> str | None:
    """The fingerprint of the prepared dataset the run's detector was fitted on (its record;
    None for a run evaluated before it was recorded).

    Raises:
        UserError: as `check_detector_files`.
    """
    record = check_detector_files(run_dir)
    return _part(record, "dataset", Path(run_dir) / "models" / RECORD).get("fingerprint")


def check_detector_files(run_dir: Path) -> dict[str, Any]:
    """The detector record of an evaluated run, after checking every file it lists.

    Returns:
        The record (`checkpoint`, `dataset`, `threshold`, `files`).

    Raises:
        UserError: no record (not evaluated, evaluated by an older version, or evaluate did not
            finish), or a detector file missing or changed since (damaged or replaced).
    """
    models = Path(run_dir) / "models"
    record = _read_json(models / RECORD)
    again = f"run `plasticc-jax evaluate` for {run_dir} (again)"
    if record is None:
        why = (
            "it was evaluated by an older version, or its evaluate did not finish"
            if models.is_dir()
            else "it has not been evaluated"
        )
        raise UserError(f"no anomaly detector record in {models / RECORD} ({why}): {again}")
    for key in ("files", "run_files", "checkpoint"):
        _part(record, key, models / RECORD)
    for name, digest in record.get("files", {}).items():
        path = models / name
        if not path.is_file():
            raise UserError(f"{path} is missing: {again}")
        if sha256_file(path) != digest:
            raise UserError(
                f"{path} has changed since evaluate wrote it (its SHA-256 differs): it is "
                f"damaged or was replaced; {again}"
            )
    run_files = record.get("run_files", {})  # absent before this release
    changed = [
        name
        for name, digest in run_files.items()
        if (Path(run_dir) / name).is_file() and sha256_file(Path(run_dir) / name) != digest
    ]
    if len(run_files) > 1 and len(changed) == len(run_files):
        raise UserError(
            f"{models} holds the detector of another run (none of {listing(changed)} is the file "
            f"it was fitted with): copied in from elsewhere, or those files were all edited; "
            f"{again}"
        )
    if changed:
        # The network was trained with its feature statistics: evaluate refuses other ones too
        # (a review: this said "run evaluate again", which then refused).
        remedy = "or train a new run" if changed[0] == "stats.json" else f"or {again}"
        raise UserError(
            f"{Path(run_dir) / changed[0]} has changed since evaluate fitted the detector on this "
            f"run (its SHA-256 differs): restore it, {remedy}"
        )
    return record


def check_checkpoint(run_dir: Path, record: Mapping[str, Any], epoch: int, params: Any) -> None:
    """The detector must have been fitted on the checkpoint that is used with it.

    Raises:
        UserError: the run's best checkpoint is another one (e.g. after more training).
    """
    fitted = record.get("checkpoint", {})
    now = checkpoint_record(epoch, params)
    then = str(fitted.get("sha256"))[:12]
    if fitted.get("sha256") != now["sha256"] and fitted.get("epoch") == now["epoch"]:
        raise UserError(
            f"{run_dir}: the parameters of the checkpoint of epoch {now['epoch']} changed since "
            f"evaluate fitted the anomaly detector on them (sha256 {then} then, "
            f"{now['sha256'][:12]} now): the checkpoint was damaged or replaced; restore it, or "
            f"(if it was replaced on purpose) run `plasticc-jax evaluate` for {run_dir} again"
        )
    if fitted.get("sha256") != now["sha256"]:
        raise UserError(
            f"the anomaly detector of {run_dir} was fitted on the checkpoint of epoch "
            f"{fitted.get('epoch')} (sha256 {then}), but the run's "
            f"best checkpoint is now epoch {now['epoch']} (sha256 {now['sha256'][:12]}), after "
            "more training, or a checkpoint deleted or copied in: run `plasticc-jax evaluate` for "
            f"{run_dir}, then score again"
        )


# ---------------------------------------------------------------------------------------------
# Incomplete outputs.


@contextmanager
def incomplete(run_dir: Path, stage: str) -> Iterator[None]:
    """Mark `run_dir` incomplete while `stage` rewrites its outputs; unmark when it succeeds.

    After an interruption (an error, Ctrl-C, kill -9) the marker stays: the outputs may mix the
    old and the new run of the stage, and `require_complete` refuses them.
    """
    marker = Path(run_dir) / INCOMPLETE
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    atomic_write_text(
        marker,
        f"{stage} started at {now} (pid {os.getpid()} on {socket.gethostname()}) and has not "
        f"finished, so the outputs here may mix old and new ones: run `plasticc-jax {stage}` "
        "for this run again\n",
    )
    yield
    marker.unlink()


def mark_evaluation_stale(run_dir: Path, epoch: int) -> None:
    """Before `train` continues a run that `evaluate` has scored: its scores, metrics, report and
    detector are of an earlier checkpoint, so the run is marked incomplete until `evaluate` runs
    again (found by an audit: `review` went on with the old scores without a word)."""
    run_dir = Path(run_dir)
    if (run_dir / "models" / RECORD).is_file() or (run_dir / "metrics.json").is_file():
        atomic_write_text(
            run_dir / INCOMPLETE,
            f"train continued it after evaluate (from epoch {epoch}), so its scores, metrics, "
            "report and detector describe the training before (and are of an earlier "
            "checkpoint if a later epoch became the best): run `plasticc-jax evaluate` for this "
            "run again\n",
        )


def require_complete(run_dir: Path) -> None:
    """Raises UserError if an interrupted stage left `run_dir` incomplete."""
    marker = Path(run_dir) / INCOMPLETE
    if marker.is_file():
        why = marker.read_text().strip() or "an INCOMPLETE marker is in it"
        raise UserError(f"{run_dir} is incomplete: {why}")


# ---------------------------------------------------------------------------------------------
# The checkpoint a score table was made with, in its Parquet metadata.


# A score table's Parquet metadata names the checkpoint (`provenance.checkpoint_record`) whose
# latent space its `mu_*` columns are in: `review` refuses a table of another run by it.
CHECKPOINT_KEY = b"plasticc_jax.checkpoint"


def with_checkpoint(schema: pa.Schema, checkpoint: Mapping[str, object]) -> pa.Schema:
    """`schema` whose metadata also names `checkpoint` (`CHECKPOINT_KEY`)."""
    named = json.dumps(dict(checkpoint), sort_keys=True).encode()
    return schema.with_metadata({**(schema.metadata or {}), CHECKPOINT_KEY: named})


def write_parquet(
    frame: pd.DataFrame, path: Path | BinaryIO, checkpoint: Mapping[str, object]
) -> None:
    """`frame.to_parquet(path, index=False)` (a path or an open binary file), its metadata
    naming `checkpoint`."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(
        table.replace_schema_metadata(with_checkpoint(table.schema, checkpoint).metadata), path
    )


def table_checkpoint(path: Path) -> dict[str, object] | None:
    """The checkpoint a score table names (`with_checkpoint`; a folder: its first part, at any
    depth, as in a replay's `candidates/night=<N>/`); None for a CSV, a table of an older version
    or one that cannot be read."""
    path = Path(path)
    if path.is_dir():
        path = next(iter(sorted(path.rglob("*.parquet"))), path)
    if not path.is_file() or not path.name.lower().endswith(".parquet"):
        return None
    try:
        named = (pq.read_schema(path).metadata or {}).get(CHECKPOINT_KEY)
        return json.loads(named) if named else None
    except (OSError, ValueError, pa.ArrowException):
        return None
