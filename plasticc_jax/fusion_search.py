"""The fusion search of the leave-one-known-class-out validation (`plasticc_jax.validate`): pure
kernels over the stored fold scores, no model and no file.

A fusion is a weighted mean of the detector's calibrated components, calibrated once more against
val known objects of the object's kind (`detector.Detector`). The search tries every combination
of weights in `WEIGHTS` for the `SEARCH_TOP` best single components and the configured fusion's,
and ranks them by the mean over the folds of the held-out class's AUROC:

- `Folds`: complete light curves (the detection issue's choice, `eval.fusion` of every preset);
- `StageFolds`: partial light curves at one stage, e.g. 10 days after the first detection (the
  `early` preset's choice, docs/early.md), scored exactly as the fold's detector scores them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax.calibration import Reference

# The fusion search tries every weight in WEIGHTS for the SEARCH_TOP best single components.
SEARCH_TOP = 6
WEIGHTS = (0, 1, 2, 3)


class _FoldScores:
    """What both kinds of fold scores share: the mean over the folds of a score's AUROC
    (`aurocs`, each kind's own), and the search over fusions (`fused`, each kind's own)."""

    def aurocs(self, values: np.ndarray) -> dict[int, float]:
        raise NotImplementedError

    def fused(self, weights: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def mean_auroc(self, values: np.ndarray) -> float:
        return float(np.mean(list(self.aurocs(values).values())))

    def search(self, components: list[str], also: Iterable[str] = ()) -> list[dict[str, Any]]:
        return search(self, components, also)


class Folds(_FoldScores):
    """The fold scores, indexed once for the many evaluations of the fusion search.

    Attributes:
        scores: one row per (fold, scored object): `fold`, `positive`, `galactic` and every
            component's calibrated score.
    """

    def __init__(self, scores: pd.DataFrame) -> None:
        self.scores = scores
        self.positive = scores["positive"].to_numpy(bool)
        self.folds = {int(f): rows for f, rows in scores.groupby("fold").indices.items()}
        # The detector group that scored each row (a kind, or the pooled `all` where a kind has
        # too few known classes); fold scores of earlier releases have only the kind.
        # A group with fewer than 2 negatives (the pooled group of a fold that left a kind
        # without known classes: no val known object routes to it) is calibrated against all of
        # the fold's, as `Detector.fit` calibrates it.
        group = "group" if "group" in scores else "galactic"
        self.groups, self.negatives = [], []
        row_groups = scores[group].to_numpy()
        for fold_rows in self.folds.values():
            pooled = fold_rows[~self.positive[fold_rows]]
            kinds = row_groups[fold_rows]
            for value in pd.unique(kinds):
                rows = fold_rows[kinds == value]
                negatives = rows[~self.positive[rows]]
                self.groups.append(rows)
                self.negatives.append(negatives if negatives.size >= 2 else pooled)

    def aurocs(self, values: np.ndarray) -> dict[int, float]:
        """AUROC of one score (aligned with `scores`) in every fold: the Mann-Whitney statistic
        of the positives against the fold's negatives (ties count one half)."""
        return {fold: auroc(values[rows], self.positive[rows]) for fold, rows in self.folds.items()}

    def fused(self, weights: dict[str, float]) -> np.ndarray:
        """The anomaly score of a fusion: the weighted mean of the calibrated components,
        calibrated once more against the fold's negatives of each kind (the val known objects,
        the detector's calibration objects) by their empirical tail: -log10 of the fraction of
        them scoring at least as high (`recalibrated`). Not exactly the detector's score: its
        `Reference` interpolates and adds exponential tails beyond the last negative. On the
        default run's `rare` folds (2026-12-04) that moves the shipped fusion's fold AUROCs by
        at most 0.0024 (its mean 0.8292 -> 0.8289) and keeps the best fusion found ahead of it."""
        return self.recalibrated(weighted_mean(self.scores, weights))

    def recalibrated(self, fused: np.ndarray) -> np.ndarray:
        """A fused score (aligned with `scores`) calibrated against the fold's negatives of each
        kind: -log10 of the fraction of them scoring at least as high."""
        out = np.zeros(len(fused))
        for rows, negatives in zip(self.groups, self.negatives, strict=True):
            reference = np.sort(fused[negatives])
            above = reference.size - np.searchsorted(reference, fused[rows], side="left")
            out[rows] = -np.log10((above + 1) / (reference.size + 1))
        return out


