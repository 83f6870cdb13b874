"""Would Astronomaly's active-learning rules beat the AADForest? (research, #15)

    python scripts/review_astronomaly_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

Every policy tried so far is an isolation forest taught by the answers (AADForest, PineForest) or
a re-weighting of the detector's scores. Astronomaly (Lochner & Bassett 2021; Lochner & Walmsley
2023), the other tool astronomers use for this, learns the expert's answers with a regression
instead. Its two rules, as its code defines them, are the candidates here:

- `neighbour (static)`: Astronomaly's `NeighbourScore`. A random forest regressor (100 trees,
  fixed seed) predicts the expert's score u (5 for "anomaly", 0 for "not interesting") from the
  answered objects' features; the anomaly score a (the detector's `anomaly_score`, scaled to [0, 5]
  over the pool) becomes a * tanh(exp(alpha * d / mean d) - 1 + arctanh(0.1 + 0.85 u / 5)), d the
  distance to the nearest answered object: near the answers a is scaled by the predicted
  interest (0.1 for "not interesting", 0.95 for "anomaly"), far from them it is left as it is.
  alpha = 1, Astronomaly's default.
- `neighbour (AADForest)`: the same rule on the shipped policy's own active score (refitted on the
  same answers, scaled to [0, 5] over the pool) in place of the static one: the forest's ranking,
  with Astronomaly's filter of what looks like answered "not interesting" objects.
- `protege`: Astronomaly's Protege. A Gaussian process (scikit-learn's, Matern + white-noise
  kernel, hyper-parameters fitted by maximum likelihood) regresses u on the answered objects'
  features, and the pool is ranked by the expected improvement over the best answer so far
  (trade-off 0.5, Protege's default); the detector's score is not used once answers exist.

Features: the shipped policy's (`active.feature_columns`: latent means, score columns, context),
each standardised over the drawn pool (no label) for the distances and the process. With no
answer yet every candidate shows the static ranking (as Astronomaly shows the anomaly score
first).

Pools, draws, simulated expert and answer order as `scripts/review_reweight_probe.py` (the
validation folds of `plasticc-jax review --simulate --validation`: 5% of each fold's pool from
the held-out class, never the test split); the probe's loop must reproduce `simulate_groups`'s
shipped policy exactly before its candidates are trusted.

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the best
candidate by anomalies among the first 50 shown (mean over folds and draws) is adopted only if it
beats the shipped policy by more than twice the standard error of the paired per-fold
differences. Also reported: the first 10 shown and the median time of one re-rank (must be well
under a second on a pool of about 1,100).

Result (default-rare run with `make validate`; 5.3 min on 2 cores, 10 folds x 4 draws; the
probe's loop reproduces `simulate_groups`'s shipped policy in every fold, 27.85 in the first 50 as
`review --simulate --validation`; static ranking 17.93). First 10 / first 50 / paired difference
± s.e. / folds better / median re-rank ms: shipped 5.05 / 27.85 / - / - / 14; `neighbour
(static)` 4.47 / 19.00 / -8.85 ± 2.23 / 1 / 51; `neighbour (AADForest)` 4.67 / 28.05 / +0.20 ±
0.63 / 4 / 65; `protege` 3.92 / 28.20 / +0.35 ± 1.41 / 6 / 7. The best, `protege`, is within the
noise: not adopted. NeighbourScore only filters what looks like answered "not interesting"
objects, so on the static score it hardly moves from it. Protege gains where the forest finds
little (SN Ia-91bg 11.2 -> 20.5, SN Ia 8.2 -> 13.8, SN II 17.8 -> 19.5) and loses where it finds
nearly all (EB 46.8 -> 44.0, M-dwarf 48.8 -> 44.8, AGN 49.2 -> 46.5, RR Lyrae 49.0 -> 43.8): the
second look, `scripts/review_protege_probe.py`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from review_feature_probe import probe_arguments
from review_reweight_probe import (
    FoldCurves,
    fold_pools,
    loop_curve,
    probe_loop,
    report_policies,
)
from scipy.spatial import cKDTree
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern, WhiteKernel

from plasticc_jax.review import active, validation
from plasticc_jax.review.simulate import TARGET_SHOWN, static_curve

SHIPPED = "shipped (AADForest)"
CANDIDATES = ("neighbour (static)", "neighbour (AADForest)", "protege")
USER_MAX, USER_MIN_FACTOR, ALPHA = 5.0, 0.1, 1.0  # Astronomaly's NeighbourScore defaults
EI_TRADEOFF = 0.5  # Protege's default
SEED = 0
# The curves of every policy on one drawn pool: (features, static score, truth, timings).
DrawCurves = Callable[
    [np.ndarray, np.ndarray, np.ndarray, dict[str, list[float]]], dict[str, np.ndarray]
]


def to_user_scale(score: np.ndarray) -> np.ndarray:
    """(n,) the score scaled to [0, USER_MAX] over the pool (Astronomaly's ScoreConverter)."""
    low, high = float(score.min()), float(score.max())
    return USER_MAX * (score - low) / (high - low if high > low else 1.0)


def neighbour_score(x: np.ndarray, shown: list[int], u: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Astronomaly's NeighbourScore of the pool (see the module): x, standardised features; u, the
    answered objects' user scores; a, the anomaly score on the user scale."""
    distance = cKDTree(x[shown]).query(x)[0]
    forest = RandomForestRegressor(n_estimators=100, random_state=SEED)
    predicted = forest.fit(x[shown], u).predict(x)
    interest = USER_MIN_FACTOR + 0.85 * predicted / USER_MAX
    penalty = np.exp(ALPHA * distance / max(float(distance.mean()), 1e-12))
    return a * np.tanh(penalty - 1.0 + np.arctanh(interest))


def protege_score(
    x: np.ndarray, shown: list[int], u: np.ndarray, prior: np.ndarray | None = None
) -> np.ndarray:
    """Protege's expected improvement of the pool (see the module); with `prior` (n,), the
    process regresses u - prior and its mean is prior + that regression."""
    offset = np.zeros(len(x)) if prior is None else prior
    process = GaussianProcessRegressor(kernel=Matern() + WhiteKernel(), random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        process.fit(x[shown], u - offset[shown])
    residual, std = process.predict(x, return_std=True)
    std = np.maximum(std, 1e-12)
    gain = offset + residual - u.max() - EI_TRADEOFF
    return gain * ndtr(gain / std) + std * norm.pdf(gain / std)


def pool_views(
    forest_x: np.ndarray, static: np.ndarray, y: np.ndarray
) -> tuple[Callable[[list[int]], np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(the shipped policy's ranker of the answered rows, as `simulate.active_curve` calls it;
    the features standardised over the pool; the expert's scores; the static score on the
    expert's scale) of one drawn pool."""
    forest = active.ActiveRanker(forest_x, static, active.POLICY)
    sd = forest_x.std(axis=0)
    x = (forest_x - forest_x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)

    def shipped(s: list[int]) -> np.ndarray:
        return forest.scores(forest_x[s], y[s])

    return shipped, x, np.where(y, USER_MAX, 0.0), to_user_scale(static)


def draw_curves(
    forest_x: np.ndarray, static: np.ndarray, y: np.ndarray, timings: dict[str, list[float]]
) -> dict[str, np.ndarray]:
    """The shipped policy's and every candidate's curve on one drawn pool."""
    shipped, x, user, static_user = pool_views(forest_x, static, y)

    def static_first(rule: Callable[[list[int]], np.ndarray]) -> Callable:
        return lambda s: rule(s) if s else static.copy()

    rankers: dict[str, Callable[[list[int]], np.ndarray]] = {
        SHIPPED: shipped,
        "neighbour (static)": static_first(lambda s: neighbour_score(x, s, user[s], static_user)),
        "neighbour (AADForest)": static_first(
            lambda s: neighbour_score(x, s, user[s], to_user_scale(shipped(s)))
        ),
        "protege": static_first(lambda s: protege_score(x, s, user[s])),
    }
    return {n: loop_curve(r, y, timings.setdefault(n, [])) for n, r in rankers.items()}


def fold_runner(draw: DrawCurves, candidates: tuple[str, ...]) -> FoldCurves:
    """`probe_loop`'s fold function of the policies `draw` runs on each drawn pool, and the
    static ranking's curve beside them."""

    def run_fold(
        part: pd.DataFrame,
        shipped: list[str],
        draws: Iterable[int],
        timings: dict[str, list[float]],
    ) -> dict[str, list[np.ndarray]]:
        static_all = part["anomaly_score"].to_numpy(np.float64)
        forest_features = active.feature_matrix(part, shipped)
        curves: dict[str, list[np.ndarray]] = {n: [] for n in ["static", SHIPPED, *candidates]}
        for rows, y in fold_pools(part, draws):
            static = static_all[rows]
            curves["static"].append(static_curve(static, y, TARGET_SHOWN))
            for name, curve in draw(forest_features[rows], static, y, timings).items():
                curves[name].append(curve)
        return curves

    return run_fold


def main() -> None:
    args = probe_arguments(__doc__, "review_astronomaly_probe.json")
    start = time.perf_counter()
    table = validation.validation_pool(args.run, args.workdir or args.run.parent.parent)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    print("features:", ", ".join(c for c in shipped if not c.startswith("mu_")), flush=True)
    run_fold = fold_runner(draw_curves, CANDIDATES)
    found, timings = probe_loop(table, shipped, run_fold, SHIPPED, range(args.draws))
    report_policies(found, timings, SHIPPED, CANDIDATES, args.out, start)


if __name__ == "__main__":
    main()
