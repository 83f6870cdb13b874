"""Anomaly-detection metrics: small pure functions of (scores, labels).

Conventions: `scores` is float (n,), higher = more anomalous; `labels` is bool (n,), True for an
anomaly. Rankings sort by descending score; ties are broken by position (a stable sort), so a
metric never depends on anything but its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

# Fractions and absolute counts of the ranked list for the recall-at-top metrics.
TOP_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.15)
TOP_COUNTS: tuple[int, ...] = (100, 1000, 2000)
PURITY_COUNT = 100
# Names of the ranking metrics that `detection_metrics` returns besides auroc and ap.
RANKING_KEYS: tuple[str, ...] = (
    *(f"recall_top_{round(f * 100)}pct" for f in TOP_FRACTIONS),
    *(f"recall_top_{k}" for k in TOP_COUNTS),
    f"purity_top_{PURITY_COUNT}",
    "precision_at_n_anomalies",
)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-d")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores, labels


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random anomaly outscores a random known
    object (ties count one half). NaN when either group is empty."""
    scores, labels = _check(scores, labels)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, scores))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: mean over anomalies of the precision at the rank where each is found
    (sklearn's step-wise definition, no interpolation). NaN without anomalies."""
    scores, labels = _check(scores, labels)
    if not labels.any():
        return math.nan
    return float(average_precision_score(labels, scores))


def top_k(n: int, fraction: float) -> int:
    """Number of objects in the top `fraction` of a list of `n`: ceil(fraction * n), at least 1."""
    return max(1, math.ceil(fraction * n - 1e-9))


def _ranked_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    return labels[order]


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of all anomalies found among the `k` highest scores (k clipped to n)."""
    scores, labels = _check(scores, labels)
    if not labels.any():
        return math.nan
    k = min(int(k), labels.size)
    return float(_ranked_labels(scores, labels)[:k].sum() / labels.sum())


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Purity: fraction of anomalies among the `k` highest scores (k clipped to n)."""
    scores, labels = _check(scores, labels)
    k = min(int(k), labels.size)
    if k <= 0:
        return math.nan
    return float(_ranked_labels(scores, labels)[:k].mean())


def detection_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every summary metric for one ranking, as a flat dict with stable names:
    `auroc`, `ap`, `recall_top_1pct`, `recall_top_5pct`, `recall_top_15pct`,
    `recall_top_100`, `recall_top_1000`, `recall_top_2000`, `purity_top_100`, and
    `precision_at_n_anomalies` (the purity of the top k for k = the number of anomalies, which,
    unlike the top 100, can reach 1 when anomalies are few)."""
    scores, labels = _check(scores, labels)
    out = {"auroc": auroc(scores, labels), "ap": average_precision(scores, labels)}
    for fraction in TOP_FRACTIONS:
        out[f"recall_top_{round(fraction * 100)}pct"] = recall_at_k(
            scores, labels, top_k(labels.size, fraction)
        )
    for count in TOP_COUNTS:
        out[f"recall_top_{count}"] = recall_at_k(scores, labels, count)
    out[f"purity_top_{PURITY_COUNT}"] = precision_at_k(scores, labels, PURITY_COUNT)
    n_anomalies = int(labels.sum())
    out["precision_at_n_anomalies"] = (
        precision_at_k(scores, labels, n_anomalies) if n_anomalies else math.nan
    )
    return out


def bootstrap_auroc(
    scores: np.ndarray, labels: np.ndarray, n_resamples: int, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the AUROC over bootstrap resamples (known objects and anomalies
    resampled separately, so each resample keeps both groups' sizes). NaN without both groups.
    """
    scores, labels = _check(scores, labels)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if not positives.size or not negatives.size or n_resamples < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pos = rng.choice(positives, (n_resamples, positives.size))
    neg = rng.choice(negatives, (n_resamples, negatives.size))
    low, high = np.quantile(_resampled_auroc(scores, pos, neg), [0.025, 0.975])
    return float(low), float(high)


def bootstrap_mean_class_auroc(
    scores: np.ndarray,
    target: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[int],
    n_resamples: int,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of the mean per-class AUROC over bootstrap resamples.

    Each resample draws the known objects once, shared by every class as the mean shares them,
    and each anomaly class's objects within that class (each group keeps its size). NaN without
    known objects or an anomaly class present.
    """
    scores, labels = _check(scores, labels)
    target = np.asarray(target)
    negatives = np.flatnonzero(~labels)
    members = [np.flatnonzero(labels & (target == c)) for c in classes]
    members = [m for m in members if m.size]
    if not members or not negatives.size or n_resamples < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    neg = rng.choice(negatives, (n_resamples, negatives.size))
    per_class = [
        _resampled_auroc(scores, rng.choice(m, (n_resamples, m.size)), neg) for m in members
    ]
    low, high = np.quantile(np.mean(per_class, axis=0), [0.025, 0.975])
    return float(low), float(high)


def _resampled_auroc(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The AUROC of each resample, a row of `pos` (anomalies) and `neg` (known objects) indexing
    `scores`: the Mann-Whitney statistic from mid-ranks (ties count one half)."""
    ranks = stats.rankdata(np.concatenate([scores[pos], scores[neg]], axis=1), axis=1)
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    u = ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def n_anomalies_for_rate(n_known: int, rate: float) -> int:
    """Anomalies to draw so that they make up `rate` of (known + drawn): round(rate * n_known /
    (1 - rate)), at least 1."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"anomaly rate must be in (0, 1), got {rate}")
    return max(1, round(rate * n_known / (1.0 - rate)))


def draw_realistic(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one draw at a realistic anomaly rate: every known object, plus a random subset
    (without replacement) of the anomalies sized by `n_anomalies_for_rate`, capped at all of
    them. Returned sorted, so the subset keeps the original order."""
    labels = np.asarray(labels, dtype=bool)
    known = np.flatnonzero(~labels)
    anomalies = np.flatnonzero(labels)
    n_draw = min(n_anomalies_for_rate(known.size, rate), anomalies.size)
    chosen = rng.choice(anomalies, size=n_draw, replace=False)
    return np.sort(np.concatenate([known, chosen]))


def realistic_rate_metrics(
    scores: np.ndarray, labels: np.ndarray, rate: float, n_draws: int, seed: int = 0
) -> dict:
    """`detection_metrics` over `n_draws` subsamples at anomaly rate `rate`.

    Returns `{"mean": {...}, "std": {...}}` (std with ddof=1) plus `n_anomalies` per draw and
    the `rate` actually reached. The draws depend only on (labels, rate, n_draws, seed), so every
    method is compared on the same subsamples.
    """
    scores, labels = _check(scores, labels)
    if n_draws < 2:
        raise ValueError("need at least 2 draws for a standard deviation")
    rng = np.random.default_rng(seed)
    rows = []
    index = np.empty(0, dtype=np.int64)
    for _ in range(n_draws):
        index = draw_realistic(labels, rate, rng)
        rows.append(detection_metrics(scores[index], labels[index]))
    keys = rows[0].keys()
    n_drawn = int(labels[index].sum())
    return {
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "std": {k: float(np.std([r[k] for r in rows], ddof=1)) for k in keys},
        "n_anomalies": n_drawn,
        "rate": n_drawn / max(index.size, 1),
    }


def method_metrics(
    scores: np.ndarray,
    target: np.ndarray,
    labels: np.ndarray,
    anomaly_classes: tuple[int, ...],
    rate: float,
    n_draws: int,
    seed: int,
    n_bootstrap: int = 0,
) -> dict[str, Any]:
    """Every metric of one scoring method on one population of known and anomaly objects.

    Args:
        scores: (n,) the method's scores; target: (n,) class labels; labels: (n,) True for the
            anomalies.
        anomaly_classes: the protocol's anomaly classes (those absent from `target` are skipped).
        rate, n_draws, seed: the realistic-rate subsampling (`realistic_rate_metrics`).
        n_bootstrap: resamples of the 95% intervals of the per-class AUROC (`auroc_ci`) and of
            their mean (`mean_class_auroc_ci`); 0: none.

    Returns:
        `overall` (`detection_metrics`), `per_class` (n, auroc, ap, and with `n_bootstrap` the
        auroc_ci of each anomaly class against the known objects), `mean_class_auroc` (and with
        `n_bootstrap` its `mean_class_auroc_ci`), and `realistic` when both groups are present.
    """
    per_class = {}
    for c in anomaly_classes:
        subset = ~labels | (target == c)
        class_labels = labels[subset]
        if class_labels.any():
            per_class[str(c)] = {
                "n": int(class_labels.sum()),
                "auroc": auroc(scores[subset], class_labels),
                "ap": average_precision(scores[subset], class_labels),
            }
            if n_bootstrap:
                ci = bootstrap_auroc(scores[subset], class_labels, n_bootstrap, seed)
                per_class[str(c)]["auroc_ci"] = list(ci)
    aurocs = [v["auroc"] for v in per_class.values()]
    out: dict[str, Any] = {
        "overall": detection_metrics(scores, labels),
        "per_class": per_class,
        "mean_class_auroc": float(np.mean(aurocs)) if aurocs else math.nan,
    }
    if n_bootstrap and per_class:
        ci = bootstrap_mean_class_auroc(
            scores, target, labels, [int(c) for c in per_class], n_bootstrap, seed
        )
        out["mean_class_auroc_ci"] = list(ci)
    if labels.any() and (~labels).any() and n_draws >= 2:
        out["realistic"] = realistic_rate_metrics(scores, labels, rate, n_draws, seed)
    return out
