"""`make prepare`: light-curve CSVs in `data.raw_dir` to npz shards, splits and statistics.

Writes `data.processed_dir/<tag>/` (layout in `plasticc_jax.dataset`): `shards/<split>-<i>.npz`,
`stats.json` (train split only), `rejected.csv`, `config.json` (the resolved config) and, last,
`manifest.json`. A dataset without a manifest is incomplete: prepare deletes the old manifest
before it writes anything, and every file is written to a temporary name and renamed, so an
interrupted run (even kill -9) leaves nothing that looks complete, and the next run starts over.
A run whose config (the fields that shape the data) and input hashes match the manifest's
fingerprint returns at once; otherwise it rebuilds, and the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import config as config_lib
from plasticc_jax import plasticc, readers, streaming
from plasticc_jax.config import Config, DataConfig
from plasticc_jax.dataset import FORMAT_VERSION, SPLITS, FeatureStats, LightCurveArrays
from plasticc_jax.errors import UserError, listing
from plasticc_jax.gridding import FEATURE_NAMES, GridSpec
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write_text,
    folder_lock,
    refuse_overwrite,
    sha256_file,
)

log = logging.getLogger(__name__)

# Bumped when the meaning of the output changes (grid, features, what is rejected), so old
# datasets are rebuilt (2: the detection features; 3: the input validation's rejections; 4: the
# shards' `stage` column and the staged rows of `data.stages`, `early`).
PREPARE_VERSION = 4
# Config fields that do not change the output (performance only, or where files come from).
_NOT_FINGERPRINTED = ("workers", "chunk_rows", "source")
_TRAIN, _VAL, _TEST, _REJECTED = 0, 1, 2, -1


def split_objects(
    object_id: np.ndarray, target: np.ndarray, data: DataConfig
) -> tuple[np.ndarray, dict[int, str]]:
    """Assign each object to a split, stratified by class and reproducible from `data.seed`.

    Known classes are split train/val/test by `data.val_fraction` and `data.test_fraction`, each
    class with its own seeded permutation of its object ids (sorted first, so the file's row order
    does not matter). Anomaly-class and unlabelled (-1) objects go to test only. Objects of other
    classes are left out.

    Args:
        object_id, target: (n,) per object.
        data: a resolved data config (its class lists filled in).

    Returns:
        (n,) int8 codes (0 train, 1 val, 2 test, -1 left out), and for left-out objects' classes
        the reason.
    """
    known, anomalies = data.known_classes, data.anomaly_classes
    codes = np.full(object_id.shape, _REJECTED, np.int8)
    codes[np.isin(target, anomalies) | (target == plasticc.UNKNOWN_TARGET)] = _TEST
    for cls in sorted(known):
        rows = np.flatnonzero(target == cls)
        rows = rows[np.argsort(object_id[rows], kind="stable")]
        rows = rows[np.random.default_rng([data.seed, cls]).permutation(rows.size)]
        n_test = round(data.test_fraction * rows.size)
        n_val = round(data.val_fraction * rows.size)
        codes[rows[:n_test]] = _TEST
        codes[rows[n_test : n_test + n_val]] = _VAL
        codes[rows[n_test + n_val :]] = _TRAIN
    reasons = {
        int(c): f"class {int(c)} not in protocol" for c in np.unique(target[codes == _REJECTED])
    }
    return codes, reasons


class _TrainFeatures:
    """The train split's feature rows, kept for its quantiles (`FeatureStats.fit`).

    The train split holds labelled objects only, thousands for PLAsTiCC; beyond `MAX_ROWS` every
    k-th row is kept, so memory stays bounded and the result does not depend on chunking.
    """

    MAX_ROWS = 200_000

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.count = 0

    def update(self, features: np.ndarray) -> None:
        self.parts.append(features)
        self.count += len(features)
        kept = sum(len(p) for p in self.parts)
        if kept > 2 * self.MAX_ROWS:
            self.parts = [np.concatenate(self.parts)[::2]]

    def result(self, names: tuple[str, ...]) -> FeatureStats:
        rows = np.concatenate(self.parts) if self.parts else np.zeros((0, len(names)))
        return FeatureStats.fit(names, rows)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like `np.savez` (readable with `np.load(allow_pickle=False)`), atomically, with fixed zip
    timestamps so the same arrays give the same bytes."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


class _ShardWriter:
    """Buffers one split's objects and writes `shards/<split>-<prefix><index>.npz` of a fixed
    size."""

    def __init__(
        self,
        out: Path,
        split: str,
        shard_objects: int,
        stats: _TrainFeatures | None = None,
        prefix: str = "",
    ) -> None:
        self.out, self.split, self.size = out, split, max(int(shard_objects), 1)
        self.prefix = prefix
        # Statistics are merged shard by shard: shards do not depend on the chunk size, so
        # neither do the statistics' last bits.
        self.stats = stats
        self.buffer: list[LightCurveArrays] = []
        self.buffered = 0
        self.names: list[str] = []

    def add(self, arrays: LightCurveArrays) -> None:
        if len(arrays):
            self.buffer.append(arrays)
            self.buffered += len(arrays)
        while self.buffered >= self.size:
            self._write(self.size)

    def close(self) -> list[str]:
        if self.buffered:
            self._write(self.buffered)
        return self.names

    def _write(self, n: int) -> None:
        merged = LightCurveArrays.concatenate(self.buffer)
        name = f"shards/{self.split}-{self.prefix}{len(self.names):05d}.npz"
        shard = merged.take(slice(0, n))
        write_npz(self.out / name, shard.to_dict())
        if self.stats is not None:
            self.stats.update(shard.features)
        self.names.append(name)
        rest = merged.take(slice(n, None))
        self.buffer, self.buffered = ([rest] if len(rest) else []), len(rest)


def write_shards(
    grids: Iterable[tuple[LightCurveArrays, pd.DataFrame]],
    out: Path,
    data: DataConfig,
    sorted_ids: np.ndarray,
    sorted_codes: np.ndarray,
    *,
    stats: _TrainFeatures | None = None,
    prefix: str = "",
    stage_rows: dict[str, Counter] | None = None,
) -> tuple[dict[str, list[str]], dict[str, Counter], list[pd.DataFrame]]:
    """Send gridded chunks (`streaming.stream_grids`) to their splits' shards.

    Args:
        grids: the chunks; out: the dataset folder; data: the resolved data config.
        sorted_ids, sorted_codes: every object's split code (`split_objects`), by object_id.
        stats: merges the train shards' features, if given.
        prefix: in the shard names, after the split's (`shards/<split>-<prefix><index>.npz`).
        stage_rows: if given, receives the rows per split and stage (`LightCurveArrays.stage`:
            inf for complete light curves, else the days of a staged row, `data.stages`).

    Returns:
        The shard names of each split, the objects (complete light curves) per split and class,
        the rejection frames.
    """
    writers = {
        s: _ShardWriter(out, s, data.shard_objects, stats if s == "train" else None, prefix)
        for s in SPLITS
    }
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    rejected_parts: list[pd.DataFrame] = []
    for arrays, rejected in grids:
        if len(rejected):
            rejected_parts.append(rejected)
        if not len(arrays):
            continue
        arrays = arrays.with_anomalies(data.anomaly_classes)
        split = sorted_codes[np.searchsorted(sorted_ids, arrays.object_id)]
        for code, name in enumerate(SPLITS):
            part = arrays.take(np.flatnonzero(split == code))
            writers[name].add(part)
            counts[name].update(part.target[part.complete].tolist())
            if stage_rows is not None:
                stage_rows[name].update(part.stage.tolist())
    return {s: writers[s].close() for s in SPLITS}, counts, rejected_parts


def stats_from_shards(out: Path, names: list[str], shard_objects: int) -> _TrainFeatures:
    """The train split's feature statistics read back from its shards (features only), merged in
    blocks of `shard_objects` objects as `_ShardWriter` merges them when it writes the shards:
    the same bits, however the objects were cut into shards."""
    stats = _TrainFeatures()
    size = max(int(shard_objects), 1)
    pending: list[np.ndarray] = []
    n_pending = 0
    for name in names:
        with np.load(out / name, allow_pickle=False) as shard:
            pending.append(shard["features"])
        n_pending += len(pending[-1])
        while n_pending >= size:
            merged = np.concatenate(pending)
            stats.update(merged[:size])
            pending, n_pending = [merged[size:]], n_pending - size
    if n_pending:
        stats.update(np.concatenate(pending))
    return stats


def _inputs(config: Config, workdir: Path) -> readers.InputFiles:
    """The input files of `data.raw_dir`. The default data is fetched only into the default
    folder (`data/raw`) and only when it holds no data files: a folder of the user's own files
    with other names is reported, never filled with a download."""
    data = config.data
    raw = Path(workdir) / data.raw_dir
    inputs = readers.find_inputs(raw, data.inputs)
    if inputs is not None:
        return inputs
    found = readers.data_files(raw)
    default = raw.resolve() == (Path(workdir) / DataConfig.raw_dir).resolve()
    if default and not found and data.inputs != "test":
        from plasticc_jax.download import ensure_raw_data  # lazily: only when data is missing

        log.info("no recognised input in %s: fetching the default data", raw)
        ensure_raw_data(config, workdir)
        inputs = readers.find_inputs(raw, data.inputs)
        if inputs is not None:
            return inputs
    what = f"found: {listing(found)}" if found else "it is empty or missing"
    raise UserError(
        f"{raw} holds no recognised {data.inputs} files ({what}); expected "
        f"{readers.expected_names(data.inputs)}: rename your files to these names, or run "
        f"`plasticc-jax download --set data.raw_dir={data.raw_dir}` to fetch the PLAsTiCC "
        "training set there"
    )


def _describe(path: Path, workdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(workdir).resolve()))
    except ValueError:
        return str(path)


def _fingerprint(config: Config, hashes: list[tuple[str, str]]) -> str:
    data = {
        k: v for k, v in config_lib.to_dict(config)["data"].items() if k not in _NOT_FINGERPRINTED
    }
    blob = json.dumps(
        {"format": FORMAT_VERSION, "prepare": PREPARE_VERSION, "data": data, "inputs": hashes},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(out: Path, fingerprint: str) -> bool:
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    names = [n for split in manifest.get("shards", {}).values() for n in split]
    names += ["stats.json", "rejected.csv", "config.json"]
    return manifest.get("fingerprint") == fingerprint and all((out / n).is_file() for n in names)


def _clear(out: Path) -> None:
    """Remove the manifest first (the dataset stops looking complete), then the old outputs."""
    (out / "manifest.json").unlink(missing_ok=True)
    for pattern in ("shards/*.npz", "shards/.tmp-*", ".tmp-*"):
        for path in out.glob(pattern):
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
            partition (`distributed.prepare_shards`).
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
    with folder_lock(out, "prepare"):
        if _up_to_date(out, fingerprint):  # another prepare made it meanwhile
            log.info("%s is up to date (same config and inputs); nothing to do", out)
            return out
        _clear(out)
        _build(config, workdir, inputs, out, fingerprint, hashes, dask=dask, part_mb=part_mb)
    return out


def _build(
    config: Config,
    workdir: Path,
    inputs: readers.InputFiles,
    out: Path,
    fingerprint: str,
    hashes: list[tuple[str, str]],
    *,
    dask: str | None = None,
    part_mb: float | None = None,
) -> None:
    """Write the dataset into `out` (emptied by `_clear`), the manifest last; with `dask`, the
    gridding and the shards run on that Dask cluster (`prepare`), while this process holds the
    dataset's lock."""
    data = config.data
    known, anomalies = data.known_classes, data.anomaly_classes
    files = [*inputs.lightcurves, *inputs.metadata]
    metadata = readers.read_metadata_files(inputs.metadata)
    _check_classes_present(metadata["target"].to_numpy(), data, inputs)
    codes, class_reasons = split_objects(
        metadata["object_id"].to_numpy(), metadata["target"].to_numpy(), data
    )
    meta_names = [p.name for p in inputs.metadata]
    left_out = codes == _REJECTED
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
        data.protocol,
        list(known),
        list(anomalies),
        int(left_out.sum()),
    )
    order = np.argsort(metadata["object_id"].to_numpy(), kind="stable")
    sorted_ids = metadata["object_id"].to_numpy()[order]
    sorted_codes = codes[order]

    exclude = metadata["object_id"].to_numpy()[left_out]
    stage_rows: dict[str, Counter] = {s: Counter() for s in SPLITS}
    if dask is None:
        stats = _TrainFeatures()
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
        from plasticc_jax import distributed

        shards, counts, grid_rejected, file_rows = distributed.prepare_shards(
            dask, inputs, metadata, exclude, out, data, part_mb=part_mb, stage_rows=stage_rows
        )
        stats = stats_from_shards(out, shards["train"], data.shard_objects)
    rejected_parts += grid_rejected
    rejected = pd.concat(rejected_parts, ignore_index=True)
    # Written before the check below, so the file the message points to is this run's.
    atomic_write_text(out / "rejected.csv", rejected.to_csv(index=False))
    if stats.count == 0:
        raise UserError(
            f"no object of the known classes {list(known)} reached the train split "
            f"({len(rejected):,} objects rejected, each with its reason in "
            f"{out / 'rejected.csv'}); check the input and the protocol (data.protocol / "
            "data.known_classes)"
        )
    feature_stats = stats.result(FEATURE_NAMES)
    atomic_write_text(out / "stats.json", json.dumps(feature_stats.to_json(), indent=2) + "\n")
    config_lib.save_config(config, out / "config.json")

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
        "config": config_lib.to_dict(config),
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
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    log.info(
        "wrote %s: %s objects (train %d, val %d, test %d), %d rejected",
        out,
        n_out,
        *(manifest["objects"][s] for s in SPLITS),
        len(rejected),
    )


def _check_classes_present(
    target: np.ndarray, data: DataConfig, inputs: readers.InputFiles
) -> None:
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
