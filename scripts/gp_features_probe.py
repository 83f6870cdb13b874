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

Result of `gp_classifier` (2026-12-02, the default run's `make validate`, 0.814; 95 s on 2
cores, the GP features of 5,910 objects in 15 s): alone 0.758 against the shipped classifier's
0.736; in the classifier's place with the shipped weights 0.826 (+0.0115 ± 0.0041, 7/10 folds);
the best found in its place 0.826 (+0.0123 ± 0.0065, 6/10); **beside it 0.828 (+0.0135 ±
0.0060, 6/10): past the rule**. With the fold networks of a second training seed (`validate
--set train.seed=1`, 0.813): +0.0123 ± 0.0040 with the shipped weights (7/10), beside it +0.0142
± 0.0059. On `sn`'s three folds (0.701): +0.0159 ± 0.0010 with the shipped weights (3/3), the
best found +0.0189 ± 0.0107 (`gp_classifier:2,latent_knn:1,recon_chi2:1`): short of twice its
standard error, so by the rule `sn` does not pass. (The classifier's trees read no network
output: the second seed checks the fusion around the same candidate, not the candidate again.)

Second candidate, `--candidate smooth` (written after the first's result, for speed; its rule
written before its run, 2026-12-02): the same features read off a kernel smoother of the
prepared grid instead of a fitted process, cheap enough for scoring (two fixed matrix products
an object and length scale: `smooth_features`). The grid's cells (64 four-day bins x 6 bands,
the flux over the object's amplitude, as the VAE sees it) are smoothed in time, each band on
its own, by a Matern-3/2 kernel with inverse-variance weights and a prior pull toward 0 (the
weighted sum over the cells divided by the weights' sum plus 1, a kernel-ridge-like estimate
that falls to 0 far from any point); the length scale per object the best of {8, 20, 80} days
by the leave-one-cell-out weighted residual. (A first version smoothed across the bands too,
with the process's wavelength scale: its colours came out flat, every band about 1/6 of the
peak's flux, seen in the features' medians per class on 400 objects before any fold was
scored, and it was changed then.) The features are `GP_NAMES` (the length scale and
the residual per cell in place of the process's). THE RULE for it is the first's: its best
fusion found (in the classifier's place or beside it) must beat the shipped fusion by more than
twice the standard error of the paired per-fold differences; only then is it a candidate to
build into the package (validated again there, then the test split evaluated once).

Result of `smooth_classifier` (same run, 4.7 min on 2 cores; the features of 5,910 objects in
under a second): alone 0.746; in the classifier's place 0.819 (+0.0053 ± 0.0029, 7/10), beside
it 0.820 (+0.0064 ± 0.0055, 5/10): **fails the rule**. The smoother of the 4-day grid keeps
about half of the fitted process's gain.

Where the process's cost would fall (`scripts/gp_fit_speed.py --lightcurves ...`, one run on 2
quiet cores): the package's gridding with its features 12,614 objects/s on the 7,848 training
objects; this probe's NumPy fit 255/s; batched in JAX end to end (`gp_batched.py`) 1,964/s, its
fit and mean alone 3,062/s for the training set's mix of sizes (one 20-day time scale and a
4-day grid: 11,152/s). Like the other features, they would be computed where light curves are
gridded (`prepare`, `score` from files, every night of `replay`), not in the compiled pass and
the detector that `bench_score.py` times from tensors (23,630-24,720 objects/s; the classifier
would read 32 more columns): gridding with the batched features would run at about 1,700
objects/s, 7.4x slower (derived from the two measured rates), a few seconds more for the
training set but hours for the 3.5-million-object test set and 7.4x the gridding share of every
replayed night. `--batched` (the features from `gp_batched.py`, float32, the prototype of the
package's fit, which `--batched` now calls): +0.0133 ± 0.0046 with the shipped weights (6/10),
+0.0153 ± 0.0067 beside the classifier.

Two more runs on the same folds, information for whoever builds it (not a choice): `--variant
cheap` (one 20-day time scale, a 4-day grid, on which the epochs fall at -8, +16 and +48
days): +0.0097 ± 0.0033
with the shipped weights (8/10), +0.0121 ± 0.0057 beside the classifier; `--variant ablation`
(each group of `GROUPS` left out, shipped weights, against all 32 features): rise and fall times
-0.0035 ± 0.0018, colours -0.0028 ± 0.0030, 15-day declines -0.0010 ± 0.0015, time scale, widths,
peaks and residual +0.0015 ± 0.0014.

Since then the features are in the package (`plasticc_jax/gp_features.py`, read by the
`gp_classifier` component; docs/evaluation.md): this probe reads their names and their reader
from there (the same code), and a dataset prepared since holds them already, before the columns
the probe appends.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from validation_probe import (
    classifier_fold_columns,
    compare_with_classifier,
    evidence,
    paired,
    read_validation,
    with_fold_columns,
)

from plasticc_jax.components import GpClassifier
from plasticc_jax.config import Config
from plasticc_jax.dataset import iter_split
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds
from plasticc_jax.gp_features import (
    GP_NAMES,
    LENGTH_SCALES,
    WAVELENGTH_SCALE,
    WAVELENGTHS,
    read_features,
)
from plasticc_jax.gridding import FEATURE_NAMES, GridSpec, reference_rows
from plasticc_jax.lightcurve_rows import read_files

# LSST passbands' effective wavelengths (Angstrom), u g r i z y, as avocado uses them.
SMOOTH_LENGTH_SCALES = (8.0, 20.0, 80.0)


def _matern32(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """Matern-3/2 kernel (amplitude 1) between (n, 2) and (k, 2) points (time, wavelength)."""
    dt = (a[:, None, 0] - b[None, :, 0]) / length
    dw = (a[:, None, 1] - b[None, :, 1]) / WAVELENGTH_SCALE
    r = np.sqrt(3.0 * (dt * dt + dw * dw))
    return (1.0 + r) * np.exp(-r)


def gp_features(
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    t0: float,
    redshift: float,
    window: tuple[float, float],
    lengths: tuple[float, ...] = LENGTH_SCALES,
    step: float = 1.0,
) -> np.ndarray:
    """`GP_NAMES` for one object's rows (see the module's docstring; the time scales tried and
    the prediction grid's step in days as given); NaN where undefined."""
    out = np.full(len(GP_NAMES), np.nan)
    inside = (mjd >= t0 - window[0]) & (mjd <= t0 + window[1])
    if inside.sum() < 3:
        return out
    t, band = mjd[inside] - t0, passband[inside]
    scale = np.abs(flux[inside]).max()
    y, noise = flux[inside] / scale, (flux_err[inside] / scale) ** 2
    x = np.c_[t, WAVELENGTHS[band]]
    best = None
    for length in lengths:
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
    grid = np.arange(-window[0], window[1] + step, step)
    points = np.c_[np.repeat(grid, 6), np.tile(WAVELENGTHS, grid.size)]
    mean = (_matern32(points, x, length) @ alpha).reshape(grid.size, 6)
    fitted = _matern32(x, x, length) @ alpha
    chi2 = np.mean((y - fitted) ** 2 / noise)
    return read_features(
        grid, mean[None], np.array([length]), np.array([chi2]), np.array([redshift])
    )[0]


def all_gp_features(
    objects: pd.DataFrame, lightcurves: Path, config: Config, batched: bool = False, **fit: Any
) -> np.ndarray:
    """(len(objects), len(GP_NAMES)) for the objects (train and val known only), in order;
    `batched`: by the package's batched fit (`gp_features.gp_features`, JAX; a prototype in
    `scripts/gp_batched.py` when the probe was run) instead of one object at a time."""
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
    if batched:
        from plasticc_jax.gp_features import gp_features as batched_gp_features

        z = np.array([redshift[i] for i in ids])
        values = batched_gp_features(
            rows.mjd, rows.passband, rows.flux, rows.flux_err, starts, peak, z, window, **fit
        )
        table = dict(zip(ids, values, strict=True))
        return np.stack([table[i] for i in objects["object_id"]])
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
            **fit,
        )
    return np.stack([table[i] for i in objects["object_id"]])


def _time_kernel(length: float, spec: GridSpec) -> np.ndarray:
    """(T, T) Matern-3/2 kernel in time between the grid's bins (one band)."""
    days = spec.bin_centres()
    r = np.sqrt(3.0) * np.abs(days[:, None] - days[None, :]) / length
    return (1.0 + r) * np.exp(-r)


def smooth_features(
    flux: np.ndarray, err: np.ndarray, mask: np.ndarray, spec: GridSpec, redshift: np.ndarray
) -> np.ndarray:
    """(m, len(GP_NAMES)) from gridded light curves (m, 6, T): a kernel smoother of the cells
    (see the module's docstring), its features read as the process's (`read_features`)."""
    m, nb, nt = flux.shape
    y = flux.reshape(m, nb * nt).astype(np.float64)
    w = np.where(mask, 1.0 / np.maximum(err.astype(np.float64), 1e-6) ** 2, 0.0).reshape(m, -1)
    best_loss = np.full(m, np.inf)
    best_mean = np.zeros_like(y)
    best_length = np.full(m, np.nan)
    for length in SMOOTH_LENGTH_SCALES:
        k = _time_kernel(length, spec)  # symmetric; each band smoothed on its own
        num = ((w * y).reshape(m, nb, nt) @ k).reshape(m, -1)
        den = (w.reshape(m, nb, nt) @ k).reshape(m, -1)
        mean = num / (den + 1.0)
        # Leave each observed cell out (its own weight off both sums; k's diagonal is 1).
        loo = (num - w * y) / (den - w + 1.0)
        loss = (w * (y - loo) ** 2).sum(axis=1) / np.maximum(mask.reshape(m, -1).sum(1), 1)
        better = loss < best_loss
        best_loss = np.where(better, loss, best_loss)
        best_mean[better], best_length[better] = mean[better], length
    mean = best_mean.reshape(m, nb, nt).transpose(0, 2, 1)  # (m, T, 6)
    chi2 = (w * (y - best_mean) ** 2).sum(1) / np.maximum(mask.reshape(m, -1).sum(1), 1)
    return read_features(spec.bin_centres(), mean, best_length, chi2, redshift)


def gp_classifier(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config):
    """The shipped classifier's trees on its feature columns plus the GP features."""
    del columns  # the classifier picks its own (constant columns left out), GP ones included
    model = GpClassifier(config.eval)  # every column given, the appended GP ones too
    model.fit(evidence(x), y)
    return lambda raw: model.score(evidence(raw))


def all_smooth_features(objects: pd.DataFrame, dataset_dir: Path, config: Config) -> np.ndarray:
    """(len(objects), len(GP_NAMES)) from the prepared grids (train and val splits), in order."""
    wanted = set(objects["object_id"])
    spec = GridSpec.from_config(config.data)
    raw = np.stack(objects["raw"].to_numpy())
    redshift = dict(
        zip(objects["object_id"], raw[:, FEATURE_NAMES.index("hostgal_photoz")], strict=True)
    )
    table = {}
    for split in ("train", "val"):  # never the test split
        for shard in iter_split(dataset_dir, split):
            keep = np.flatnonzero([i in wanted for i in shard.object_id])
            if not keep.size:
                continue
            z = np.array([redshift[i] for i in shard.object_id[keep]])
            values = smooth_features(
                shard.flux[keep], shard.flux_err[keep], shard.mask[keep], spec, z
            )
            table.update(zip(shard.object_id[keep], values, strict=True))
    return np.stack([table[i] for i in objects["object_id"]])


# Feature groups for `--ablation` (each left out in turn): information for a cheaper fit, not a
# choice of what to ship.
GROUPS = {
    "time scale, widths, peaks, residual": (
        "gp_log10_length_scale",
        "gp_peak_offset",
        "gp_positive_width",
        "gp_negative_width",
        "gp_n_peaks",
        "gp_chi2_per_point",
    ),
    "colours (band fractions)": tuple(n for n in GP_NAMES if "_frac_" in n),
    "15-day declines": tuple(n for n in GP_NAMES if n.startswith("gp_decline15")),
    "rise and fall times": tuple(n for n in GP_NAMES if n.startswith(("gp_rise", "gp_fall"))),
}


def without(columns: tuple[str, ...]):
    """`gp_classifier` with some GP columns blanked (all NaN: the classifier leaves them out)."""
    blank = len(FEATURE_NAMES) + np.array([GP_NAMES.index(c) for c in columns])

    def make(x: np.ndarray, y: np.ndarray, inputs: np.ndarray, config: Config):
        def blanked(raw: np.ndarray) -> np.ndarray:
            out = raw.copy()
            out[:, blank] = np.nan
            return out

        score = gp_classifier(blanked(x), y, inputs, config)
        return lambda raw: score(blanked(raw))

    return make


def ablation_report(table: pd.DataFrame, config: Config, names: list[str]) -> None:
    """Each candidate alone and in the classifier's place with the shipped weights, against the
    shipped fusion and against the whole set of GP features."""
    folds = Folds(table)
    shipped = parse_fusion(config.eval.fusion)
    base = folds.fused(shipped)
    placed = {
        name: folds.fused({(name if k == "classifier" else k): w for k, w in shipped.items()})
        for name in names
    }
    print(
        "| candidate | alone | fused, in the classifier's place | against shipped | against all |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        alone = np.mean(list(folds.aurocs(table[name].to_numpy()).values()))
        fused = np.mean(list(folds.aurocs(placed[name]).values()))
        against = paired(folds, placed[name], base)
        against_all = paired(folds, placed[name], placed[names[0]])
        print(f"| {name} | {alone:.3f} | {fused:.3f} | {against} | {against_all} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--candidate", choices=("gp", "smooth"), default="gp")
    parser.add_argument(
        "--variant",
        choices=("validated", "cheap", "ablation"),
        default="validated",
        help="gp only: cheap = one 20-day time scale and a 4-day grid (gp_fit_speed.py's "
        "cheaper fit); ablation = each feature group of GROUPS left out in turn",
    )
    parser.add_argument(
        "--batched", action="store_true", help="gp only: the package's batched JAX fit"
    )
    parser.add_argument("--raw", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="default: RUN/../..")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: runs/<candidate>-features/scores.parquet"
    )
    args = parser.parse_args()
    workdir = args.workdir or args.run.parent.parent
    out = args.out or Path(f"runs/{args.candidate}-features/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    if args.candidate == "gp":
        raw = args.raw or workdir / "data" / "raw" / "plasticc_train_lightcurves.csv.gz"
        fit = {"lengths": (20.0,), "step": 4.0} if args.variant == "cheap" else {}
        extra = all_gp_features(objects, raw, config, args.batched, **fit)
    else:
        dataset_dir = workdir / config.data.processed_dir / config.data.protocol
        extra = all_smooth_features(objects, dataset_dir, config)
    fit_time = time.perf_counter() - start
    defined = np.isfinite(extra).mean(axis=0)
    print(f"{args.candidate} features of {len(objects)} objects in {fit_time:.0f} s; defined for:")
    print(", ".join(f"{n} {d:.0%}" for n, d in zip(GP_NAMES, defined, strict=True)))
    name = f"{args.candidate}_classifier"
    candidates = {name: gp_classifier}
    if args.variant == "ablation":
        candidates |= {f"without {group}": without(cols) for group, cols in GROUPS.items()}
    fold_columns = functools.partial(classifier_fold_columns, candidates=candidates, extra=extra)
    table = with_fold_columns(scores, lambda f: fold_columns(objects, f, config), out)
    label = f"classifier with {args.candidate} features"
    if args.variant == "cheap":
        label += " (one time scale, 4-day grid)"
    if args.batched:
        label += " (batched JAX fit)"
    print(f"\n{label} ({time.perf_counter() - start:.0f} s)\n")
    if args.variant == "ablation":
        ablation_report(table, config, list(candidates))
        return
    compare_with_classifier(table, config, name, label)


if __name__ == "__main__":
    main()
