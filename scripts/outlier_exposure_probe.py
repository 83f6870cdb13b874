"""Outlier exposure for the `gp_classifier`: known light curves made unlike their class as a
class of their own (research check, #10)

    python scripts/outlier_exposure_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The `gp_classifier` scores an object by how unsure it is among the known classes. An unknown
class that resembles one known class in shape but not in timescale or luminosity (a kilonova is
a fast supernova, an SLSN-I a luminous slow one) can still be called that class with confidence:
the trees never saw anything else. Outlier exposure (Hendrycks et al. 2019) shows the classifier
examples of "none of these" during training. Here they are made from the fitting objects
themselves, one copy of each train-split known object, the change drawn at random:

- a time stretch about t0 (its brightest detection) by a factor s, log-uniform in [2, 4] or its
  inverse [1/4, 1/2] (as `redshift_augmentation_probe.stretched_flux`: interpolated per passband
  and read at the original times, so the cadence stays real); every galactic copy;
- for extragalactic objects, one of: the stretch; a luminosity change of 1 to 2.5 magnitudes,
  brighter or fainter, by moving the host to the redshift whose distance modulus differs by that
  much (flat LambdaCDM, anchored to the object's own `distmod`; `hostgal_photoz_err` scaled by
  (1 + z') / (1 + z); z' kept in [0.01, 3]), the light curve unchanged; or both;
- detected again where |flux| / error >= 5; gridded by the package's own code, as `prepare` does.

Per fold and kind, the copies of the fitting objects (never of the held-out class, never of the
val split) join the fitting rows as one more class, 0 ("other"), balanced like the known ones, and
the same trees (settings, features) are fitted as `validate` fits the `gp_classifier`. Two scores
of that model, each calibrated on the val split's other known objects of the same kind:
`oe_maxprob`, 1 - the largest probability of a known class (the shipped score's form), and
`oe_other`, the probability of "other". The recomputation without copies reproduces the stored
`gp_classifier` column (printed). Only the train and val splits are read, never the test split.

The adoption rule, written here before the run (docs/evaluation.md's): a candidate replaces the
shipped configuration only if its best fusion found beats the shipped fusion by more than twice
the standard error of the paired per-fold differences.

Result (default-rare run with `make validate`, 0.8292; 2 min on 2 cores; the `gp_classifier`
recomputed exactly; docs/evaluation.md): alone `oe_maxprob` 0.777, `oe_maxprob_xg` 0.789 against
0.766 (AGN 0.659 -> 0.982; galactic copies cost EB and RR Lyrae); in its place the fusion falls
(-0.0060 ± 0.0069, -0.0024 ± 0.0065); beside it at best +0.0056 ± 0.0042 (7/10 folds): not
adopted. On `sn`'s three folds (`make validate PROTOCOL=sn`, 0.700) +0.0236 ± 0.0063 beside its
`classifier`, but the same fusion with the plain `gp_classifier` gives 0.720 and the exposure
adds +0.0036 ± 0.0175 to that: not adopted (docs/evaluation.md).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from ovr_classifier_probe import probe_gp_classifier
from redshift_augmentation_probe import (
    DETECTION_SNR,
    distance_modulus,
    features_of,
    read_train_rows,
    stretched_flux,
)
from validation_probe import probe_arguments, read_validation

from plasticc_jax.components import balanced_rows, boosted_trees
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES, META_VALUES
from plasticc_jax.lightcurve_rows import Rows

OTHER = 0  # the copies' class: no PLAsTiCC class is 0
STRETCH = (2.0, 4.0)
MAGNITUDES = (1.0, 2.5)
Z_RANGE = (0.01, 3.0)
SEED = 0


def redshift_for(mu: np.ndarray) -> np.ndarray:
    """The redshift whose distance modulus (`distance_modulus`) is `mu`, within Z_RANGE."""
    grid = np.linspace(*Z_RANGE, 3000)
    return np.interp(mu, distance_modulus(grid), grid)


def outlier_copies(
    rows: Rows, starts: np.ndarray, meta: np.ndarray, rng: np.random.Generator
) -> tuple[Rows, np.ndarray]:
    """One changed copy of every object (see the module's docstring)."""
    m = starts.size
    z = meta[:, META_VALUES.index("hostgal_photoz")].astype(np.float64)
    galactic = z == 0
    # 0: stretch, 1: luminosity, 2: both; galactic objects are stretched.
    change = np.where(galactic, 0, rng.integers(0, 3, m))
    factor = np.exp(rng.uniform(*np.log(STRETCH), m)) ** rng.choice([-1.0, 1.0], m)
    stretch = np.where(change != 1, factor, 1.0)
    flux = stretched_flux(rows, starts, stretch)
    err = rows.flux_err
    new_rows = Rows(
        rows.object_id, rows.mjd, rows.passband, flux, err, np.abs(flux) / err >= DETECTION_SNR, 0
    )
    new_meta = meta.copy()
    brighter = rng.uniform(*MAGNITUDES, m) * rng.choice([-1.0, 1.0], m)
    moved = change >= 1
    mu = distance_modulus(z[moved])
    z_new = redshift_for(mu + brighter[moved])
    distmod = META_VALUES.index("distmod")
    new_meta[moved, META_VALUES.index("hostgal_photoz")] = z_new
    new_meta[moved, META_VALUES.index("hostgal_photoz_err")] *= (1 + z_new) / (1 + z[moved])
    new_meta[moved, distmod] = meta[moved, distmod] + distance_modulus(z_new) - mu
    return new_rows, new_meta


def exposed_model(copies: pd.DataFrame, galactic_copies: bool, suffix: str):
    """Candidate makers whose trees are fitted with the fitting classes' copies as class OTHER
    (galactic objects' copies too, or not: then the galactic trees are the shipped ones'); the
    model is fitted once per fold and kind and shared by the two scores."""
    copy_raw = np.stack(copies["raw"].to_numpy())
    copy_class = copies["target"].to_numpy()
    copy_galactic = copy_raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fitted: dict[tuple, object] = {}

    def model(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config):
        galactic = bool(x[0, FEATURE_NAMES.index("is_galactic")] > 0.5)
        key = (galactic, tuple(np.unique(y)), len(y))
        if key not in fitted:
            use = np.isin(copy_class, np.unique(y)) & (copy_galactic == galactic)
            use &= galactic_copies or not galactic
            xs = np.concatenate([x, copy_raw[use]])
            ys = np.concatenate([y, np.full(use.sum(), OTHER)])
            rows = balanced_rows(ys)
            trees = boosted_trees(config.eval.classifier_iterations, config.eval.seed)
            fitted.clear()  # one fold and kind at a time
            fitted[key] = trees.fit(xs[np.ix_(rows, columns)], ys[rows])
        return fitted[key]

    def maxprob(x, y, columns, config):
        trees = model(x, y, columns, config)
        known = trees.classes_ != OTHER
        return lambda raw: 1.0 - trees.predict_proba(raw[:, columns])[:, known].max(axis=1)

    def other(x, y, columns, config):
        trees = model(x, y, columns, config)
        if OTHER not in trees.classes_:
            return lambda raw: np.zeros(len(raw))
        at = int(np.flatnonzero(trees.classes_ == OTHER)[0])
        return lambda raw: trees.predict_proba(raw[:, columns])[:, at]

    return {f"oe_maxprob{suffix}": maxprob, f"oe_other{suffix}": other}


def main() -> None:
    args = probe_arguments(__doc__, "runs/outlier-exposure/scores.parquet")
    start = time.perf_counter()
    config, _, objects = read_validation(args.run, args.workdir)
    workdir = args.workdir or args.run.parent.parent
    rows, starts, meta, ids = read_train_rows(
        objects, workdir / config.data.raw_dir, extragalactic_only=False
    )
    new_rows, new_meta = outlier_copies(rows, starts, meta, np.random.default_rng(SEED))
    copies = features_of(new_rows, starts, new_meta, config)
    labels = objects.set_index("object_id")["target"]
    copies["target"] = labels.loc[copies["object_id"]].to_numpy()
    elapsed = time.perf_counter() - start
    print(f"{len(copies):,} copies of {ids.size:,} train objects ({elapsed:.0f} s)")
    candidates = exposed_model(copies, True, "") | exposed_model(copies, False, "_xg")
    probe_gp_classifier(__doc__, str(args.out), candidates)


if __name__ == "__main__":
    main()
