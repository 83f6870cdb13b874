"""Would avocado's Gaussian-process light-curve features help the classifier? (research, #10)

    python scripts/gp_features_probe.py RUN [--raw LIGHTCURVES] [--workdir W] [--out FILE]
    # RUN: with `make validate`; LIGHTCURVES: the training light curves (default: the workdir's
    # data/raw/plasticc_train_lightcurves.csv.gz, as `make prepare` fetched them)

PLAsTiCC's winning classifier (avocado, Boone 2019) describes each light curve by a Gaussian
process fitted jointly in time and wavelength, and reads its features off the smooth model:
colours at and after the peak, rise and decline times, widths, the number of peaks. The
shipped `classifier` reads features computed from the raw points (`features.py`), which are
noisy for faint objects and undefined where a band has no point near the peak. The parametric
(Bazin) fits were tried before and gave nothing (docs/evaluation.md); a Gaussian process has no
assumed shape.

The process, per object (NumPy, one object at a time): a Matern-3/2 kernel over (time,
wavelength), wavelength length scale 6,000 Angstrom (avocado's), amplitude 1 on the flux divided
by the object's largest |flux|, the flux errors as noise, the time length scale the best of
{5, 10, 20, 40, 80} days by marginal likelihood; fitted on the points inside the grid's window
(`data.window_before` days before the brightest detection to `data.window_after` after), as a
scoring-time version would have to be (the cost grows with the cube of the points). The mean is
predicted in the six passbands on a one-day grid over that window, and `GP_NAMES` read from it
(`gp_features`). Galactic and extragalactic objects alike; times divided by 1 + hostgal_photoz
too (rest frame; galactic objects: the same).

Candidate (`gp_classifier`): the shipped classifier's trees and settings on its features plus
the GP features, fitted and calibrated per fold and kind exactly as `validate` fits the
`classifier` component (`validation_probe.classifier_fold_columns`; the shipped score
recomputed is checked against the stored one). Only the train and val splits' known objects are
read, never the test split; the held-out class of each fold is scored, never fitted.

THE RULE, written before the run (2026-12-02): the candidate passes only if its best fusion found
(in the classifier's place or beside it) beats the shipped fusion by more than twice the
standard error of the paired per-fold differences (docs/evaluation.md's rule). Even then it is
not shipped by this probe: the per-object NumPy fit scores about a hundred objects a second, far
from the 20,000 objects/s target, so a pass makes a batched fit (JAX) the next step, to be
validated again with the package's own code before the test split is evaluated.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from validation_probe import (
    classifier_fold_columns,
    compare_with_classifier,
    evidence,
    read_validation,
    with_fold_columns,
)

from plasticc_jax import plasticc
from plasticc_jax.components import Classifier
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES, reference_rows
from plasticc_jax.lightcurve_rows import read_files

# LSST passbands' effective wavelengths (Angstrom), u g r i z y, as avocado uses them.
WAVELENGTHS = np.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0])
WAVELENGTH_SCALE = 6000.0
LENGTH_SCALES = (5.0, 10.0, 20.0, 40.0, 80.0)
EPOCHS = (-10.0, 20.0, 50.0)  # days after the model's peak for the colour summaries

GP_NAMES: tuple[str, ...] = (
    "gp_log10_length_scale",
    "gp_peak_offset",
    *(f"gp_peak_frac_{b}" for b in plasticc.PASSBANDS),
    *(f"gp_blue_frac_{int(e):+d}" for e in EPOCHS),
    *(f"gp_red_frac_{int(e):+d}" for e in EPOCHS),
    *(f"gp_decline15_{b}" for b in plasticc.PASSBANDS),
    "gp_rise_50",
    "gp_rise_20",
    "gp_fall_50",
    "gp_fall_20",
    "gp_rise_50_rest",
    "gp_rise_20_rest",
    "gp_fall_50_rest",
    "gp_fall_20_rest",
    "gp_positive_width",
    "gp_negative_width",
    "gp_n_peaks",
    "gp_chi2_per_point",
)


def _matern32(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """Matern-3/2 kernel (amplitude 1) between (n, 2) and (k, 2) points (time, wavelength)."""
    dt = (a[:, None, 0] - b[None, :, 0]) / length
    dw = (a[:, None, 1] - b[None, :, 1]) / WAVELENGTH_SCALE
    r = np.sqrt(3.0 * (dt * dt + dw * dw))
    return (1.0 + r) * np.exp(-r)


def _crossing(times: np.ndarray, curve: np.ndarray, peak: int, level: float, step: int) -> float:
    """Days from the peak until `curve` first falls below `level` going `step` (+1 after, -1
    before); NaN if it never does inside the window."""
    index = np.arange(peak, len(curve)) if step > 0 else np.arange(peak, -1, -1)
    below = np.flatnonzero(curve[index] < level)
    return float(abs(times[index[below[0]]] - times[peak])) if below.size else np.nan


def gp_features(
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    t0: float,
    redshift: float,
    window: tuple[float, float],
) -> np.ndarray:
    """`GP_NAMES` for one object's rows (see the module's docstring); NaN where undefined."""
    out = np.full(len(GP_NAMES), np.nan)
    inside = (mjd >= t0 - window[0]) & (mjd <= t0 + window[1])
    if inside.sum() < 3:
        return out
    t, band = mjd[inside] - t0, passband[inside]
    scale = np.abs(flux[inside]).max()
    y, noise = flux[inside] / scale, (flux_err[inside] / scale) ** 2
    x = np.c_[t, WAVELENGTHS[band]]
    best = None
    for length in LENGTH_SCALES:
        k = _matern32(x, x, length) + np.diag(noise)
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            continue
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
        log_like = -0.5 * y @ alpha - np.log(np.diag(chol)).sum()
        if best is None or log_like > best[0]:
            best = (log_like, length, alpha)
    if best is None:
        return out
    _, length, alpha = best
    grid = np.arange(-window[0], window[1] + 1.0)
    points = np.c_[np.repeat(grid, 6), np.tile(WAVELENGTHS, grid.size)]
    mean = (_matern32(points, x, length) @ alpha).reshape(grid.size, 6)
    fitted = _matern32(x, x, length) @ alpha
    total = mean.sum(axis=1)
    peak = int(np.argmax(total))
    height = total[peak]
    if not height > 0:
        return out
    absolute = np.abs(mean).sum(axis=1) + 1e-12

    def at(day: float) -> int | None:
        i = peak + int(day)
        return i if 0 <= i < grid.size else None

    values: list[float] = [np.log10(length), grid[peak]]
    values += list(mean[peak] / absolute[peak])
    for bands in ((0, 1), (3, 4, 5)):
        for day in EPOCHS:
            i = at(day)
            values.append(np.nan if i is None else mean[i, list(bands)].sum() / absolute[i])
    i15 = at(15.0)
    band_peaks = mean[peak]
    for b in range(6):
        ok = i15 is not None and band_peaks[b] > 0
        values.append(mean[i15, b] / band_peaks[b] if ok else np.nan)
    times = [
        _crossing(grid, total, peak, height * level, step)
        for step in (-1, 1)
        for level in (0.5, 0.2)
    ]
    rest = 1.0 + max(redshift, 0.0) if np.isfinite(redshift) else np.nan
    values += times + [v / rest for v in times]
    values.append(np.clip(total, 0, None).sum() / height)
    values.append(np.clip(-total, 0, None).sum() / height)
    inner = total[1:-1]
    maxima = (inner > total[:-2]) & (inner >= total[2:]) & (inner > 0.3 * height)
    values.append(float(maxima.sum()))
    values.append(float(np.mean((y - fitted) ** 2 / noise)))
    out[:] = values
    return out


def all_gp_features(objects: pd.DataFrame, lightcurves: Path, config: Config) -> np.ndarray:
    """(len(objects), len(GP_NAMES)) for the objects (train and val known only), in order."""
    rows = read_files([lightcurves])
    keep = np.isin(rows.object_id, objects["object_id"].to_numpy())
    rows = rows.take(np.flatnonzero(keep))
    order = np.lexsort((rows.mjd, rows.object_id))
    rows = rows.take(order)
    ids, starts = np.unique(rows.object_id, return_index=True)
    o = np.repeat(np.arange(ids.size), np.diff(np.r_[starts, len(rows)]))
    peak = reference_rows(o, starts, rows.flux / rows.flux_err, rows.detected)
    raw = np.stack(objects["raw"].to_numpy())
    redshift = dict(
        zip(objects["object_id"], raw[:, FEATURE_NAMES.index("hostgal_photoz")], strict=True)
    )
    window = (config.data.window_before, config.data.window_after)
    ends = np.r_[starts[1:], len(rows)]
    table = {}
    for i, (object_id, a, b) in enumerate(zip(ids, starts, ends, strict=True)):
        cut = slice(a, b)
        table[object_id] = gp_features(
            rows.mjd[cut],
            rows.passband[cut],
            rows.flux[cut],
            rows.flux_err[cut],
            rows.mjd[peak[i]],
            redshift[object_id],
            window,
        )
    return np.stack([table[i] for i in objects["object_id"]])


def gp_classifier(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config):
    """The shipped classifier's trees on its feature columns plus the GP features."""
    del columns  # the classifier picks its own (constant columns left out), GP ones included
    model = Classifier(config.eval)
    model.fit(evidence(x), y)
    return lambda raw: model.score(evidence(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--raw", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="default: RUN/../..")
    parser.add_argument("--out", type=Path, default=Path("runs/gp-features/scores.parquet"))
    args = parser.parse_args()
    workdir = args.workdir or args.run.parent.parent
    raw = args.raw or workdir / "data" / "raw" / "plasticc_train_lightcurves.csv.gz"
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    extra = all_gp_features(objects, raw, config)
    fit_time = time.perf_counter() - start
    defined = np.isfinite(extra).mean(axis=0)
    print(f"GP features of {len(objects)} objects in {fit_time:.0f} s; defined for:")
    print(", ".join(f"{n} {d:.0%}" for n, d in zip(GP_NAMES, defined, strict=True)))
    candidates = {"gp_classifier": gp_classifier}
    fold_columns = functools.partial(classifier_fold_columns, candidates=candidates, extra=extra)
    table = with_fold_columns(scores, lambda f: fold_columns(objects, f, config), args.out)
    print(f"\nGP features for the classifier ({time.perf_counter() - start:.0f} s)\n")
    compare_with_classifier(table, config, "gp_classifier", "classifier with GP features")


if __name__ == "__main__":
    main()
