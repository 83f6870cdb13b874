"""`make prepare`: light-curve CSVs in `data.raw_dir` to npz shards, splits and statistics.

Writes `data.processed_dir/<tag>/` (layout in `plasticc_jax.dataset`): `shards/<split>-<i>.npz`,
`stats.json` (train split only), `rejected.csv`, `config.json` (the resolved config) and, last,
`manifest.json`. A dataset without a manifest is incomplete: prepare deletes the old manifest
before it writes anything, and every file is written to a temporary name and renamed, so an
interrupted run (even kill -9) leaves nothing that looks complete, and the next run starts over.
A run whose config (the fields that shape the data) and input hashes match the manifest's
fingerprint returns at once; otherwise it rebuilds, and the same inputs give byte-identical files.
The splits, the shards and the train statistics are written by `plasticc_jax.shards`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, plasticc, readers, streaming
from plasticc_jax.config import Config, DataConfig
from plasticc_jax.csv_files import header
from plasticc_jax.dataset import FORMAT_VERSION, SPLITS, read_manifest
from plasticc_jax.errors import UserError, listing
from plasticc_jax.gridding import FEATURE_NAMES, GridSpec
from plasticc_jax.inputs import InputFiles, data_files, expected_names, find_inputs, is_test_file
from plasticc_jax.io_utils import (
    atomic_write_text,
    check_files_unchanged,
    file_stamps,
    folder_lock,
    refuse_overwrite,
    remove_stale_scratch,
    sha256_file,
)
from plasticc_jax.provenance import ADDED_SETTINGS
from plasticc_jax.shards import (
    LEFT_OUT,
    TRAIN,
    VAL,
    TrainFeatures,
    split_objects,
    stats_from_shards,
    write_shards,
)

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

# Bumped when the meaning of the output changes (grid, features, what is rejected), so old
# datasets are rebuilt (2: the detection features; 3: the input validation's rejections; 4: the
# shards' `stage` column and the staged rows of `data.stages`, `early`; 5: the Gaussian-process
# features).
PREPARE_VERSION = 5
# Config fields left out of the fingerprint (performance only, or the source of the same files).
# The folders are in it (`provenance.NOT_CONTENT` leaves them out): moved raw files rebuild the
# dataset.
_NOT_FINGERPRINTED = ("workers", "chunk_rows", "source")


def _inputs(config: Config, workdir: Path) -> InputFiles:
    """The input files of `data.raw_dir`. The default data is fetched only into the default
    folder (`data/raw`) and only when it holds no data files: a folder of the user's own files
    with other names is reported, never filled with a download."""
    data = config.data
    raw = Path(workdir) / data.raw_dir
    inputs = find_inputs(raw, data.inputs)
    default = raw.resolve() == (Path(workdir) / DataConfig.raw_dir).resolve()
    if inputs is not None:
        if default and data.inputs != "test":  # where the download puts the training set
            from plasticc_jax.download import STAGING_PREFIX, warn_unless_published

            remove_stale_scratch(raw, STAGING_PREFIX)  # a killed download's (up to 100 MB)
            warn_unless_published(raw)
        return inputs
    found = data_files(raw)
    if default and not found and data.inputs != "test":
        from plasticc_jax.download import ensure_raw_data  # lazily: only when data is missing

        log.info("no recognised input in %s: fetching the default data", raw)
        ensure_raw_data(config, workdir)
        inputs = find_inputs(raw, data.inputs)
        if inputs is not None:
            return inputs
    what = f"found: {listing(found)}" if found else "it is empty or missing"
    zipped = [name for name in found if name.endswith(".zip")]
    if zipped:  # as Kaggle's command line delivers them: renaming would not do
        raise UserError(
            f"{raw} holds no recognised {data.inputs} files ({what}); {zipped[0]} is a zip "
            f"archive: unzip it there (`unzip -d {raw} {raw / zipped[0]}`; expected "
            f"{expected_names(data.inputs)})"
        )
    # `download` fetches the training set only: no remedy for the test files (an audit).
    fetch = (
        "; this project does not fetch the test set: download it from Zenodo record 2539456 "
        "(docs/data.md)"
        if data.inputs != "train"
        else f", or run `plasticc-jax download --set data.raw_dir={data.raw_dir}` to fetch the "
        "PLAsTiCC training set there"
    )
    raise UserError(
        f"{raw} holds no recognised {data.inputs} files ({what}); expected "
        f"{expected_names(data.inputs)}: rename your files to these names{fetch}"
    )


def _describe(path: Path, workdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(workdir).resolve()))
    except ValueError:
        return str(path)


def _fingerprint(config: Config, hashes: list[tuple[str, str]]) -> str:
    data = {
        k: v for k, v in config_io.to_dict(config)["data"].items() if k not in _NOT_FINGERPRINTED
    }
    for key, before in ADDED_SETTINGS.items():
        if data.get(key) == before:
            # How every dataset was made before the setting existed: its datasets keep their
            # fingerprint (and are not rebuilt); another value changes it.
            del data[key]
    blob = json.dumps(
        {"format": FORMAT_VERSION, "prepare": PREPARE_VERSION, "data": data, "inputs": hashes},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(out: Path, fingerprint: str) -> bool:
    try:
        manifest = read_manifest(out)
    except UserError:  # none, or damaged: prepared again
        return False
    names = [n for split in manifest.get("shards", {}).values() for n in split]
    names += ["stats.json", "rejected.csv", "config.json"]
    if manifest.get("fingerprint") != fingerprint or not all((out / n).is_file() for n in names):
        return False
    hashes = manifest.get("shard_sha256", {})  # absent in datasets of earlier releases
    return all(sha256_file(out / n) == digest for n, digest in hashes.items())


def _clear(out: Path) -> None:
    """Remove the manifest first (the dataset stops looking complete), then the old outputs."""
    (out / "manifest.json").unlink(missing_ok=True)
    for pattern in ("shards/*.npz", "shards/.tmp-*", ".tmp-*"):
        for path in out.glob(pattern):
            if not path.is_dir() or path.is_symlink():  # a folder: another command's scratch
                path.unlink()


def prepare(
    config: Config, workdir: Path, *, dask: str | None = None, part_mb: float | None = None
) -> Path:
    """Read the raw light curves and write the prepared dataset; return its folder.

    Args:
        config: the resolved config (`config.resolve`); `config.data` says which files
            (`inputs`), the grid, the protocol's class lists, the split fractions and seed, chunk
            size and worker count.
        workdir: project folder; relative paths in the config resolve against it.
        dask: grid on this Dask cluster (`distributed.connect`: a scheduler address, a scheduler
            file, or `local:N`); None: in this process. The dataset holds the same objects in
            the same order, the same statistics and rejections; only its shards are cut per
            partition (`distributed_prepare.prepare_shards`).
        part_mb: with `dask`, MB of plain CSV per task.

    Raises:
        UserError: missing or unreadable input, bad columns or values (naming file and line).
    """
    config_lib.require_resolved(config)
    workdir = Path(workdir)
    data = config.data
    inputs = _inputs(config, workdir)
    out = workdir / data.dataset_dir
    log.info(
        "inputs (%s format, %s set): light curves %s; metadata %s",
        inputs.fmt,
        inputs.selection,
        ", ".join(p.name for p in inputs.lightcurves),
        ", ".join(p.name for p in inputs.metadata),
    )
    files = [*inputs.lightcurves, *inputs.metadata]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    log.info(
        "hashing %d input files (%.0f MB) to see whether %s is up to date", len(files), size_mb, out
    )
    stamps = file_stamps(files)
    hashes = [(p.name, sha256_file(p)) for p in files]
    fingerprint = _fingerprint(config, hashes)
    # Checked without the lock (the manifest is written last and renamed into place), so a
    # dataset in use by train or evaluate can still be found up to date.
    if _up_to_date(out, fingerprint):
        log.info("%s is up to date (same config and inputs); nothing to do", out)
        return out
    outputs = [out / n for n in ("manifest.json", "stats.json", "rejected.csv", "config.json")]
    refuse_overwrite(outputs, files, [out / "shards"], what="the prepared dataset's file")
    # One writer at a time, and no reader (train, evaluate) while it changes.
    with folder_lock(out, "prepare"), ExitStack() as stack:
        if _up_to_date(out, fingerprint):  # another prepare made it meanwhile
            log.info("%s is up to date (same config and inputs); nothing to do", out)
            return out
        client = None
        if dask is not None:  # the cluster first: a bad address leaves the old dataset alone
            from plasticc_jax import distributed

            distributed.part_bytes(part_mb)
            client = stack.enter_context(distributed.connect(dask))
        _warn_of_replaced_settings(out, config)
        _check_labelled(inputs)
        # Built beside the dataset and moved in once complete: a prepare that fails (a file
        # truncated at its end, say) leaves the dataset before it usable (a review: it was
        # cleared first, and the runs trained on it could not be evaluated).
        building = out.parent / f".{out.name}.building"
        shutil.rmtree(building, ignore_errors=True)  # a killed build's
        building.mkdir(parents=True)
        _build(
            config, workdir, inputs, building, fingerprint, hashes, client=client, part_mb=part_mb
        )
        check_files_unchanged(stamps)  # not written to since it was hashed (as `score`)
        _install(building, out)
    log.info("wrote %s", out)
    return out


def _install(building: Path, out: Path) -> None:
    """Put a complete build in the dataset's place: the old dataset's files out (its manifest
    first: a kill in between leaves no dataset that looks complete), the new ones in, the
    manifest last. Other files in `out` (another command's scratch) stay."""
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    (out / "shards").mkdir(exist_ok=True)
    for path in sorted((building / "shards").iterdir()):
        os.replace(path, out / "shards" / path.name)
    for path in sorted(building.iterdir()):
        if path.is_file() and path.name != "manifest.json":
            os.replace(path, out / path.name)
    os.replace(building / "manifest.json", out / "manifest.json")
    shutil.rmtree(building)


def _check_labelled(inputs: InputFiles) -> None:
    """`prepare` trains on the known classes' labels: metadata without a label column cannot
    make a training set (a review: "no object of the known classes reached the train split",
    after the old dataset was cleared).

    Raises:
        UserError: no metadata file has a `target` or `true_target` column.
    """
    for path in inputs.metadata:
        if set(plasticc.LABEL_COLUMNS) & {name.strip().lower() for name in header(path)}:
            return
    raise UserError(
        f"{', '.join(str(p) for p in inputs.metadata)}: no label column (target or "
        "true_target): prepare trains the model on the labelled objects of the known classes; "
        "score unlabelled light curves with a trained run (plasticc-jax score)"
    )


def _warn_of_replaced_settings(out: Path, config: Config) -> None:
    """Say so when the dataset about to be replaced was prepared with other data settings (a
    preset sharing the folder, such as `tiny`, or a `--set data.*`): the runs trained on it
    cannot be evaluated until it is prepared again with theirs (found by a review of the
    presets: it was replaced without a word)."""
    try:
        before = read_manifest(out).get("config", {}).get("data", {})
    except UserError:  # none, or damaged
        return
    now = json.loads(json.dumps(config_io.to_dict(config)["data"]))  # as the manifest holds it
    differ = [
        f"data.{key} {before[key]!r} -> {now[key]!r}"
        for key in sorted(set(before) & set(now))
        if key not in _NOT_FINGERPRINTED and before[key] != now[key]  # what rebuilt it
    ]
    if differ:
        log.warning(
            "replacing %s, prepared with other settings (%s%s): runs trained on it cannot be "
            "evaluated until it is prepared again with theirs; give this preset a "
            "data.processed_dir of its own to keep both",
            out,
            ", ".join(differ[:3]),
            ", ..." if len(differ) > 3 else "",
        )


def _warn_test_truth_in_training(
    inputs: InputFiles, metadata: pd.DataFrame, codes: np.ndarray
) -> None:
    """Say so when the test set's hidden truth trains the model: objects of a test metadata file
    labelled by its `true_target` alone (the unblinded release's truth; the survey never had it)
    that the split puts in train or val (`data.inputs=test` or `all`)."""
    for index, path in enumerate(inputs.metadata):
        columns = {name.strip().lower() for name in header(path)}
        if "target" in columns or "true_target" not in columns or not is_test_file(path):
            continue
        fitted = (metadata["source"].to_numpy() == index) & np.isin(codes, (TRAIN, VAL))
        if fitted.any():
            log.warning(
                "%s: %d objects of known classes, labelled by true_target (the test set's "
                "unblinded truth, which the survey never had), are split into train and val like "
                "the training set's: the model trains on them. To keep the test set for "
                "evaluation only, prepare the training files (data.inputs=train, the default) and "
                "score the test files with the run (docs/data.md)",
                path.name,
                int(fitted.sum()),
            )


def _build(
    config: Config,
    workdir: Path,
    inputs: InputFiles,
    out: Path,
    fingerprint: str,
    hashes: list[tuple[str, str]],
    *,
    client: Client | None = None,
    part_mb: float | None = None,
) -> None:
    """Write the dataset into `out` (an empty folder), the manifest last; with `client`, the
    gridding and the shards run on its Dask cluster (`prepare`), while this process holds the
    dataset's lock."""
    data = config.data
    known, anomalies = data.known_classes, data.anomaly_classes
    files = [*inputs.lightcurves, *inputs.metadata]
    metadata = readers.read_metadata_files(inputs.metadata)
    _check_classes_present(metadata["target"].to_numpy(), data, inputs)
    codes, class_reasons = split_objects(
        metadata["object_id"].to_numpy(), metadata["target"].to_numpy(), data
    )
    _warn_test_truth_in_training(inputs, metadata, codes)
    meta_names = [p.name for p in inputs.metadata]
    left_out = codes == LEFT_OUT
    rejected_parts = [
        pd.DataFrame(
            {
                "object_id": metadata["object_id"][left_out].to_numpy(),
                "reason": [class_reasons[int(t)] for t in metadata["target"][left_out]],
                "source": [meta_names[s] for s in metadata["source"][left_out]],
            }
        )
    ]
    log.info(
        "%d objects in metadata; protocol %s: known %s, anomalies %s; %d left out",
        len(metadata),
        data.tag,
        list(known),
        list(anomalies),
        int(left_out.sum()),
    )
    order = np.argsort(metadata["object_id"].to_numpy(), kind="stable")
    sorted_ids = metadata["object_id"].to_numpy()[order]
    sorted_codes = codes[order]

    exclude = metadata["object_id"].to_numpy()[left_out]
    stage_rows: dict[str, Counter] = {s: Counter() for s in SPLITS}
    if client is None:
        stats = TrainFeatures()
        file_rows: list[int] = []
        stream = streaming.stream_grids(
            inputs.lightcurves,
            inputs.metadata,
            data,
            metadata=metadata,
            exclude=exclude,
            file_rows=file_rows,
            stages=data.stages,
        )
        shards, counts, grid_rejected = write_shards(
            stream, out, data, sorted_ids, sorted_codes, stats=stats, stage_rows=stage_rows
        )
    else:
        from plasticc_jax import distributed_prepare

        shards, counts, grid_rejected, file_rows = distributed_prepare.prepare_shards(
            client, inputs, metadata, exclude, out, data, part_mb=part_mb, stage_rows=stage_rows
        )
        stats = stats_from_shards(out, shards["train"], data.shard_objects)
    rejected_parts += grid_rejected
    rejected = pd.concat(rejected_parts, ignore_index=True)
    # Written before the check below, so the file the message points to is this run's.
    atomic_write_text(out / "rejected.csv", rejected.to_csv(index=False))
    if stats.count == 0:
        raise UserError(
            f"no object of the known classes {list(known)} reached the train split "
            f"({len(rejected):,} objects not in the dataset, left out by the protocol or rejected, "
            "each with its reason in "
            f"{out / 'rejected.csv'}); check the input and the protocol (data.protocol / "
            "data.known_classes)"
        )
    if not counts["val"]:
        # It calibrates the detector: every later stage needed it, and train said only that it
        # held no objects (an audit: data.val_fraction=0.001).
        raise UserError(
            f"no known object reached the val split (data.val_fraction={data.val_fraction} of "
            f"{sum(counts['train'].values()) + sum(counts['test'][c] for c in known):,} known "
            "objects): raise data.val_fraction"
        )
    feature_stats = stats.result(FEATURE_NAMES)
    atomic_write_text(out / "stats.json", feature_stats.to_text())
    config_io.save_config(config, out / "config.json")

    n_no_metadata = int((rejected["reason"] == streaming.NO_METADATA).sum())
    input_objects = len(metadata) + n_no_metadata
    n_out = sum(sum(c.values()) for c in counts.values())
    if n_out + len(rejected) != input_objects or rejected["object_id"].duplicated().any():
        raise RuntimeError(  # a bug, not a user error: every object must be counted once
            f"counts do not add up: {n_out} in shards + {len(rejected)} rejected "
            f"!= {input_objects} input objects"
        )
    rows = dict(zip([p.name for p in inputs.lightcurves], file_rows, strict=True))
    rows.update({n: int((metadata["source"] == i).sum()) for i, n in enumerate(meta_names)})
    manifest = {
        "format_version": FORMAT_VERSION,
        "prepare_version": PREPARE_VERSION,
        "fingerprint": fingerprint,
        "config": config_io.to_dict(config),
        "inputs": {
            "format": inputs.fmt,
            "selection": inputs.selection,
            "files": [
                {
                    "path": _describe(p, workdir),
                    "kind": "lightcurves" if p in inputs.lightcurves else "metadata",
                    "sha256": digest,
                    "rows": rows[p.name],
                }
                for p, (_, digest) in zip(files, hashes, strict=True)
            ],
        },
        "classes": {"known": list(known), "anomalies": list(anomalies)},
        "input_objects": input_objects,
        "objects": {s: sum(counts[s].values()) for s in SPLITS},
        "counts": {s: {str(k): v for k, v in sorted(counts[s].items())} for s in SPLITS},
        "stages": list(data.stages),
        # Rows per split and stage (days after the first detection; "inf": complete curves).
        "stage_rows": {s: {str(k): v for k, v in sorted(stage_rows[s].items())} for s in SPLITS},
        "rejected": {
            "total": len(rejected),
            "by_reason": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
        },
        "feature_names": list(FEATURE_NAMES),
        "grid": GridSpec.from_config(data).describe(),
        "shards": shards,
        # Read back by `dataset.iter_split` and the up-to-date check: a shard changed or damaged
        # since is refused (and prepared again), never read as if it were the dataset.
        "shard_sha256": {n: sha256_file(out / n) for names in shards.values() for n in names},
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    n_left_out = int(left_out.sum())
    log.info(
        "prepared %s objects (train %d, val %d, test %d); %d not in it (%d left out by the "
        "protocol, %d rejected), each with its reason in rejected.csv",
        n_out,
        *(manifest["objects"][s] for s in SPLITS),
        len(rejected),
        n_left_out,
        len(rejected) - n_left_out,
    )


def _check_classes_present(target: np.ndarray, data: DataConfig, inputs: InputFiles) -> None:
    """Labelled input must hold the protocol's anomaly classes, or every metric would be NaN.

    Unlabelled input (the Kaggle test set) is fine: nothing is measured on it. A known class
    missing from the input is only worth a warning (the others still train the model).

    Raises:
        UserError: labelled input without any object of the anomaly classes.
    """
    labelled = np.unique(target[target != plasticc.UNKNOWN_TARGET])
    if not labelled.size:
        return
    names = ", ".join(p.name for p in inputs.metadata)
    present = set(labelled.tolist())
    if not present & set(data.anomaly_classes):
        raise UserError(
            f"none of the anomaly classes {list(data.anomaly_classes)} is in the labels of "
            f"{names} (classes there: {listing(sorted(present), 20)}): choose "
            "data.anomaly_classes (or data.protocol) among them"
        )
    for key in ("known_classes", "anomaly_classes"):
        absent = [c for c in getattr(data, key) if c not in present]
        if absent:
            log.warning("data.%s %s: no object of these classes in %s", key, absent, names)