class StageFolds(_FoldScores):
    """The folds' rows at one stage (days after the first detection), for the fusion search of
    the early preset, scored as the fold's detector scores them and measured as `stages.
    early_metrics` measures the test split.

    A fusion's anomaly score is the weighted mean of the calibrated components calibrated once
    more (`Reference`, as `Detector.fit`) against the fold detector's calibration rows of the
    object's group (the val known objects' complete and one partial row; all of them where a
    group has fewer than 2); then, per fold, the held-out class against the other known val
    objects at this stage, an object without a row then (too few observations) ranking last.

    Args:
        stages: validate's `stages.parquet`: per fold, stage and row, `object_id`, `positive`,
            `group` (the detector group that scored it), `calibration` and every component's
            calibrated score.
        days: the stage (inf: the complete light curves).
    """

    def __init__(self, stages: pd.DataFrame, days: float) -> None:
        # Compared as stored: a stage is float32 in the datasets (7.3 days is not 7.3 there).
        days = np.float32(days)
        stage = stages["stage"].to_numpy(np.float32)
        keep = (stage == days) | stages["calibration"].to_numpy(bool)
        self.scores = stages[keep].reset_index(drop=True)
        at = np.flatnonzero(self.scores["stage"].to_numpy(np.float32) == days)
        self.groups = calibration_groups(self.scores)
        # Per fold, its objects (those with a complete row), their row at this stage (-1: none).
        row_of = pd.Series(
            at, index=pd.MultiIndex.from_frame(self.scores.loc[at, ["fold", "object_id"]])
        )
        # fold -> (row at the stage, positive)
        self.objects: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        complete = stages[np.isinf(stage)]
        for fold, objects in complete.groupby("fold"):
            keys = pd.MultiIndex.from_arrays([np.full(len(objects), fold), objects["object_id"]])
            rows = row_of.reindex(keys).fillna(-1).to_numpy(np.int64)
            self.objects[int(fold)] = (rows, objects["positive"].to_numpy(bool))

    def aurocs(self, values: np.ndarray) -> dict[int, float]:
        """Each fold's AUROC of one score (aligned with `scores`) at this stage; objects without
        a row then rank last, tied."""
        out = {}
        for fold, (rows, positive) in self.objects.items():
            score = np.where(rows >= 0, values[rows], -np.inf)  # -inf: rank last, tied
            out[fold] = auroc(score, positive)
        return out

    def fused(self, weights: dict[str, float]) -> np.ndarray:
        """A fusion's anomaly score of every row, as the fold's detector would give it."""
        return stage_fused(self.scores, self.groups, weights)


def calibration_groups(stages: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, their reference rows) of each fold and detector group of stage rows (`StageFolds`):
    the fold's calibration rows of the group, or all of the fold's where the group has fewer
    than 2."""
    calibration = stages["calibration"].to_numpy(bool)
    out = []
    for _, rows in stages.groupby("fold").indices.items():
        pooled = rows[calibration[rows]]
        groups = stages["group"].to_numpy()[rows]
        for group in np.unique(groups):
            members = rows[groups == group]
            reference = members[calibration[members]]
            out.append((members, reference if reference.size >= 2 else pooled))
    return out


def stage_fused(
    stages: pd.DataFrame, groups: list[tuple[np.ndarray, np.ndarray]], weights: dict[str, float]
) -> np.ndarray:
    """A fusion's anomaly score of every stage row, as the fold's detector gives it: the
    weighted mean of the calibrated components calibrated once more against the reference
    rows of its group (`calibration_groups`)."""
    mean = weighted_mean(stages, weights)
    out = np.zeros(len(mean))
    for rows, reference in groups:
        out[rows] = Reference.fit(mean[reference]).tail_score(mean[rows])
    return out


def weighted_mean(scores: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """The fusion's weighted mean of the calibrated components (`Detector.fuse`)."""
    total = sum(weights.values())
    return sum(w / total * scores[name].to_numpy() for name, w in weights.items())


def auroc(values: np.ndarray, positive: np.ndarray) -> float:
    """The Mann-Whitney statistic of the positives against the others (ties count one half):
    `metrics.auroc` without scikit-learn's input checks, for the search's many evaluations.
    Counted as the negatives below each positive (half those equal), an exact sum of halves."""
    negatives = np.sort(values[~positive])
    scores = values[positive]
    if not scores.size or not negatives.size:
        return float("nan")
    below = np.searchsorted(negatives, scores, side="left")
    equal = np.searchsorted(negatives, scores, side="right") - below
    u = below.sum() + 0.5 * equal.sum()
    return float(u / (scores.size * negatives.size))


def search(
    folds: _FoldScores, components: list[str], also: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Every weight combination of the `SEARCH_TOP` best single components and those in `also`
    (the configured fusion's: a component weak alone can be what the others miss), best first
    (mean fold AUROC; ties go to fewer components)."""
    single = {c: folds.mean_auroc(folds.scores[c].to_numpy()) for c in components}
    best = sorted(components, key=lambda c: -single[c])[:SEARCH_TOP]
    top = list(dict.fromkeys([*best, *(c for c in also if c in single)]))
    tried = [
        {"weights": weights, "mean_auroc": folds.mean_auroc(folds.fused(weights))}
        for weights in weight_grid(top)
    ]
    tried.sort(key=lambda t: (-round(t["mean_auroc"], 6), len(t["weights"])))
    return tried


def weight_grid(components: list[str]) -> Iterator[dict[str, float]]:
    """Every fusion of `components` with weights from `WEIGHTS`, each once (no all-zero
    weights, no multiple of another: 2,2 is 1,1)."""
    for weights in itertools.product(WEIGHTS, repeat=len(components)):
        nonzero = [w for w in weights if w]
        if nonzero and np.gcd.reduce(nonzero) == 1:
            yield {c: float(w) for c, w in zip(components, weights, strict=True) if w}


def fusion_spec(weights: dict[str, float]) -> str:
    """{component: weight} -> the `eval.fusion` value that selects it."""
    return ",".join(f"{c}:{w:g}" for c, w in weights.items())
