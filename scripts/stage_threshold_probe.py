"""Flag thresholds per depth tercile, or per duration tercile, for partial light curves? (#12)

    python scripts/stage_threshold_probe.py RUN [--repeats 1000]
    # RUN: an evaluated run trained on partial light curves (the `early` preset); only its val
    # known objects are read, at every stage
    python scripts/stage_threshold_probe.py RUN --replay VAL_REPLAY [--repeats 100]
    # VAL_REPLAY: `plasticc-jax replay --run RUN --split val ...`'s output folder: the same
    # comparison on the val split's replay, and thresholds set on the replay's own re-scorings

The `early` preset's detector is calibrated on each val known object's complete light curve and
one partial one (`stages.detector_rows`), its threshold per tercile of `log10_peak_snr`. Its
flag rate then drifts with the stage: on the val known objects at every stage (in-sample, the
early run of this release) 2.18% / 1.92% / 1.25% / 1.21% / 1.71% at 2 / 5 / 10 / 20 / 50 days
after the first detection and 0.18% with the complete light curve, where a broker wants one
rate at every stage. The stage itself is not a feature (a light curve read from a file has no
"days since first detection" until a date is given), but `log10_duration` (log10 of 1 + days
between the first and last detection) follows it and is computed the same way on every path.

Rules compared (the same `1 - target_fpr` quantile in each bin, bins set on the calibration
rows): `depth`, terciles of `log10_peak_snr` (shipped); `duration`, terciles of
`log10_duration`. Measured on the val known objects alone (no test object, no anomaly):
`--repeats` random halves of the objects; on one half the bins and thresholds are set (its
calibration rows: complete + one partial each), on the other the false-positive rate is measured
at every stage, in every depth tercile (of its calibration rows) and over them.

Adoption rule, written before this run: `duration` replaces `depth` for runs trained on partial
light curves (the `early` preset) if its mean false-positive rate over the repeats lies within
0.5-2% at every stage, in every depth tercile and over all calibration rows, and `depth`'s does
not at some stage. Said plainly: the candidate was picked among six explored on the same val
known objects (200 other halves: depth terciles; duration terciles; duration in 6 bins; 2, 3 and
4 duration bins each split in depth terciles, the last two too small per bin), so this run
confirms a choice made on this data rather than testing it afresh; the test split's per-stage
rates, reported once afterwards, are the independent check.

Result (the `early` run of `rare`, 1,109 val known objects, 6,286 rows; 27 s): `depth` 2.16% /
1.90% / 1.43% / 1.32% / 1.71% / 0.20% at 2 / 5 / 10 / 20 / 50 days and complete, `duration` 1.52%
/ 1.16% / 0.88% / 0.99% / 1.52% / 0.81% (depth terciles 1.02% / 1.35% / 0.91%): adopted by the
rule, and built (commit f9f7785, `eval.flag_bin_feature`). Then the val split's replay with that
run (`--replay`, known objects only; 89,638 re-scorings) showed what the rule had not measured:
a replay re-scores objects between 50 days and the complete light curve, states no calibration
row holds, where the last duration bin's threshold (set mostly by complete light curves, which
score lowest) is far too low: 2.43% of the re-scorings flagged (4.53% at 50-200 days), against
0.91% with depth terciles, and 19.7% of the objects on some night against 14.2%. Reverted (the
test split's replay, looked at first, said the same: 3.11% against 1.01%; docs/early.md).

`--replay` also sets thresholds on the replay's own re-scorings (halves of the val objects, one
sets them, the other is measured): per quantile bin of log10(1 + days since the first detection)
(4 bins), and those bins each split in depth terciles. Both hold the rate at every age of a light
curve (1.53% / 1.11% / 1.04% / 1.04% up to 10, 50, 200 days and beyond for the first, whose
bright tercile falls to 0.42%; 1.37% / 1.23% / 1.13% / 1.17% for the second, whose depth
terciles hold too: 1.16% / 1.21% / 1.16%; 11.1% and 12.0% of the objects flagged on some night;
25 s): a replay's threshold calibrated on a replay of the val split; the second is built as
`replay --threshold-from VAL_REPLAY` (`calibration.AgeThreshold`, which this probe now calls).
It also prints the spread of the second's rate over the halves in its own age bins (measured
after the test split's replay had shown 2.39% in the oldest): 0.27-2.19% there between the 10th
and 90th percentiles, above 2% in 15.5% of the halves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import config_io, scoring, stages
from plasticc_jax.calibration import (
    DEPTH_FEATURE,
    AgeThreshold,
    FlagThreshold,
    calibrate_threshold,
)
from plasticc_jax.detector import Detector
from plasticc_jax.encoder import load_vae
from plasticc_jax.evaluate import encode_splits
from plasticc_jax.gridding import FEATURE_NAMES

TARGET_FPR = 0.01
RULES = {"depth": DEPTH_FEATURE, "duration": "log10_duration"}


def val_rows(run: Path) -> pd.DataFrame:
    """The run's val known objects at every stage: stage, whether a calibration row, the fused
    score of the run's detector, and the features the rules bin by."""
    config = config_io.read_config(run / "config.json")
    vae = load_vae(run, max_batch=config.eval.batch_size)
    rows = encode_splits(vae, run.parent.parent / config.data.dataset_dir).objects
    known = np.isin(rows["target"], config.data.known_classes) & ~rows["is_anomaly"]
    val = (rows["split"] == "val") & known
    calibration = stages.detector_rows(rows["object_id"], np.isinf(rows["stage"]), config)
    evidence = scoring.evidence(rows, vae.stats, vae.encoder.classes).take(np.flatnonzero(val))
    detector = Detector.load(run / "models", scoring_only=True)
    features = rows["features"][val]
    return pd.DataFrame(
        {
            "object_id": rows["object_id"][val],
            "stage": rows["stage"][val],
            "calibration": calibration[val],
            "score": detector.score(evidence, fused_only=True)["anomaly_score"],
            **{f: features[:, FEATURE_NAMES.index(f)] for f in RULES.values()},
        }
    )


