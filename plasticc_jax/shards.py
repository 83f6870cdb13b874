"""Writing a prepared dataset's shards: objects to splits, fixed-size shards, train statistics.

`split_objects` assigns every object to a split (stratified by class, seeded). `write_shards`
sends gridded chunks to their split's shards (`shards/<split>-<i>.npz`, written by `write_npz`:
the same arrays give the same bytes) and merges the train split's features into its statistics
(`TrainFeatures`) shard by shard, so that `stats_from_shards`, reading the shards back, gives the
same bits. `prepare` writes them in its own process, or on the workers of a Dask cluster
(`plasticc_jax.distributed_prepare`); the layout is `plasticc_jax.dataset`'s.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import plasticc
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import SPLITS, FeatureStats, LightCurveArrays
from plasticc_jax.io_utils import atomic_path

# Split codes of `split_objects`: the index in `dataset.SPLITS`, or LEFT_OUT.
TRAIN, VAL, TEST, LEFT_OUT = 0, 1, 2, -1


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
    codes = np.full(object_id.shape, LEFT_OUT, np.int8)
    codes[np.isin(target, anomalies) | (target == plasticc.UNKNOWN_TARGET)] = TEST
    for cls in sorted(known):
        rows = np.flatnonzero(target == cls)
        rows = rows[np.argsort(object_id[rows], kind="stable")]
        rows = rows[np.random.default_rng([data.seed, cls]).permutation(rows.size)]
        n_test = round(data.test_fraction * rows.size)
        n_val = round(data.val_fraction * rows.size)
        codes[rows[:n_test]] = TEST
        codes[rows[n_test : n_test + n_val]] = VAL
        codes[rows[n_test + n_val :]] = TRAIN
    reasons = {
        int(c): f"class {int(c)} not in protocol" for c in np.unique(target[codes == LEFT_OUT])
    }
    return codes, reasons


class TrainFeatures:
    """The train split's feature rows, kept for its quantiles (`FeatureStats.fit`).

    The train split holds labelled objects only, thousands for PLAsTiCC; beyond `MAX_ROWS` every
    k-th row of the split is kept (k a power of two, doubled as the rows come), so memory stays
    bounded and the result depends neither on chunking nor on where in the files a row is.
    """

    MAX_ROWS = 200_000

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []  # the kept rows' positions in the split
        self.count = 0
        self.stride = 1

    def update(self, features: np.ndarray) -> None:
        position = np.arange(self.count, self.count + len(features))
        self.count += len(features)
        keep = position % self.stride == 0
        self.parts.append(features[keep])
        self.positions.append(position[keep])
        if sum(len(p) for p in self.parts) > 2 * self.MAX_ROWS:
            rows, position = np.concatenate(self.parts), np.concatenate(self.positions)
            while len(position) > 2 * self.MAX_ROWS:
                self.stride *= 2
                keep = position % self.stride == 0
                rows, position = rows[keep], position[keep]
            self.parts, self.positions = [rows], [position]

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
        stats: TrainFeatures | None = None,
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
    stats: TrainFeatures | None = None,
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


def stats_from_shards(out: Path, names: list[str], shard_objects: int) -> TrainFeatures:
    """The train split's feature statistics read back from its shards (features only), merged in
    blocks of `shard_objects` objects as `_ShardWriter` merges them when it writes the shards:
    the same bits, however the objects were cut into shards."""
    stats = TrainFeatures()
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
