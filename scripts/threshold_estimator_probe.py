"""How the flag threshold is read off the val known objects: the empirical quantile or a tail
model? (#10, the false-positive rate per depth tercile)

    python scripts/threshold_estimator_probe.py VALIDATED_RUN RUN [RUN ...] [--repeats 200]
    # VALIDATED_RUN: a default-preset `rare` run with `make validate` done (its folds' val known
    # objects; the objects' depth from its `scores.parquet`); RUN: evaluated runs (their val
    # known objects). No test row is read.

The flag threshold of each depth tercile is the `1 - target_fpr` quantile of that tercile's val
known objects' `anomaly_score` (`calibration.FlagThreshold`). With about 200 of them a tercile
(`sn`: 599 val known objects) the 1% quantile is their second-highest score: unbiased, but its
tail probability varies from one sample to the next about as much as the target itself (a
Beta(2, n - 1) variable), and `sn`'s test known objects came out at 0.00% in the bright tercile
(seen on the test split before this probe; that observation is what prompted it, the choice is
made here on val known objects alone). A smoother estimate may hold the rate better:

- `empirical` (shipped): the 'higher' order statistic at `1 - target_fpr`.
- `harrell_davis`: the Harrell-Davis quantile (scipy.stats.mstats.hdquantiles), a weighted mean
  of all order statistics, most of the weight on those near the quantile.
- `exponential_tail`: peaks over a threshold: the `1 - 10 * target_fpr` quantile `u` and the
  mean excess `s` of the scores above it, threshold `u + s * ln(10)` (an exponential tail above
  `u`; `anomaly_score` is -log10 of a tail probability, whose upper tail is exponential for
  objects like the reference, so the model fits the known objects by construction).

Populations (val known objects only): each RUN's val split (`scores.parquet`, split `val`), and
each fold of VALIDATED_RUN's validation (`validation/scores.parquet`: the fold's val known
objects of the other classes, the shipped fusion recomputed from the stored components as the
fusion search does; their depth from VALIDATED_RUN's `scores.parquet`). For each, `--repeats`
random halves: `FlagThreshold.fit` (depth terciles set on the half) with the candidate's
estimator on one half, the false-positive rate measured in each tercile of the other half.

Adoption rule, written and committed before this run: a candidate replaces `empirical` if, over
the populations, its share of (half, tercile) rates within 0.5-2% beats `empirical`'s by more
than twice the standard error of the paired per-population differences, and its mean rate over
all halves and terciles lies within 0.8-1.25%; of two that pass, the higher share. The halves
hold half the objects a real threshold is set on, so the real gain would be smaller than the
one measured here.

Result (11 s on 2 cores; 200 halves each; the validation of the shipped default, its ten folds,
and the evaluated default runs of `rare` and `sn`; `sn`'s halves, 299 objects, hold two depth
bins): share of (half, tercile) rates within 0.5-2%: `empirical` 53.4% (mean rate 1.19%),
`harrell_davis` 54.8% (+1.4 ± 1.8 points, 8/12 populations better; mean 1.06%),
`exponential_tail` 56.3% (+2.9 ± 1.1 points, 10/12; mean **1.27%**, above the 1.25% the rule
allows: its threshold is low, most of all in the faint tercile, 1.2-1.8% there). Neither passes:
`empirical` stays. Most of the spread is the measured half's own (about 185 objects a tercile:
a 1% rate is two objects), which no estimator removes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from scipy.stats.mstats import hdquantiles

from plasticc_jax import calibration
from plasticc_jax.config import VALIDATED_FUSION
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds

TARGET = 0.01
BAND = (0.005, 0.02)


def harrell_davis(scores: np.ndarray, target_fpr: float) -> float:
    return float(hdquantiles(np.asarray(scores, np.float64), prob=[1.0 - target_fpr])[0])


def exponential_tail(scores: np.ndarray, target_fpr: float) -> float:
    x = np.asarray(scores, np.float64)
    u = float(np.quantile(x, 1.0 - 10 * target_fpr))
    excess = x[x > u] - u
    return u + (float(excess.mean()) if excess.size else 0.0) * np.log(10.0)


ESTIMATORS: dict[str, Callable[[np.ndarray, float], float]] = {
    "empirical": calibration.calibrate_threshold,  # the shipped one
    "harrell_davis": harrell_davis,
    "exponential_tail": exponential_tail,
}


def populations(validated: Path, runs: list[Path]) -> dict[str, pd.DataFrame]:
    """Name -> val known objects' `anomaly_score` and `log10_peak_snr`."""
    out = {}
    for run in runs:
        table = pd.read_parquet(run / "scores.parquet")
        val = table[(table["split"] == "val") & ~table["is_anomaly"]]
        columns = ["object_id", "anomaly_score", "log10_peak_snr"]
        out[f"{run.parent.parent.name}/{run.name}"] = val[columns]
    depth = pd.read_parquet(validated / "scores.parquet", columns=["object_id", "log10_peak_snr"])
    folds = Folds(pd.read_parquet(validated / "validation" / "scores.parquet"))
    fused = folds.fused(parse_fusion(VALIDATED_FUSION["rare"]))
    for fold, rows in folds.folds.items():
        negatives = rows[~folds.positive[rows]]
        frame = folds.scores.iloc[negatives][["object_id"]].assign(anomaly_score=fused[negatives])
        out[f"fold-{fold}"] = frame.merge(depth, on="object_id", how="left")
    return out