def thresholds(score: np.ndarray, by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edges, per-bin thresholds) of tercile bins of `by` (a value on an edge: the lower bin,
    so that tied values, 0 days for one detection, share one)."""
    edges = np.unique(np.quantile(by, [1 / 3, 2 / 3]))
    which = np.digitize(by, edges, right=True)
    return edges, np.array(
        [calibrate_threshold(score[which == b], TARGET_FPR) for b in range(edges.size + 1)]
    )


def rates(
    fit: pd.DataFrame, measured: pd.DataFrame, stage_days: list[float]
) -> dict[str, np.ndarray]:
    """Per rule: false-positive rate at every stage, per depth tercile and over the calibration
    rows of `measured`, the bins and thresholds set on `fit`'s calibration rows."""
    fit = fit[fit["calibration"]]
    depth_edges = np.quantile(fit[DEPTH_FEATURE], [1 / 3, 2 / 3])
    calibration = measured["calibration"].to_numpy()
    depth_bin = np.digitize(measured[DEPTH_FEATURE], depth_edges)
    out = {}
    for name, feature in RULES.items():
        edges, values = thresholds(fit["score"].to_numpy(), fit[feature].to_numpy())
        limit = values[np.digitize(measured[feature], edges, right=True)]
        flagged = measured["score"].to_numpy() > limit
        out[name] = np.array(
            [
                *(flagged[measured["stage"].to_numpy() == d].mean() for d in stage_days),
                *(flagged[calibration & (depth_bin == b)].mean() for b in range(3)),
                flagged[calibration].mean(),
            ]
        )
    return out


REPLAY_DAYS = (10.0, 50.0, 200.0)  # the replay's ages of a light curve reported


