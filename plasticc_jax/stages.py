"""Partial light curves in the evaluation (opt-in, docs/early.md): which rows the detector is
fitted and calibrated on, the test split's score table at every stage, and how early each anomaly
class is found; `validate` scores its folds' stages the same way (`scores_at`).

A stage is a number of days after each object's first detection (`data.stages`); inf is the
complete light curve.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax import metrics
from plasticc_jax.calibration import DEPTH_FEATURE
from plasticc_jax.config import Config
from plasticc_jax.detector import Detector
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.train import epoch_rows


def detector_rows(object_id: np.ndarray, complete: np.ndarray, config: Config) -> np.ndarray:
    """(n,) bool: the rows the detector is fitted and calibrated on: every object's complete
    light curve and, with `train.partial_curves`, one of its partial ones, the stage drawn
    uniformly (seeded by `eval.seed`). One partial row per object rather than all of them: the
    detector sees every stage across objects at a third of the cost (measured: fitting and
    cross-fitting on all six rows per object took over 20 minutes on 2 busy cores)."""
    chosen = complete.copy()
    if config.train.partial_curves:
        partial = np.flatnonzero(~complete)
        rng = np.random.default_rng([config.eval.seed, 1])
        chosen[partial[epoch_rows(object_id[partial], rng)]] = True
    return chosen


def early_table(
    rows: dict[str, np.ndarray], scores: dict[str, np.ndarray], detector: Detector
) -> pd.DataFrame:
    """The test split's rows at every stage (complete and partial light curves): who, the stage
    (days after the first detection; inf: complete), the score and the flag."""
    test = rows["split"] == "test"
    score = scores["anomaly_score"][test]
    depth = rows["features"][test][:, FEATURE_NAMES.index(DEPTH_FEATURE)]
    return pd.DataFrame(
        {
            "object_id": rows["object_id"][test],
            "target": rows["target"][test],
            "is_anomaly": rows["is_anomaly"][test],
            "stage": rows["stage"][test].astype(np.float64),
            "anomaly_score": score,
            "flagged": detector.flag(score, depth),
        }
    )


def stage_name(days: float) -> str:
    """`2` for 2 days after the first detection, `complete` for the whole light curve."""
    return "complete" if math.isinf(days) else f"{days:g}"


def scores_at(staged: pd.DataFrame, ids: np.ndarray, days: float) -> tuple[np.ndarray, np.ndarray]:
    """(score, scorable) of the objects `ids` at stage `days` of a staged score table (columns
    `object_id`, `stage`, `anomaly_score`): an object without a row then (too few observations
    by then) cannot be scored, and ranks last, all such tied."""
    at = staged[staged["stage"] == days].set_index("object_id")["anomaly_score"]
    score = at.reindex(ids).to_numpy(np.float64)
    scorable = np.isfinite(score)
    floor = np.nanmin(score) - 1.0 if scorable.any() else 0.0
    return np.where(scorable, score, floor), scorable


def flags_at(staged: pd.DataFrame, ids: np.ndarray, days: float) -> np.ndarray:
    """(n,) bool: whether the objects `ids` are flagged at stage `days` of `early_table`'s
    table (an object without a row then is not)."""
    at = staged[staged["stage"] == days].set_index("object_id")["flagged"]
    return at.reindex(ids, fill_value=False).to_numpy(bool)


def early_metrics(
    staged: pd.DataFrame,
    known_classes: tuple[int, ...],
    anomaly_classes: list[int],
    detector: Detector,
) -> dict[str, Any]:
    """How early each anomaly class is found, on the test split (`early_table`).

    At each stage (days after each object's first detection), every test object is scored with
    its light curve as known then; an object with too few observations by then cannot be scored
    and ranks last (ties). Per anomaly class against the known classes: AUROC, recall in the top
    1% (of that class's objects and the known ones; and the best a perfect ranking reaches
    there, `recall_top1_best_<class>`), the fraction flagged at the run's
    threshold, and the fraction scorable; for the known objects the flag rate (the
    false-positive rate at that stage). Then, per class, the first stage at which each object is
    flagged: the median of those days (None when fewer than half are ever flagged) and the
    fraction flagged at some stage (the finite stages: the complete light curve not counted).
    """
    complete = staged[np.isinf(staged["stage"])]
    ids = complete["object_id"].to_numpy()
    target = complete["target"].to_numpy()
    known = np.isin(target, known_classes) & ~complete["is_anomaly"].to_numpy(bool)
    stages = sorted(set(staged["stage"].tolist()))
    first_flag = np.full(ids.size, np.inf)
    out_rows = []
    for days in stages:
        score, scorable = scores_at(staged, ids, days)
        flagged = flags_at(staged, ids, days)
        first_flag = np.where(flagged & np.isinf(first_flag), days, first_flag)
        row: dict[str, Any] = {
            "stage": stage_name(days),
            "days": None if math.isinf(days) else days,
            "known_flag_rate": float(flagged[known].mean()) if known.any() else math.nan,
            "known_scorable": float(scorable[known].mean()) if known.any() else math.nan,
        }
        aurocs = []
        for c in anomaly_classes:
            pos = target == c
            chosen = pos | known
            auroc = metrics.auroc(score[chosen], pos[chosen])
            k = metrics.top_k(int(chosen.sum()), 0.01)
            row[f"auroc_{c}"] = auroc
            row[f"recall_top1_{c}"] = metrics.recall_at_k(score[chosen], pos[chosen], k)
            # What a perfect ranking reaches: the top 1% holds at most k of the class's objects.
            row[f"recall_top1_best_{c}"] = min(1.0, k / pos.sum()) if pos.any() else math.nan
            row[f"flagged_{c}"] = float(flagged[pos].mean())
            row[f"scorable_{c}"] = float(scorable[pos].mean())
            aurocs.append(auroc)
        row["mean_class_auroc"] = float(np.nanmean(aurocs)) if aurocs else math.nan
        out_rows.append(row)
    crossing = {}
    for c in anomaly_classes:
        days = first_flag[target == c]
        median = float(np.median(days)) if days.size else math.inf
        crossing[str(c)] = {
            "n": int(days.size),
            "median_days": None if math.isinf(median) else median,
            "fraction_flagged": float(np.isfinite(days).mean()) if days.size else math.nan,
        }
    return {
        "split": "test",
        "stages": [stage_name(d) for d in stages],
        "rows": out_rows,
        "first_crossing": crossing,
        "threshold": detector.threshold.to_json(),
    }
