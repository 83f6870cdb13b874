"""Gaussian class models beyond one shared covariance (research, #10)

    python scripts/class_covariance_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The shipped `latent_mahalanobis` and `feature_mahalanobis` are the distance to the nearest
known-class centre with one covariance shared by the classes (Lee et al. 2018). Two variants
from the out-of-distribution literature, each on the fold VAE's latent means and on the
network's 141 quantile-normalised features (the views of the shipped components):

- `*_gda`: each class its own Gaussian (its own Ledoit-Wolf covariance), the score the smallest
  `d_k^2 + log det S_k` over the classes: minus the largest class log-likelihood (quadratic
  discriminant analysis without priors), so a wide class (SN II, AGN) no longer looks as tight
  as a narrow one (RR Lyrae);
- `*_rmd`: the relative Mahalanobis distance of Ren et al. 2021 (arXiv 2106.09022), the smallest
  `d_k^2 - d_0^2`, where `d_0` is the distance to one Gaussian of every fitting object: the
  directions in which every known class spreads count less; proposed for near
  out-of-distribution classes, as the supernova subtypes are here;
- `*_knn_white`: the mean distance to the 10 nearest fitting objects (`latent_knn`'s) after
  whitening by the shared within-class covariance, so that every direction is measured against
  how much the known classes vary in it.

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` does; the shipped distance is
recomputed the same way and checked against the stored column.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with a
candidate (in its shipped counterpart's place or beside it) must beat the shipped fusion by more
than twice the standard error of the paired per-fold differences.

Result (a fresh clone's `make prepare train evaluate validate`, 2026-12-04; 57 s on 2 cores; the
shipped distances recomputed to within 2e-13 and 2e-10): alone, `latent_gda` 0.748, `latent_rmd`
0.739 and `latent_knn_white` 0.750 against `latent_mahalanobis`' 0.751; `feature_gda` 0.718,
`feature_rmd` 0.537 (M-dwarf 0.100: a class at the edge of every known class's spread is
pulled in by `d_0`) and `feature_knn_white` 0.696 against `feature_mahalanobis`' 0.702. In the
fusion the best is `feature_gda` in `feature_mahalanobis`' place, the shipped weights:
0.8313 against 0.8293, +0.0020 ± 0.0010 (8/10 folds better; t = 1.91); the latent variants
-0.0012 to +0.0003. Short of the rule (twice the standard error): not adopted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from class_knn_probe import K, fold_columns, mean_knn, report
from latent_classifier_probe import fold_latent_loader
from sklearn.covariance import LedoitWolf
from validation_probe import probe_arguments, read_validation, with_fold_columns

from plasticc_jax.dataset import FeatureStats
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

VARIANTS = ("gda", "rmd", "knn_white")


def squared_distance(x: np.ndarray, centre: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of x to `centre`."""
    d = x - centre
    return np.einsum("ij,jk,ik->i", d, precision, d)


def gaussian_scorer(prefix: str) -> Callable:
    """A scorer (fitting rows, their classes) -> (rows -> scores by name) of the shipped distance
    (`<prefix>_mahalanobis_again`) and the two variants."""

    def fit(x: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        x = np.asarray(x, np.float64)
        classes = np.unique(labels)
        centres = np.stack([x[labels == c].mean(axis=0) for c in classes])
        shared = np.linalg.pinv(
            LedoitWolf().fit(x - centres[np.searchsorted(classes, labels)]).covariance_
        )
        whiten = np.linalg.cholesky(shared)  # |x @ whiten|^2 = x' shared x
        white = x @ whiten
        background = LedoitWolf().fit(x)
        background_precision = np.linalg.pinv(background.covariance_)
        own = [LedoitWolf().fit(x[labels == c]).covariance_ for c in classes]
        own_precision = [np.linalg.pinv(s) for s in own]
        log_det = np.array([np.linalg.slogdet(s)[1] for s in own])

        def scores(rows: np.ndarray) -> dict[str, np.ndarray]:
            rows = np.asarray(rows, np.float64)
            d_shared = np.stack([squared_distance(rows, m, shared) for m in centres], axis=1)
            d_own = np.stack(
                [squared_distance(rows, m, p) for m, p in zip(centres, own_precision, strict=True)],
                axis=1,
            )
            d_0 = squared_distance(rows, background.location_, background_precision)
            return {
                f"{prefix}_mahalanobis_again": np.sqrt(np.maximum(d_shared.min(axis=1), 0.0)),
                f"{prefix}_gda": (d_own + log_det).min(axis=1),
                f"{prefix}_rmd": (d_shared - d_0[:, None]).min(axis=1),
                f"{prefix}_knn_white": mean_knn(white, rows @ whiten, K),
            }

        return scores

    return fit


def names(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}_mahalanobis_again", *(f"{prefix}_{v}" for v in VARIANTS))


def main() -> None:
    args = probe_arguments(__doc__, "runs/class-covariance/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    latents_of = fold_latent_loader(args.run, args.workdir, config)
    raw = np.stack(objects["raw"].to_numpy())
    columns = [FEATURE_NAMES.index(n) for n in MODEL_FEATURE_NAMES]

    def make(fold: int) -> pd.DataFrame:
        latent = fold_columns(
            objects, latents_of(fold), fold, gaussian_scorer("latent"), names("latent")
        )
        fit = (objects["split"].to_numpy() == "train") & (objects["target"].to_numpy() != fold)
        stats = FeatureStats.fit(MODEL_FEATURE_NAMES, raw[fit][:, columns])
        normalised = stats.normalise(raw[:, columns])
        feature = fold_columns(
            objects, normalised, fold, gaussian_scorer("feature"), names("feature")
        )
        return latent.merge(feature, on=["fold", "object_id"], validate="one_to_one")

    table = with_fold_columns(scores, make, args.out)
    for prefix in ("latent", "feature"):
        again = np.abs(table[f"{prefix}_mahalanobis_again"] - table[f"{prefix}_mahalanobis"])
        print(f"{prefix}_mahalanobis recomputed: max |again - stored| {again.max():.2e}")
    print(f"({time.perf_counter() - start:.0f} s)")
    for prefix in ("latent", "feature"):
        print(f"\n### the {prefix} view\n")
        report(table, config, tuple(f"{prefix}_{v}" for v in VARIANTS), f"{prefix}_mahalanobis")


if __name__ == "__main__":
    main()
