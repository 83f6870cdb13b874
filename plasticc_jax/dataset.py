"""The prepared dataset on disk: what `prepare` writes and what `train`/`evaluate` read.

Layout of `data/processed/<tag>/` (tag = protocol name, e.g. `rare`):

- `manifest.json`: format version, resolved config, source files with sha256 and row counts,
  objects per split and class, rejections per reason, feature names, the shard list. It is written
  last: a dataset without it is incomplete.
- `stats.json`: each feature's quantiles (`FeatureStats`), from the train split only.
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
  stage          float32 (n,)                days after the first detection at which the light
                                             curve was cut (`early`); inf: the complete curve
  =============  ==========================  =======================================================

A split may hold one object several times: its complete light curve (stage inf, the object
itself) and the same light curve cut at `data.stages` days after its first detection (`early`).
Objects are counted by their complete rows (`LightCurveArrays.complete`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy import special

from plasticc_jax.errors import UserError
from plasticc_jax.threads import map_row_slices

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
    # (n,) float32 days after the first detection at which each row's light curve was cut; inf
    # for the complete light curve (None: all complete).
    stage: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.stage is None:
            object.__setattr__(self, "stage", np.full(len(self.object_id), np.inf, np.float32))

    @property
    def complete(self) -> np.ndarray:
        """(n,) bool: rows holding an object's complete light curve."""
        return np.isinf(self.stage)

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
    """Per-feature normalisation to standard-normal scores, from the train split's quantiles.

    Light-curve features are heavy-tailed (amplitudes over four decades, ratios of noisy fluxes)
    and some are undefined (NaN) for whole groups of objects, so a mean and standard deviation
    would let a few extreme objects set every object's scale. Each feature is instead mapped
    through its empirical CDF on the train split (`N_QUANTILES` quantiles, linear in between, the
    mid-point of tied quantiles, as scikit-learn's `QuantileTransformer` does) and then the
    standard normal's inverse CDF, clipped at +-`CLIP` standard deviations: whatever a feature's
    distribution, its train-split scores are close to standard normal. NaN (undefined) maps to
    0, the median.

    Attributes:
        names: the features, in column order.
        quantiles: (n_features, N_QUANTILES) float64, each row non-decreasing; NaN rows for
            features undefined on the whole train split.
    """

    names: tuple[str, ...]
    quantiles: np.ndarray

    N_QUANTILES = 101
    CLIP = 5.0

    @staticmethod
    def fit(names: tuple[str, ...], features: np.ndarray) -> FeatureStats:
        """The statistics of (n, n_features) raw feature rows (NaN ignored)."""
        levels = np.linspace(0.0, 1.0, FeatureStats.N_QUANTILES)
        values = np.asarray(features, np.float64)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            quantiles = np.nanquantile(values, levels, axis=0).T if len(values) else None
        if quantiles is None:
            quantiles = np.full((values.shape[1], levels.size), np.nan)
        return FeatureStats(tuple(names), np.ascontiguousarray(quantiles))

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """(n, n_features) raw features -> float32 scores (NaN -> 0)."""
        x = np.asarray(features, np.float64)
        parts = map_row_slices(lambda rows: self._normalise(x[rows]), len(x), min_rows=2048)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        levels = np.linspace(0.0, 1.0, self.quantiles.shape[1])
        # A feature undefined on the train split (a NaN quantile row) carries no information: 0.
        p = np.full(x.shape, 0.5)
        for j in np.flatnonzero(~np.isnan(self.quantiles).any(axis=1)):
            q = self.quantiles[j]
            # The mean of the forward and backward interpolation: tied quantiles (a feature
            # that is often exactly 0) map to the middle of their probability range.
            forward = np.interp(x[:, j], q, levels)
            p[:, j] = 0.5 * (forward - np.interp(-x[:, j], -q[::-1], -levels[::-1]))
        # The element-wise rest at once (per feature it cost more than the interpolation).
        z = np.clip(special.ndtri(np.clip(p, 1e-7, 1 - 1e-7)), -self.CLIP, self.CLIP)
        return np.where(np.isnan(x), 0.0, z).astype(np.float32)

    def to_json(self) -> dict:
        quantiles = [[None if np.isnan(v) else float(v) for v in row] for row in self.quantiles]
        return {"names": list(self.names), "quantiles": quantiles}

    def to_text(self) -> str:
        """`stats.json` as written (a dataset's and a run's: compared and hashed as text)."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    @staticmethod
    def from_json(raw: dict) -> FeatureStats:
        if "quantiles" not in raw and {"mean", "std"} <= set(raw):
            raise UserError(
                "from an older version (mean/std normalisation): re-run prepare and train"
            )
        # Anything else without them is damaged: the caller names the file (an audit found
        # `{}` called an older version, with no path).
        quantiles = np.array(
            [[np.nan if v is None else v for v in row] for row in raw["quantiles"]], np.float64
        )
        return FeatureStats(tuple(raw["names"]), quantiles.reshape(len(raw["names"]), -1))


def read_manifest(dataset_dir: Path) -> dict:
    """A prepared dataset's `manifest.json`.

    Raises:
        UserError: no dataset there, or a manifest that is not one (damaged).
    """
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(
            f"no prepared dataset at {dataset_dir} (missing manifest.json): run `make prepare` "
            "(or `plasticc-jax prepare`) with the same config first"
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise UserError(f"{path} is damaged ({error}): run prepare again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), dict):
        raise UserError(f"{path} is damaged (no shard list): run prepare again")
    return manifest


def read_stats(dataset_dir: Path) -> FeatureStats:
    path = Path(dataset_dir) / "stats.json"
    try:
        return FeatureStats.from_json(json.loads(path.read_text()))
    except UserError as error:  # named: a run's and a dataset's stats.json look alike
        raise UserError(f"{path}: {error}") from None


def load_shard(path: Path, sha256: str | None = None) -> LightCurveArrays:
    """One shard; with `sha256` (the manifest's), refused unless its bytes are the ones written.

    Raises:
        UserError: the shard is missing, damaged, or changed since prepare wrote it.
    """
    again = "run prepare again (delete the dataset's manifest.json if it says it is up to date)"
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"dataset shard {path} is missing: {again}") from None
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise UserError(f"dataset shard {path} was changed or damaged since prepare: {again}")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            return LightCurveArrays(
                **{f.name: data[f.name] for f in fields(LightCurveArrays) if f.name in data.files}
            )
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"dataset shard {path} is damaged ({error}): {again}") from None


def iter_split(
    dataset_dir: Path, split: str, *, partial: bool = False
) -> Iterator[LightCurveArrays]:
    """Yield the shards of one split in order (bounded memory for large datasets): the objects'
    complete light curves, and with `partial` their partial ones too (`stage` says which)."""
    if split not in SPLITS:
        raise UserError(f"no split {split!r}: a prepared dataset's splits are {', '.join(SPLITS)}")
    manifest = read_manifest(dataset_dir)
    hashes = manifest.get("shard_sha256", {})  # absent in datasets of earlier releases
    for name in manifest["shards"].get(split, []):
        shard = load_shard(Path(dataset_dir) / name, hashes.get(name))
        yield shard if partial or shard.complete.all() else shard.take(shard.complete)


def load_split(dataset_dir: Path, split: str, *, partial: bool = False) -> LightCurveArrays:
    """Load a whole split into memory (with `partial`, the partial light curves too)."""
    parts = list(iter_split(dataset_dir, split, partial=partial))
    if not parts:
        raise UserError(f"split {split!r} of {dataset_dir} holds no objects")
    return LightCurveArrays.concatenate(parts)