def replay_rates(run: Path, replay: Path, repeats: int) -> None:
    """On the val split's replay (known objects): the flag rate by days since the first
    detection, per depth tercile, over all re-scorings and of objects flagged on some night:
    the replay's own flag (the threshold of the run it was made with: with commit f9f7785's
    `early` run, the `duration` rule), the run's threshold applied by depth (the shipped
    rule), and thresholds set on the replay's own re-scorings (halves of the objects)."""
    shipped = Detector.load(run / "models", scoring_only=True).threshold
    table = pd.read_parquet(replay / "candidates")
    table = table[~table["is_anomaly"].astype(bool)]
    score, depth = table["anomaly_score"].to_numpy(), table[DEPTH_FEATURE].to_numpy()
    days_since = table["days_since_detection"].to_numpy()
    age = np.log10(1 + days_since)
    ids = table["object_id"].to_numpy()
    print(f"{len(np.unique(ids))} val known objects, {len(table)} re-scorings")

    def summary(flagged: np.ndarray, rows: np.ndarray, depth_edges: np.ndarray) -> np.ndarray:
        days = np.digitize(table["days_since_detection"].to_numpy()[rows], REPLAY_DAYS, right=True)
        tercile = np.digitize(depth[rows], depth_edges)
        some_night = pd.Series(flagged).groupby(ids[rows]).max().mean()
        return np.array(
            [
                *(flagged[days == b].mean() for b in range(len(REPLAY_DAYS) + 1)),
                *(flagged[tercile == b].mean() for b in range(3)),
                flagged.mean(),
                some_night,
            ]
        )

    results: dict[str, list[np.ndarray]] = {}
    everyone = np.ones(len(table), bool)
    edges = np.quantile(depth, [1 / 3, 2 / 3])
    results["the replay's flag"] = [summary(table["flagged"].to_numpy(), everyone, edges)]
    results["the run's threshold by depth"] = [summary(shipped.flag(score, depth), everyone, edges)]
    rng = np.random.default_rng(0)
    objects = np.unique(ids)
    own_bins: list[list[float]] = []  # `days x depth`: the rate in the thresholds' own age bins
    for _ in range(repeats):
        first = np.isin(ids, objects[rng.permutation(len(objects)) < len(objects) // 2])
        for fit, measured in ((first, ~first), (~first, first)):
            edges = np.quantile(depth[fit], [1 / 3, 2 / 3])
            days = FlagThreshold.fit(score[fit], age[fit], TARGET_FPR, 4)
            flagged = days.flag(score[measured], age[measured])
            results.setdefault("days, 4 bins (replay)", []).append(
                summary(flagged, measured, edges)
            )
            # The shipped `replay --threshold-from`.
            both = AgeThreshold.fit(score[fit], days_since[fit], depth[fit], TARGET_FPR)
            flagged = both.flag(score[measured], days_since[measured], depth[measured])
            results.setdefault("days x depth (replay)", []).append(
                summary(flagged, measured, edges)
            )
            own = np.digitize(age[measured], both.edges)
            own_bins.append([flagged[own == b].mean() for b in range(len(both.bins))])
    ages = [f"up to {d:g} d" for d in REPLAY_DAYS] + [f"beyond {REPLAY_DAYS[-1]:g} d"]
    print(f"rule | {' | '.join(ages)} | faint | middle | bright | all | objects on some night")
    for name, values in results.items():
        print(f"{name} | " + " | ".join(f"{100 * v:.2f}%" for v in np.mean(values, axis=0)))
    spread = 100 * np.array(own_bins)
    print("days x depth (replay), in its own age bins (youngest first), over the halves:")
    for label, values in (
        ("mean", spread.mean(axis=0)),
        ("10th percentile", np.percentile(spread, 10, axis=0)),
        ("90th percentile", np.percentile(spread, 90, axis=0)),
        ("share of halves above 2%", 100 * (spread > 2).mean(axis=0)),
    ):
        print(f"  {label}: " + " / ".join(f"{v:.2f}%" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=None, help="1000; 100 with --replay")
    parser.add_argument("--replay", type=Path, help="the val split's replay with RUN")
    args = parser.parse_args()
    if args.replay is not None:
        replay_rates(args.run, args.replay, args.repeats or 100)
        return
    args.repeats = args.repeats or 1000
    table = val_rows(args.run)
    stage_days = sorted(set(table["stage"].tolist()))
    ids = table["object_id"].unique()
    print(f"{len(ids)} val known objects, {len(table)} rows at stages {stage_days}")
    rng = np.random.default_rng(1)  # not the exploration's halves (seed 0)
    results: dict[str, list[np.ndarray]] = {name: [] for name in RULES}
    for _ in range(args.repeats):
        first = table["object_id"].isin(ids[rng.permutation(len(ids)) < len(ids) // 2])
        for fit, measured in ((first, ~first), (~first, first)):
            for name, value in rates(table[fit], table[measured], stage_days).items():
                results[name].append(value)
    names = [stages.stage_name(d) for d in stage_days]
    print(f"rule | {' | '.join(names)} | faint | middle | bright | all (mean; 5th-95th percentile)")
    means = {}
    for name, values in results.items():
        values = np.array(values) * 100
        means[name] = values.mean(0) / 100
        low, high = np.percentile(values, [5, 95], axis=0)
        cells = [
            f"{m:.2f}% [{a:.2f}, {b:.2f}]"
            for m, a, b in zip(values.mean(0), low, high, strict=True)
        ]
        print(f"{name} | " + " | ".join(cells))
    inside = {name: bool(np.all((m >= 0.005) & (m <= 0.02))) for name, m in means.items()}
    m = means["depth"][: len(stage_days)]
    depth_stages = bool(np.all((m >= 0.005) & (m <= 0.02)))
    adopt = inside["duration"] and not depth_stages
    print(
        f"duration within 0.5-2% everywhere: {inside['duration']}; depth within it at every "
        f"stage: {depth_stages}; adopt: {adopt}"
    )


if __name__ == "__main__":
    main()
