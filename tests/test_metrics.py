"""Metric functions against small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plasticc_jax import metrics

# Ranked by descending score: a=0.9 (anomaly), k=0.8, a=0.7, k=0.6, k=0.5, a=0.4.
SCORES = np.array([0.5, 0.9, 0.6, 0.7, 0.4, 0.8])
LABELS = np.array([False, True, False, True, True, False])


def test_auroc_by_hand():
    # Pairs (anomaly, known) with the anomaly higher: 0.9 beats 3, 0.7 beats 2 (0.6, 0.5),
    # 0.4 beats none: 5 of 9.
    assert metrics.auroc(SCORES, LABELS) == pytest.approx(5 / 9)
    # Ties count one half.
    assert metrics.auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert math.isnan(metrics.auroc(SCORES, np.zeros(6, bool)))


def test_the_fusion_search_auroc_is_the_metric():
    """The fusion search's fast AUROC (negatives below each positive, half the equal ones) is
    `metrics.auroc`, ties and scores of -inf (objects not scorable yet) included."""
    from plasticc_jax.fusion_search import auroc

    assert auroc(SCORES, LABELS) == pytest.approx(5 / 9)
    assert math.isnan(auroc(SCORES, np.zeros(6, bool)))
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 300))
        values = rng.integers(0, 12, n) / 7.0  # many ties
        values[rng.random(n) < 0.1] = -np.inf
        positive = rng.random(n) < 0.3
        if positive.all() or not positive.any():
            continue
        finite = np.where(np.isinf(values), -1.0, values)  # the same order, for scikit-learn
        assert auroc(values, positive) == pytest.approx(metrics.auroc(finite, positive), abs=1e-12)


def test_average_precision_by_hand():
    # Anomalies found at ranks 1, 3, 6: precisions 1/1, 2/3, 3/6.
    expected = (1 + 2 / 3 + 3 / 6) / 3
    assert metrics.average_precision(SCORES, LABELS) == pytest.approx(expected)


def test_recall_and_purity_at_k():
    assert metrics.recall_at_k(SCORES, LABELS, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(SCORES, LABELS, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(SCORES, LABELS, 100) == 1.0  # clipped to n
    assert metrics.precision_at_k(SCORES, LABELS, 2) == pytest.approx(1 / 2)
    assert metrics.precision_at_k(SCORES, LABELS, 100) == pytest.approx(3 / 6)


def test_ties_are_broken_by_position():
    scores = np.array([1.0, 1.0, 0.0])
    assert metrics.recall_at_k(scores, np.array([True, False, False]), 1) == 1.0
    assert metrics.recall_at_k(scores, np.array([False, True, False]), 1) == 0.0


def test_top_k_sizes():
    assert metrics.top_k(1000, 0.01) == 10
    assert metrics.top_k(150, 0.01) == 2  # ceil(1.5)
    assert metrics.top_k(10, 0.01) == 1
    assert metrics.top_k(100, 0.15) == 15


def test_detection_metrics_keys_and_values():
    out = metrics.detection_metrics(SCORES, LABELS)
    assert set(out) == {
        "auroc",
        "ap",
        "recall_top_1pct",
        "recall_top_5pct",
        "recall_top_15pct",
        "recall_top_100",
        "recall_top_1000",
        "recall_top_2000",
        "purity_top_100",
        "precision_at_n_anomalies",
    }
    assert out["recall_top_15pct"] == pytest.approx(1 / 3)  # ceil(0.9) = 1 object
    assert out["purity_top_100"] == pytest.approx(0.5)
    # k = the 3 anomalies: the top 3 of SCORES hold 2 of them.
    assert out["precision_at_n_anomalies"] == pytest.approx(2 / 3)


def test_bootstrap_interval_brackets_the_auroc():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, bool), np.zeros(500, bool)]
    scores = rng.normal(size=530) + 1.5 * labels
    low, high = metrics.bootstrap_auroc(scores, labels, 500, seed=0)
    value = metrics.auroc(scores, labels)
    assert low < value < high and 0.05 < high - low < 0.3
    # Each resample's AUROC is scikit-learn's, ties counting one half (found by a review: the
    # check here could not fail): recomputed resample by resample from the same draws.
    ties = rng.integers(0, 3, 60).astype(float)
    tie_labels = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    draws = np.random.default_rng(7)
    pos = draws.choice(np.flatnonzero(tie_labels), (50, 20))
    neg = draws.choice(np.flatnonzero(~tie_labels), (50, 40))
    by_hand = [
        metrics.auroc(np.r_[ties[p], ties[q]], np.r_[np.ones(20, bool), np.zeros(40, bool)])
        for p, q in zip(pos, neg, strict=True)
    ]
    expected = tuple(np.quantile(by_hand, [0.025, 0.975]))
    assert metrics.bootstrap_auroc(ties, tie_labels, 50, seed=7) == pytest.approx(expected)
    assert metrics.bootstrap_auroc(np.ones(60), tie_labels, 50) == (0.5, 0.5)
    assert np.isnan(metrics.bootstrap_auroc(scores, np.zeros(530, bool), 100)[0])


def test_the_mean_class_auroc_interval_shares_the_known_objects_of_each_resample():
    rng = np.random.default_rng(1)
    target = np.r_[np.full(40, 90), np.full(15, 64), np.full(10, 95), np.full(5, 6)]
    labels = target != 90
    scores = rng.normal(size=70) + (target == 64) - 0.5 * (target == 95)
    scores[:3] = scores[40:43]  # ties between known objects and anomalies count one half
    # By hand from the same draws: the known objects once a resample, each class's anomalies
    # within it (class 6 is not asked for), the mean of the classes' AUROCs.
    draws = np.random.default_rng(3)
    neg = draws.choice(np.arange(40), (60, 40))
    pos = {
        c: draws.choice(np.flatnonzero(target == c), (60, (target == c).sum())) for c in (64, 95)
    }
    means = [
        np.mean(
            [
                metrics.auroc(
                    np.r_[scores[pos[c][r]], scores[neg[r]]],
                    np.r_[target[pos[c][r]] == c, np.zeros(40, bool)],
                )
                for c in (64, 95)
            ]
        )
        for r in range(60)
    ]
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    got = metrics.bootstrap_mean_class_auroc(scores, target, labels, [64, 95, 42], 60, seed=3)
    assert got == pytest.approx(expected)  # a class absent from the split is left out
    # In a method's metrics it brackets the mean, and the per-class intervals are as before.
    out = metrics.method_metrics(scores, target, labels, (64, 95), 0.01, 2, 3, n_bootstrap=60)
    low, high = out["mean_class_auroc_ci"]
    assert low < out["mean_class_auroc"] < high
    subset = ~labels | (target == 64)
    assert out["per_class"]["64"]["auroc_ci"] == list(
        metrics.bootstrap_auroc(scores[subset], labels[subset], 60, 3)
    )
    assert "mean_class_auroc_ci" not in metrics.method_metrics(
        scores, target, labels, (64,), 0.01, 2, 3
    )
    assert np.isnan(metrics.bootstrap_mean_class_auroc(scores, target, labels, [42], 60)[0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="scores must be finite"):
        metrics.auroc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match=r"scores \(3,\) and labels \(2,\) must be equal 1-d"):
        metrics.auroc(np.zeros(3), np.zeros(2, bool))


def test_realistic_draw_sizes():
    assert metrics.n_anomalies_for_rate(990, 0.01) == 10
    assert metrics.n_anomalies_for_rate(50, 0.01) == 1  # at least one
    labels = np.array([False] * 990 + [True] * 100)
    rng = np.random.default_rng(0)
    index = metrics.draw_realistic(labels, 0.01, rng)
    assert index.size == 1000 and labels[index].sum() == 10
    assert np.all(np.diff(index) > 0)  # sorted, no repeats
    assert np.isin(np.flatnonzero(~labels), index).all()  # every known object kept
    # Capped at the anomalies available.
    few = np.array([False] * 990 + [True] * 3)
    assert few[metrics.draw_realistic(few, 0.01, rng)].sum() == 3


def test_realistic_rate_metrics_mean_and_std():
    rng = np.random.default_rng(1)
    labels = np.array([False] * 990 + [True] * 200)
    # A perfect ranking stays perfect in every draw: std 0.
    perfect = labels.astype(float) + 0.01 * rng.random(labels.size)
    out = metrics.realistic_rate_metrics(perfect, labels, 0.01, n_draws=20, seed=0)
    assert out["n_anomalies"] == 10 and out["rate"] == pytest.approx(0.01)
    assert out["mean"]["auroc"] == 1.0 and out["std"]["auroc"] == 0.0
    assert out["mean"]["purity_top_100"] == pytest.approx(0.1)
    # Half the anomalies rank on top, half at the bottom: recall@1% varies from draw to draw.
    mixed = perfect.copy()
    mixed[990 + np.arange(0, 200, 2)] = -1.0
    out = metrics.realistic_rate_metrics(mixed, labels, 0.01, n_draws=20, seed=0)
    assert 0.2 < out["mean"]["recall_top_1pct"] < 0.8
    assert out["std"]["recall_top_1pct"] > 0
    again = metrics.realistic_rate_metrics(mixed, labels, 0.01, n_draws=20, seed=0)
    assert again == out  # deterministic given the seed


def test_report_rates_say_n_a_and_keep_small_rates_digits() -> None:
    """Found by a review: an undefined rate printed "nan%", a rate of 0.4% "@0%"."""
    from plasticc_jax.report import _pct

    assert _pct(float("nan"), 2) == "n/a" and _pct(None, 1) == "n/a"
    assert _pct(0.004, 0) == "0.4%" and _pct(0.0004, 1) == "0.04%"
    assert _pct(0.01, 0) == "1%" and _pct(0.0092, 2) == "0.92%" and _pct(0.0, 2) == "0.00%"
