"""The prepared dataset on disk: what `prepare` writes and what `train`/`evaluate` read.

Layout of `data/processed/<tag>/` (tag = protocol name, e.g. `rare`):

- `manifest.json`: format version, resolved config, source files with sha256 and row counts,
  objects per split and class, rejections per reason, feature names, the shard list. It is written
  last: a dataset without it is incomplete.
- `stats.json`: feature means and standard deviations from the train split only.
- `rejected.csv`: object_id, reason, source, for every input object that is not in a shard.
- `shards/<split>-<index>.npz`: readable with `np.load(allow_pickle=False)`; arrays

  =============  ==========================  =======================================================
  object_id      int64 (n,)
  target         int32 (n,)                  class label, -1 where unknown
  is_anomaly     bool (n,)                   per the protocol
  flux           float32 (n, 6, T)           grid flux divided by the object's amplitude
  flux_err       float32 (n, 6, T)           its error, same scaling; 0 where unobserved
  mask           bool (n, 6, T)              True where the grid cell holds an observation
  features       float32 (n, F)              raw (un-normalised) per-object features
  =============  ==========================  =======================================================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from plasticc_jax.errors import UserError

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class LightCurveArrays:
    """A batch of gridded light curves with labels and features (see the module docstring)."""

    object_id: np.ndarray
    target: np.ndarray
    is_anomaly: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    mask: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return int(self.object_id.shape[0])

    def take(self, index: np.ndarray | slice) -> LightCurveArrays:
        return LightCurveArrays(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_anomalies(self, anomaly_classes: Sequence[int]) -> LightCurveArrays:
        """The same objects with `is_anomaly` set from `target` (True for `anomaly_classes`)."""
        anomalies = np.asarray(anomaly_classes, np.int64)
        return dataclasses.replace(self, is_anomaly=np.isin(self.target, anomalies))

    @staticmethod
    def concatenate(parts: list[LightCurveArrays]) -> LightCurveArrays:
        names = [f.name for f in fields(LightCurveArrays)]
        return LightCurveArrays(
            **{n: np.concatenate([getattr(p, n) for p in parts]) for n in names}
        )


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature normalisation statistics (train split only)."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict:
        return {"names": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @staticmethod
    def from_json(raw: dict) -> FeatureStats:
        return FeatureStats(
            tuple(raw["names"]),
            np.asarray(raw["mean"], np.float32),
            np.asarray(raw["std"], np.float32),
        )


def read_manifest(dataset_dir: Path) -> dict:
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(
            f"no prepared dataset at {dataset_dir} (missing manifest.json): run `make prepare` "
            "(or `plasticc-jax prepare`) with the same config first"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise UserError(f"{path} is damaged ({error}): run prepare again") from None


def read_stats(dataset_dir: Path) -> FeatureStats:
    return FeatureStats.from_json(json.loads((Path(dataset_dir) / "stats.json").read_text()))


def load_shard(path: Path) -> LightCurveArrays:
    with np.load(path, allow_pickle=False) as data:
        return LightCurveArrays(**{f.name: data[f.name] for f in fields(LightCurveArrays)})


def iter_split(dataset_dir: Path, split: str) -> Iterator[LightCurveArrays]:
    """Yield the shards of one split in order (bounded memory for large datasets)."""
    manifest = read_manifest(dataset_dir)
    for name in manifest["shards"].get(split, []):
        yield load_shard(Path(dataset_dir) / name)


def load_split(dataset_dir: Path, split: str) -> LightCurveArrays:
    """Load a whole split into memory."""
    parts = list(iter_split(dataset_dir, split))
    if not parts:
        raise UserError(f"split {split!r} of {dataset_dir} holds no objects")
    return LightCurveArrays.concatenate(parts)
