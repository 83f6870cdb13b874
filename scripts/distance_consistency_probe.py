"""Is the object at the distance its light curve says? (research, #10)

    python scripts/distance_consistency_probe.py RUN [--workdir DIR] [--out FILE] [--only A,B]
    # RUN: with `make validate`

The idea: a regressor trained on the known extragalactic classes learns how far away an object
of those classes is from how its light curve looks (brightness, colours, timescales, shape);
an object of another class sits at a host redshift its light curve does not match. A
superluminous supernova is too bright for its host's distance, a subluminous one (SN Iax,
SN Ia-91bg, a kilonova) too faint, whatever class the classifier names. The class-aware
components compare an object with the known classes in the space of its features; this one asks
about a relation between them (apparent brightness and distance) that each known class obeys in
its own way. `class_consistency_probe.py` asked a narrower question (peak absolute magnitude,
timescales and colours under the class named) and found nothing; this one needs no class.

The candidates, per fold and kind (`validation_probe.classifier_fold_columns`: fitted on the
train split's other known classes, calibrated on the val split's other known objects of the
same kind, scored on the val split and the held-out class; the test split is never read):

- `redshift_residual`: a gradient-boosted regressor (scikit-learn's
  `HistGradientBoostingRegressor`, its defaults, fixed seed) of log(1 + hostgal_photoz) from every
  feature but those that hold the redshift (`hostgal_photoz`, `hostgal_photoz_err`, `distmod`,
  `peak_abs_mag`, the rest-frame times `gp_*_rest`, `is_galactic`); the score: the absolute
  difference between its prediction and the host's log(1 + photo-z).
- `redshift_residual_scaled`: the same difference over its expected size, sqrt(s^2 +
  (photo-z error / (1 + photo-z))^2), s the root mean square of the regressor's out-of-fold
  residuals on its fitting rows (3-fold): a host with an uncertain photo-z counts less.

Galactic objects have no host redshift (photo-z 0): their kind gets a constant score, which the
calibration makes neutral. `classifier_again` recomputes the shipped `classifier` (checked
against the stored column).

Adoption rule, as docs/evaluation.md's, written here and committed before the run: the best
fusion found with a candidate beside the shipped fusion must beat the shipped fusion by more than
twice the standard error of the paired per-fold differences; of the two candidates, only the one
whose best fusion is higher is judged.

Result (a fresh clone's `make validate` of 2026-12-05, the shipped fusion's 0.829 reproduced;
67 s on 2 cores; `classifier` recomputed exactly): alone `redshift_residual` 0.558 and
`redshift_residual_scaled` 0.555 (AGN 0.69-0.71, SN II 0.66, SN Ibc 0.61-0.63, SN Ia-91bg
0.59-0.60, SN Iax 0.55-0.58; SN Ia 0.35, the galactic folds 0.50 by construction), and the
search gives each weight 0 beside the shipped fusion (+0.0000 ± 0.0000): not adopted. The held-out
supernova subtypes are not where their light curves place them by much more than the known
classes are: a photo-z's scatter and the spread of each class's luminosity hide it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import cross_val_predict
from validation_probe import classifier_probe

from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES

REDSHIFT_FEATURES = (
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "peak_abs_mag",
    "is_galactic",
    *(n for n in FEATURE_NAMES if n.endswith("_rest")),
)
INPUTS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n not in REDSHIFT_FEATURES])
PHOTOZ = FEATURE_NAMES.index("hostgal_photoz")
PHOTOZ_ERR = FEATURE_NAMES.index("hostgal_photoz_err")
SEED = 0


def log_redshift(raw: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(raw[:, PHOTOZ], 0.0))


def residual_score(
    x: np.ndarray, _y: np.ndarray, _columns: np.ndarray, _config: Config, scaled: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """A function: raw feature rows -> how far their host's log(1 + photo-z) is from the one
    their light curves predict (over its expected size if `scaled`)."""
    target = log_redshift(x)
    if np.ptp(target) == 0:  # galactic: photo-z 0 throughout
        return lambda raw: np.zeros(len(raw))
    model = HistGradientBoostingRegressor(random_state=SEED)
    spread = 0.0
    if scaled:
        out_of_fold = cross_val_predict(model, x[:, INPUTS], target, cv=3)
        spread = float(np.sqrt(np.mean((out_of_fold - target) ** 2)))
    model.fit(x[:, INPUTS], target)

    def score(raw: np.ndarray) -> np.ndarray:
        residual = np.abs(model.predict(raw[:, INPUTS]) - log_redshift(raw))
        if not scaled:
            return residual
        z = np.maximum(raw[:, PHOTOZ], 0.0)
        error = np.nan_to_num(raw[:, PHOTOZ_ERR], nan=0.0) / (1.0 + z)
        return residual / np.sqrt(spread**2 + error**2)

    return score


CANDIDATES = {
    "redshift_residual": (
        "distance residual",
        functools.partial(residual_score, scaled=False),
    ),
    "redshift_residual_scaled": (
        "distance residual over its expected size",
        functools.partial(residual_score, scaled=True),
    ),
}


def main() -> None:
    classifier_probe(
        __doc__, "runs/distance-consistency/scores.parquet", "Distance consistency", CANDIDATES
    )


if __name__ == "__main__":
    main()
