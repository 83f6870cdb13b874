"""Is the object physically what the classifier calls it? (research, #10)

    python scripts/class_consistency_probe.py RUN [--workdir DIR] [--out FILE] [--only A,B]
    # RUN: with `make validate`

The class-aware components ask "how sure is the classifier" (`gp_classifier`) or "how far from
the nearest class centre" (the Mahalanobis distances, over every feature at once). Neither asks
whether the object is physically plausible for the class it is given: the default run's
`gp_classifier` names most test SLSN-I "SN II" at a median probability of 0.85, although their
median peak absolute magnitude is -22.9 against SN II's -18.1 (seen on the test split after the
detector was chosen: it suggested this candidate, which the validation below judges on the
known classes alone). Boosted trees do not extrapolate: a value beyond every fitting object's
falls in the outermost bin, with the class it holds.

The candidates: per known class, a Gaussian (Ledoit-Wolf covariance) of a few physical features
of its fitting objects: peak absolute magnitude (undefined for galactic objects: left out of
that kind), the rise and fall times (first detection to peak, peak to last detection, and to
half maximum; as log(1 + days)) and the colours at the peak and 15-40 days later (g-r, r-i);
undefined values take the fitting objects' median. The score of an object is its squared
Mahalanobis distance under the class the `gp_classifier` (fitted on the same rows, as the
detector fits it) names (`consistency_named`), or its expectation over the classifier's
probabilities (`consistency_expected`). `gp_again` recomputes the shipped `gp_classifier` score
(checked against the stored column).

Per fold and kind, as `validate` fits the class-aware components: fitted on the train split's
other known classes, calibrated on the val split's other known objects of the same kind, scored
on the val split and the held-out class (`validation_probe.classifier_fold_columns`). The test
split is never read.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with a
candidate beside the shipped fusion must beat the shipped fusion by more than twice the standard
error of the paired per-fold differences.

Result (the default run's `make validate` of 2026-12-04, 0.8292 reproduced; 110 s on 2 cores;
`gp_classifier` recomputed exactly): alone `consistency_named` 0.609 and `consistency_expected`
0.631 (AGN 0.944-0.952, TDE 0.649-0.666, EB 0.75-0.81; the supernova subtypes and RR Lyrae at
or below chance), and the search gives each weight 0 beside the shipped fusion (+0.0000): not
adopted. Where the physics of the class named is off, another component already finds it (the
AGN fold: 0.945 in the fusion); where the folds are weak (supernova subtypes held out) the
held-out class's luminosity, timescales and colours sit inside those of the class it is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from sklearn.covariance import LedoitWolf
from validation_probe import classifier_probe, evidence

from plasticc_jax.components import GpClassifier
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES

MAGNITUDES = ("peak_abs_mag",)
DAYS = ("rise_days", "fall_days", "half_max_rise_days", "half_max_fall_days")
COLOURS = ("colour_peak_gr", "colour_peak_ri", "colour_late_gr", "colour_late_ri")
MIN_CLASS_ROWS = 5  # fewer: the class's Gaussian is the kind's pooled one


def physics(raw: np.ndarray) -> np.ndarray:
    """The subspace: magnitudes and colours as they are, days as log(1 + days)."""
    columns = [raw[:, FEATURE_NAMES.index(n)] for n in (*MAGNITUDES, *COLOURS)]
    columns += [np.log1p(np.maximum(raw[:, FEATURE_NAMES.index(n)], 0.0)) for n in DAYS]
    return np.column_stack(columns)


def consistency_score(
    x: np.ndarray, y: np.ndarray, _: np.ndarray, config: Config, expected: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """A function: raw feature rows -> the squared Mahalanobis distance of their physics under
    the class the gp_classifier names (or its expectation over the classifier's probabilities)."""
    classifier = GpClassifier(config.eval).fit(evidence(x), y)
    z = physics(x)
    keep = np.isfinite(z).any(axis=0)  # galactic objects: no absolute magnitude
    z = z[:, keep]
    fill = np.nanmedian(z, axis=0)
    z = np.where(np.isnan(z), fill, z)
    pooled = LedoitWolf().fit(z)
    models = {}
    for c in classifier.classes:
        rows = z[y == c]
        fit = LedoitWolf().fit(rows) if len(rows) >= MIN_CLASS_ROWS else pooled
        models[int(c)] = (rows.mean(axis=0) if len(rows) else pooled.location_, fit.precision_)

    def score(raw: np.ndarray) -> np.ndarray:
        q = physics(raw)[:, keep]
        q = np.where(np.isnan(q), fill, q)
        d2 = np.column_stack(
            [
                np.einsum("ij,jk,ik->i", q - mu, precision, q - mu)
                for mu, precision in models.values()
            ]
        )
        p = classifier.probabilities(evidence(raw))
        if expected:
            return (p * d2).sum(axis=1)
        return d2[np.arange(len(q)), p.argmax(axis=1)]

    return score


def gp_again(x: np.ndarray, y: np.ndarray, _: np.ndarray, config: Config):
    """The shipped `gp_classifier` score, recomputed (a check of the fold rows)."""
    model = GpClassifier(config.eval).fit(evidence(x), y)
    return lambda raw: model.score(evidence(raw))


CANDIDATES = {
    "gp_again": ("gp_classifier recomputed", gp_again),
    "consistency_named": (
        "physics under the class named",
        functools.partial(consistency_score, expected=False),
    ),
    "consistency_expected": (
        "physics under the classes' probabilities",
        functools.partial(consistency_score, expected=True),
    ),
}


def main() -> None:
    classifier_probe(
        __doc__, "runs/class-consistency/scores.parquet", "Class consistency", CANDIDATES
    )


if __name__ == "__main__":
    main()
