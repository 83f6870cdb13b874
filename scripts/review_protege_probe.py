"""Protege beside the AADForest, judged on fresh draws (research, #15; a second look)

    python scripts/review_protege_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

`scripts/review_astronomaly_probe.py` found Astronomaly's Protege (a Gaussian process on the
answers, ranked by expected improvement) within the noise of the shipped AADForest in the first 50
shown (28.20 against 27.85, +0.35 ± 1.41), with a pattern: Protege gains where the forest finds
little (the supernova subtypes held out: SN Ia-91bg 11.2 -> 20.5, SN Ia 8.2 -> 13.8) and loses
where the forest finds nearly all (EB, M-dwarf, AGN, RR Lyrae: 46-49 -> 44-47), and it starts
lower (3.92 against 5.05 in the first 10): it ignores the detector's score once answers exist.
The candidates of this second look, written from that result and before their run:

- `protege + AADForest`: the mean of the rank fractions (`active.rank_fraction`) of the shipped
  forest's score and Protege's expected improvement, both refitted on the same answers;
- `protege on the static score`: Protege with the detector's score as the process's prior mean:
  the process regresses u - a (u the expert's score, 5 or 0; a the detector's `anomaly_score`
  scaled to [0, 5] over the pool) and the expected improvement is that of a + the process's
  mean, so that far from every answer the ranking falls back to the detector's (as Astronomaly's
  NeighbourScore does), and near the answers it follows them.

Both start with the static ranking. Features, expert, answers and Protege's settings as in the
first probe.

Because the candidates were made after looking at the first probe's folds, they are judged on
fresh draws: 8 per fold (draws 4-11: the same negatives, other subsamples of the held-out class),
never the four (0-3) that suggested them. Draws 0-3 are run too, only to check that the probe's
loop reproduces `simulate_groups`'s shipped policy there. Adoption rule, as the earlier policy
probes (docs/review.md), on draws 4-11: the best candidate by anomalies among the first 50 shown
(mean over folds and draws) is adopted only if it beats the shipped policy by more than twice the
standard error of the paired per-fold differences.

Result (default-rare run with `make validate`; 5.0 min on 2 cores; the loop reproduces the
shipped policy on draws 0-3 in every fold). Draws 4-11, first 10 / first 50 / paired difference ±
s.e. / folds better / median re-rank ms: static 4.39 / 17.82; shipped 4.79 / 27.18 / - / - / 13;
`protege + AADForest` 4.92 / 27.94 / +0.76 ± 0.61 / 6 / 24; `protege on the static score` 4.42 /
23.21 / -3.96 ± 0.72 / 0 / 8. The best, `protege + AADForest`, is within the noise (1.2 standard
errors): not adopted. The pattern of the first look holds on the fresh draws (the supernova
subtypes and TDE gain 1.1-3.0, EB, M-dwarf, AGN and RR Lyrae lose 0.4-2.6), and the two cancel
in the mean. A prior mean from the detector's score makes the process follow that score and
lose the forest's gain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from review_astronomaly_probe import fold_runner, pool_views, protege_score
from review_feature_probe import probe_arguments
from review_reweight_probe import loop_curve, probe_loop, report_policies

from plasticc_jax.review import active, validation

SHIPPED = "shipped (AADForest)"
CANDIDATES = ("protege + AADForest", "protege on the static score")
CHECK_DRAWS, JUDGED_DRAWS = range(0, 4), range(4, 12)


def draw_curves(
    forest_x: np.ndarray, static: np.ndarray, y: np.ndarray, timings: dict[str, list[float]]
) -> dict[str, np.ndarray]:
    """The shipped policy's and every candidate's curve on one drawn pool."""
    shipped, x, user, static_user = pool_views(forest_x, static, y)

    def both(s: list[int]) -> np.ndarray:
        if not s:
            return static.copy()
        protege = protege_score(x, s, user[s])
        return 0.5 * (active.rank_fraction(shipped(s)) + active.rank_fraction(protege))

    def on_prior(s: list[int]) -> np.ndarray:
        return protege_score(x, s, user[s], static_user) if s else static.copy()

    rankers: dict[str, Callable[[list[int]], np.ndarray]] = {
        SHIPPED: shipped,
        "protege + AADForest": both,
        "protege on the static score": on_prior,
    }
    return {n: loop_curve(r, y, timings.setdefault(n, [])) for n, r in rankers.items()}


def main() -> None:
    args = probe_arguments(__doc__, "review_protege_probe.json")
    start = time.perf_counter()
    table = validation.validation_pool(args.run, args.workdir or args.run.parent.parent)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    run_fold = fold_runner(draw_curves, CANDIDATES)
    found, timings = probe_loop(table, shipped, run_fold, SHIPPED, CHECK_DRAWS, JUDGED_DRAWS)
    print("(judged on draws 4-11)")
    report_policies(found, timings, SHIPPED, CANDIDATES, args.out, start)


if __name__ == "__main__":
    main()
