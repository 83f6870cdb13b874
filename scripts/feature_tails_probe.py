"""Feature distances that see beyond the known objects' range (research, #10)

    python scripts/feature_tails_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The detector's feature components (`feature_mahalanobis`, `feature_knn`, `feature_forest`) read
the features as the network does (`FeatureStats`: each through its train-split quantiles and the
normal's inverse CDF, clipped at 5 standard deviations), so a value beyond every train object's
(a peak luminosity no known class reaches, a decline faster than any) scores as the most extreme
train object does, however far beyond it lies: the very evidence an anomaly detector wants is cut
off. The candidate keeps the map inside the train range and continues it linearly beyond:
z = z(edge) + (x - edge) / s, with s the feature's robust standard deviation on that side,
(q99 - q50) / 2.326 above and (q50 - q1) / 2.326 below, capped at +-`CAP`; the same
components are fitted on it per fold and kind as `validate` fits the shipped ones (which this
script recomputes and checks against the stored columns). The network's input is unchanged.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with the
candidates must beat the shipped fusion (`config.VALIDATED_FUSION["rare"]`) by more than twice the
standard error of the paired per-fold differences. The search: every weight 0-3 of the shipped
fusion's components and the three candidates (seven components, as `validate`'s own search).

Result (the validation of docs/evaluation.md, 101 s on 2 cores; the shipped components recomputed
exactly): alone 0.701, 0.705 and 0.659 against 0.702, 0.706 and 0.659 (most cells unchanged: few
held-out objects lie beyond the train range; EB 0.991 -> 0.984); with the shipped weights -0.0007
± 0.0010; the best fusion found is the shipped one: not adopted.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from validation_probe import feature_component_probe, quantile_normalisation

from plasticc_jax.dataset import FeatureStats
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

CAP = 50.0
Z99 = float(special.ndtri(0.99))
COLUMNS = [FEATURE_NAMES.index(n) for n in MODEL_FEATURE_NAMES]


def with_tails(stats: FeatureStats, raw: np.ndarray) -> np.ndarray:
    """`stats.normalise(raw)`, continued linearly beyond each feature's train range."""
    z = stats.normalise(raw).astype(np.float64)
    q = stats.quantiles  # (features, 101): the 0th, 1st, ..., 100th percentiles
    for j in np.flatnonzero(~np.isnan(q).any(axis=1)):
        x = raw[:, j]
        low, high = q[j, 0], q[j, -1]
        up = max(q[j, 99] - q[j, 50], 1e-12) / Z99
        down = max(q[j, 50] - q[j, 1], 1e-12) / Z99
        above, below = x > high, x < low
        z_high = float(stats.normalise(np.full((1, raw.shape[1]), high))[0, j])
        z_low = float(stats.normalise(np.full((1, raw.shape[1]), low))[0, j])
        z[above, j] = z_high + (x[above] - high) / up
        z[below, j] = z_low - (low - x[below]) / down
    return np.clip(z, -CAP, CAP).astype(np.float32)


def tailed(raw: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The same, continued linearly beyond each feature's train range (`with_tails`)."""
    stats = FeatureStats.fit(MODEL_FEATURE_NAMES, raw[fit][:, COLUMNS])
    return with_tails(stats, raw[:, COLUMNS])


if __name__ == "__main__":
    feature_component_probe(
        __doc__,
        "runs/feature-tails/scores.parquet",
        {"_again": quantile_normalisation(MODEL_FEATURE_NAMES), "_tails": tailed},
        "the feature components with tails",
    )