def rates(frame: pd.DataFrame, estimator: str, repeats: int) -> np.ndarray:
    """(repeats, 3) false-positive rate per depth tercile of the measured half."""
    scores = frame["anomaly_score"].to_numpy(np.float64)
    depth = frame["log10_peak_snr"].to_numpy(np.float64)
    rng = np.random.default_rng(0)
    out = np.full((repeats, 3), np.nan)
    with mock.patch.object(calibration, "calibrate_threshold", ESTIMATORS[estimator]):
        for r in range(repeats):
            order = rng.permutation(len(scores))
            fit, measure = order[: len(order) // 2], order[len(order) // 2 :]
            threshold = calibration.FlagThreshold.fit(scores[fit], depth[fit], TARGET, 3)
            flagged = threshold.flag(scores[measure], depth[measure])
            which = calibration._bin(depth[measure], threshold.edges)
            for b in range(len(threshold.values)):
                out[r, b] = flagged[which == b].mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("validated_run", type=Path)
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    pops = populations(args.validated_run, args.runs)
    share = {name: {} for name in ESTIMATORS}
    mean = {name: [] for name in ESTIMATORS}
    header = " | ".join(f"{e}: tercile rates, share in band" for e in ESTIMATORS)
    print(f"population | n | {header}")
    for pop, frame in pops.items():
        cells = [pop, str(len(frame))]
        for name in ESTIMATORS:
            r = rates(frame, name, args.repeats)
            valid = r[np.isfinite(r)]
            share[name][pop] = float(np.mean((valid >= BAND[0]) & (valid <= BAND[1])))
            mean[name].append(valid)
            terciles = " / ".join(f"{100 * v:.2f}" for v in np.nanmean(r, axis=0))
            cells.append(f"{terciles}%, {100 * share[name][pop]:.1f}%")
        print(" | ".join(cells))
    base = np.array(list(share["empirical"].values()))
    for name in ESTIMATORS:
        values = np.array(list(share[name].values()))
        diff = values - base
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        overall = 100 * float(np.concatenate(mean[name]).mean())
        passes = name != "empirical" and diff.mean() > 2 * se and 0.8 <= overall <= 1.25
        print(
            f"{name}: share in 0.5-2% {100 * values.mean():.1f}% "
            f"({100 * diff.mean():+.1f} ± {100 * se:.1f} points, {(diff > 0).sum()}/{diff.size} "
            f"populations better), mean rate {overall:.2f}%" + (" PASSES" if passes else "")
        )


if __name__ == "__main__":
    main()
