"""Baseline (a): an Isolation Forest on hand-crafted light-curve features.

Features come from the `light-curve` package (Malanchev et al. 2021, the extractor the SNAD
anomaly-detection team uses), computed per passband from the raw observations, not the grid:

- each object's flux and flux_err are divided by its largest |flux| so shape features do not just
  measure distance; the brightness itself enters once, as log10 of the peak signal-to-noise;
- per passband (u, g, r, i, z, y): amplitude, fraction beyond 1 sigma, cusum, von Neumann eta,
  10-90% inter-percentile range, kurtosis, linear fit (slope, its error, reduced chi2), maximum
  slope, skew, Stetson K, standard deviation, reduced chi2 about the weighted mean;
- a feature undefined for an object (too few points in a band) is NaN, then imputed with the
  median of the objects the forest is fitted on.

The forest uses the same settings as the latent-space forest and is fitted on the same objects
(train split, known classes), so the comparison is like for like.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import light_curve as lc
import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from plasticc_jax import plasticc
from plasticc_jax.config import EvalConfig
from plasticc_jax.dataset import read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.readers import read_lightcurves

log = logging.getLogger(__name__)

BANDS: tuple[str, ...] = tuple(str(b) for b in range(plasticc.N_PASSBANDS))


def make_extractor() -> lc.Extractor:
    """The multi-band feature extractor (features concatenated in passband order)."""
    bands = list(BANDS)
    return lc.Extractor(
        lc.Amplitude(bands=bands),
        lc.BeyondNStd(1.0, bands=bands),
        lc.Cusum(bands=bands),
        lc.Eta(bands=bands),
        lc.InterPercentileRange(0.1, bands=bands),
        lc.Kurtosis(bands=bands),
        lc.LinearFit(bands=bands),
        lc.MaximumSlope(bands=bands),
        lc.Skew(bands=bands),
        lc.StetsonK(bands=bands),
        lc.StandardDeviation(bands=bands),
        lc.ReducedChi2(bands=bands),
    )


def feature_names() -> tuple[str, ...]:
    return (*make_extractor().names, "log10_peak_snr")


def read_raw_lightcurves(dataset_dir: Path, workdir: Path, object_ids: np.ndarray) -> pd.DataFrame:
    """Raw observations of the given objects, from the light-curve files a prepared dataset's
    manifest names (paths relative to `workdir`).

    Raises:
        UserError: one of those files is gone.
    """
    frames = []
    for entry in read_manifest(dataset_dir)["inputs"]["files"]:
        if entry["kind"] != "lightcurves":
            continue
        path = Path(entry["path"])
        path = path if path.is_absolute() else workdir / path
        if not path.is_file():
            raise UserError(
                f"{path}, an input of {dataset_dir}, is missing: the light-curve-feature baseline "
                "reads the raw observations; restore it or set eval.baselines=false"
            )
        rows = read_lightcurves(path)
        frames.append(rows[rows["object_id"].isin(object_ids)])
    return pd.concat(frames, ignore_index=True)


def lightcurve_features(
    lightcurves: pd.DataFrame, object_ids: np.ndarray, n_jobs: int = -1
) -> np.ndarray:
    """Hand-crafted features of each object's raw observations.

    Args:
        lightcurves: canonical rows (object_id, mjd, passband, flux, flux_err, ...); any order;
            rows of objects not in `object_ids` are ignored.
        object_ids: (n,) the objects wanted, in the output's row order.
        n_jobs: threads for the extractor (-1: one per CPU).

    Returns:
        (n, len(feature_names())) float32; NaN where a feature is undefined (also for objects
        without any rows).
    """
    object_ids = np.asarray(object_ids, np.int64)
    names = feature_names()
    out = np.full((len(object_ids), len(names)), np.nan, np.float32)
    rows = lightcurves[lightcurves["object_id"].isin(object_ids)]
    if rows.empty:
        return out
    rows = rows.sort_values(["object_id", "mjd"], kind="stable")
    oid = rows["object_id"].to_numpy(np.int64)
    t = rows["mjd"].to_numpy(np.float64)
    flux = rows["flux"].to_numpy(np.float64)
    err = rows["flux_err"].to_numpy(np.float64)
    band = rows["passband"].to_numpy().astype(np.int64).astype(str)
    starts = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
    bounds = np.r_[starts, len(oid)]
    peak = np.maximum.reduceat(np.abs(flux), starts)
    peak = np.where(peak > 0, peak, 1.0)
    scale = np.repeat(peak, np.diff(bounds))
    flux, err = flux / scale, err / scale
    curves = [(t[a:b], flux[a:b], err[a:b], band[a:b]) for a, b in itertools.pairwise(bounds)]
    values = make_extractor().many(
        curves, fill_value=np.nan, sorted=True, check=False, n_jobs=n_jobs
    )
    median_err = np.array([np.median(err[a:b]) for a, b in itertools.pairwise(bounds)])
    snr = np.log10(1.0 / np.maximum(median_err, 1e-12))
    found = pd.Index(object_ids).get_indexer(oid[starts])
    out[found] = np.column_stack([values, snr]).astype(np.float32)
    log.debug(
        "%d light-curve features of %d objects (%d without rows)",
        len(names),
        len(out),
        len(out) - len(starts),
    )
    return out


class FeatureForest:
    """Isolation Forest on a feature matrix with NaNs imputed by the fitting set's medians."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.medians: np.ndarray | None = None
        self.forest: IsolationForest | None = None

    def fit(self, features: np.ndarray, is_anomaly: np.ndarray) -> FeatureForest:
        """Fit on (n, F) features of known objects (`is_anomaly` must be all False)."""
        if np.asarray(is_anomaly).any():
            raise ValueError("anomaly objects must never reach the Isolation Forest fit")
        medians = np.nanmedian(features, axis=0)
        self.medians = np.where(np.isfinite(medians), medians, 0.0)
        self.forest = IsolationForest(
            n_estimators=self.config.n_estimators,
            max_samples=min(self.config.max_samples, len(features)),
            random_state=self.config.seed,
        ).fit(self._impute(features))
        return self

    def _impute(self, features: np.ndarray) -> np.ndarray:
        assert self.medians is not None
        x = np.array(features, np.float32)
        bad = ~np.isfinite(x)
        x[bad] = np.broadcast_to(self.medians, x.shape)[bad]
        return x

    def score(self, features: np.ndarray) -> np.ndarray:
        """Anomaly score (n,) float64, higher = more anomalous."""
        assert self.forest is not None, "fit first"
        return -self.forest.score_samples(self._impute(features)).astype(np.float64)
