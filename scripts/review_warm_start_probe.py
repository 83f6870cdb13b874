"""Would the review start better from the detector's ranking? (research, #15)

    python scripts/review_warm_start_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped policy (`active.POLICY`) ranks the first candidate by its forest alone: before any
answer, an isolation forest on the latents, the detector's scores and the context, not the
detector's `anomaly_score`. On the test split's 1% pools (docs/review.md) the loop's first 10
candidates held 1.6 anomalies against the static ranking's 3.1: until an answer says what an
anomaly looks like, the forest is a weaker ranking than the detector. The candidate, "warm
start": show the static ranking (`anomaly_score`) until the first "anomaly" answer, then the
shipped forest on every answer so far. Pools, draws and simulated expert as
`scripts/review_feature_probe.py` (the validation folds of `plasticc-jax review --simulate
--validation`: 5% of each fold's pool from the held-out class, never the test split); the same
at 1% is printed for information.

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the
candidate must beat the shipped policy by anomalies among the first 50 shown in the 5% pools by
more than twice the standard error of the paired per-fold differences.

Result (the default-rare validation of this release, its review pool rebuilt with the shipped
fusion; about 8 min on 2 cores): 5% pools, first 10 / 50 shown: static 4.30 / 17.93, the shipped
loop 5.05 / 27.85, the warm start 4.80 / 28.23 (+0.38 ± 0.97, 5/10 folds better: SN Ia-91bg
11.25 -> 17.50 and SN Iax 2.75 -> 6.50, TDE 28.25 -> 24.25). 1% pools: static 2.35 / 3.58, the
shipped loop 3.38 / 5.03, the warm start 3.62 / 5.12 (+0.10 ± 0.11). Within the noise: not
adopted. On these folds the forest's first candidates are not worse than the static ranking's,
even at 1%, unlike the test split's 1% pools.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from review_feature_probe import probe_arguments

from plasticc_jax.plasticc import class_name
from plasticc_jax.review import active, validation
from plasticc_jax.review.simulate import TARGET_SHOWN, active_curve, static_curve

FRACTIONS = (validation.FRACTION, 0.01)


def warm_start_curve(
    features: np.ndarray, static: np.ndarray, is_anomaly: np.ndarray, n_shown: int
) -> np.ndarray:
    """`simulate.active_curve` with the static ranking until the first anomaly is answered."""
    ranker = active.ActiveRanker(features, static, active.POLICY)
    shown: list[int] = []
    answered = np.zeros(len(features), bool)
    for _ in range(min(n_shown, len(features))):
        scores = (
            ranker.scores(features[shown], is_anomaly[shown])
            if is_anomaly[shown].any()
            else static.copy()
        )
        shown.append(int(ranker.order(scores, answered)[0]))  # ties as the shipped loop's
        answered[shown[-1]] = True
    return np.cumsum(is_anomaly[shown])


def simulate(table: pd.DataFrame, columns: list[str], fraction: float, draws: int) -> dict:
    """Anomalies among the first 10 and 50 shown, per fold (mean over draws), for the static
    ranking, the shipped loop and the warm start."""
    found: dict[str, dict[str, list[np.ndarray]]] = {"static": {}, "shipped": {}, "warm": {}}
    for fold in sorted(int(f) for f in table["fold"].unique()):
        part = table[table["fold"] == fold].reset_index(drop=True)
        positive = part["positive"].to_numpy(bool)
        negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
        n_pos = min(max(1, round(fraction * negatives.size / (1 - fraction))), positives.size)
        static = part["anomaly_score"].to_numpy(np.float64)
        x = active.feature_matrix(part, columns)
        curves: dict[str, list[np.ndarray]] = {name: [] for name in found}
        for draw in range(draws):  # the pools and draws of `simulate_validation`
            rng = np.random.default_rng([0, draw, fold])
            rows = np.concatenate([negatives, rng.choice(positives, n_pos, replace=False)])
            y = positive[rows]
            curves["static"].append(static_curve(static[rows], y, TARGET_SHOWN))
            curves["shipped"].append(
                active_curve(x[rows], static[rows], y, TARGET_SHOWN, [], active.POLICY)
            )
            curves["warm"].append(warm_start_curve(x[rows], static[rows], y, TARGET_SHOWN))
        for name, values in curves.items():
            found[name][class_name(fold)] = np.mean(values, axis=0)
        print(
            f"{100 * fraction:g}% {class_name(fold)}: "
            + ", ".join(f"{n} {found[n][class_name(fold)][-1]:.2f}" for n in found),
            flush=True,
        )
    return found


def main() -> None:
    args = probe_arguments(__doc__, "review_warm_start_probe.json")
    table = validation.validation_pool(args.run, args.workdir or args.run.parent.parent)
    columns = active.feature_columns(table, args.run / "models", active.POLICY)
    summary = {}
    for fraction in FRACTIONS:
        found = simulate(table, columns, fraction, args.draws)
        base = np.array([c[-1] for c in found["shipped"].values()])
        print(f"\n{100 * fraction:g}% pools: anomalies among the first 10 / 50 shown")
        for name, per_fold in found.items():
            curves = np.array(list(per_fold.values()))
            diff = curves[:, -1] - base
            se = diff.std(ddof=1) / np.sqrt(diff.size)
            print(
                f"  {name:8s} {curves[:, 9].mean():5.2f} / {curves[:, -1].mean():5.2f}   "
                f"first 50 against the shipped loop {diff.mean():+.2f} ± {se:.2f} "
                f"({int((diff > 0).sum())}/{diff.size} folds better)"
            )
            summary[f"{fraction:g}/{name}"] = {
                "first_10": curves[:, 9].mean(),
                "first_50": curves[:, -1].mean(),
                "difference": diff.mean(),
                "se": se,
                "per_fold": {fold: c[-1] for fold, c in per_fold.items()},
            }
    args.out.write_text(json.dumps(summary, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
