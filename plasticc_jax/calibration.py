"""Calibration against known objects: empirical CDFs with tails, and the flag threshold.

Every component score, and the fused score, is mapped through the empirical CDF of that score on
the **val split's known objects** of the same kind (`Reference`): its tail probability p is the
fraction of val known objects that score at least as high, and the calibrated score is
`-log10 p` (2 = "1 in 100 known objects scores this high"). An object's calibrated score depends
only on that object and the run, never on the objects scored with it.

The flag threshold (`FlagThreshold`) is set per depth bin (peak signal-to-noise) of the val known
objects, so that the flag's false-positive rate holds for faint and bright objects alike.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)

MAX_REFERENCE_POINTS = 2001
# The feature that measures an object's depth: log10 of its highest point's signal-to-noise.
DEPTH_FEATURE = "log10_peak_snr"
# How far a score must exceed its threshold to be flagged: the val object that sets a threshold
# scores it exactly, and the same object scored by another path (`score` against `evaluate`)
# differs in the last bits (measured: 9e-15); without a margin it could be flagged by one only.
FLAG_MARGIN = 1e-9


@dataclass(frozen=True)
class Reference:
    """Empirical CDF of one component on the val known objects, with exponential tails.

    Inside the reference range the CDF is linear between the sorted values at plotting positions
    `(i + 1) / (n + 1)`; beyond it, exponential tails continue it (scale: the mean excess over the
    90th / under the 10th percentile), so the transform is continuous and strictly increasing and
    objects more extreme than anything in val keep their order instead of all tying at 1.

    Attributes:
        values: sorted distinct reference values, (m,).
        probabilities: CDF at `values`, increasing in (0, 1), (m,).
        scale_low: lower-tail scale, in the component's units.
        scale_high: upper-tail scale, in the component's units.
    """

    values: np.ndarray
    probabilities: np.ndarray
    scale_low: float
    scale_high: float

    @staticmethod
    def fit(sample: np.ndarray, max_points: int = MAX_REFERENCE_POINTS) -> Reference:
        """Build the reference from a 1-d sample (at least 2 finite values)."""
        x = np.sort(np.asarray(sample, dtype=np.float64))
        if x.size < 2 or not np.isfinite(x).all():
            raise ValueError("a reference needs at least 2 finite values")
        n = x.size
        probabilities = np.arange(1, n + 1) / (n + 1)
        if n > max_points:  # keep memory and JSON small: quantiles at evenly spaced ranks
            keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
            x_kept, probabilities = x[keep], probabilities[keep]
        else:
            x_kept = x
        values, inverse, counts = np.unique(x_kept, return_inverse=True, return_counts=True)
        # For tied values take the mean plotting position of the tie (mid-rank).
        probs = np.bincount(inverse, weights=probabilities) / counts
        spread = max(float(x[-1] - x[0]), 1e-12)
        q10, q90 = np.quantile(x, [0.1, 0.9])
        scale_high = float(np.mean(x[x >= q90] - q90)) if (x > q90).any() else 0.0
        scale_low = float(np.mean(q10 - x[x <= q10])) if (x < q10).any() else 0.0
        floor = 1e-3 * spread
        return Reference(values, probs, max(scale_low, floor), max(scale_high, floor))

    def log_survival(self, x: np.ndarray) -> np.ndarray:
        """log(1 - CDF), float64, same shape as `x`: the log tail probability of a val known
        object scoring at least `x`. Kept in log space so extreme scores never round to a tie."""
        x = np.asarray(x, dtype=np.float64)
        v, p = self.values, self.probabilities
        out = np.array(np.log1p(-np.interp(x, v, p)), dtype=np.float64)
        high = x > v[-1]
        out[high] = np.log1p(-p[-1]) - (x[high] - v[-1]) / self.scale_high
        low = x < v[0]
        out[low] = np.log1p(-p[0] * np.exp((x[low] - v[0]) / self.scale_low))
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """CDF values in (0, 1] (1 only where float64 rounds), float64, same shape as `x`."""
        return -np.expm1(self.log_survival(x))

    def to_json(self) -> dict[str, Any]:
        return {
            "values": self.values.tolist(),
            "probabilities": self.probabilities.tolist(),
            "scale_low": self.scale_low,
            "scale_high": self.scale_high,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Reference:
        return Reference(
            np.asarray(raw["values"], np.float64),
            np.asarray(raw["probabilities"], np.float64),
            float(raw["scale_low"]),
            float(raw["scale_high"]),
        )

    def tail_score(self, x: np.ndarray) -> np.ndarray:
        """-log10 of the tail probability: 0 for the lowest values, 2 where 1% of the reference
        scores at least as high; float64, same shape as `x`."""
        return -self.log_survival(x) / np.log(10.0)


def calibrate_threshold(scores: np.ndarray, target_fpr: float) -> float:
    """Score above which `target_fpr` of the given (known-class) scores lie: their
    `1 - target_fpr` quantile (the 'higher' order statistic, so at most target_fpr is above)."""
    if not 0.0 < target_fpr < 1.0:
        raise UserError(f"eval.target_fpr={target_fpr}: must be in (0, 1)")
    return float(np.quantile(np.asarray(scores, np.float64), 1.0 - target_fpr, method="higher"))


@dataclass(frozen=True)
class FlagThreshold:
    """`anomaly_score` above which an object is flagged, per depth bin.

    The fused score drifts with depth (faint known objects score higher: their light curves are
    explained less well), so one threshold would flag more faint than bright known objects. The
    bins are quantiles of the val known objects' `DEPTH_FEATURE` (terciles by default,
    `eval.flag_depth_bins`), and each bin's threshold is the `1 - target_fpr` quantile of its
    own val known objects' scores. An object fainter or brighter than every val known object
    falls in the first or last bin; one without a depth (NaN) in the first.

    Attributes:
        edges: (bins - 1,) increasing depth edges between the bins (empty: one threshold).
        values: (bins,) the threshold of each bin.
    """

    edges: tuple[float, ...]
    values: tuple[float, ...]

    @staticmethod
    def fit(scores: np.ndarray, depth: np.ndarray, target_fpr: float, bins: int) -> FlagThreshold:
        """Thresholds for `target_fpr` in `bins` depth quantile bins of the (known) objects
        given; fewer bins where some would hold fewer than 1 / target_fpr of them (the
        quantile is then not resolved), down to one threshold for all."""
        scores, depth = np.asarray(scores, np.float64), np.asarray(depth, np.float64)
        finite = depth[np.isfinite(depth)]
        edges, which = np.zeros(0), np.zeros(len(scores), np.int64)
        for n_bins in range(min(bins, int(len(scores) * target_fpr)), 1, -1):
            candidate = np.quantile(finite, np.arange(1, n_bins) / n_bins) if finite.size else []
            in_bin = bin_index(depth, candidate)
            sizes = np.bincount(in_bin, minlength=n_bins)
            if np.all(np.diff(candidate) > 0) and sizes.min() * target_fpr >= 1:
                edges, which = np.asarray(candidate), in_bin
                break  # else ties in depth, or too few objects in a bin: fewer bins
        values = [
            calibrate_threshold(scores[which == b], target_fpr) for b in range(edges.size + 1)
        ]
        return FlagThreshold(tuple(map(float, edges)), tuple(values))

    def at(self, depth: np.ndarray) -> np.ndarray:
        """(n,) the threshold of each object's depth bin."""
        return np.asarray(self.values)[bin_index(np.asarray(depth, np.float64), self.edges)]

    def flag(self, anomaly_score: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(n,) bool: scores above their depth bin's threshold (by more than `FLAG_MARGIN`)."""
        return np.asarray(anomaly_score) > self.at(depth) + FLAG_MARGIN

    def describe(self) -> str:
        """`2.013` for one threshold; `2.310 / 2.050 / 1.980 (log10_peak_snr below 1.29,
        1.29 to 1.71, from 1.71)` for three bins."""
        if not self.edges:
            return f"{self.values[0]:.3f}"
        e = self.edges
        bins = [
            f"below {e[0]:.2f}",
            *(f"{a:.2f} to {b:.2f}" for a, b in itertools.pairwise(e)),
            f"from {e[-1]:.2f}",
        ]
        values = " / ".join(f"{v:.3f}" for v in self.values)
        return f"{values} ({DEPTH_FEATURE} {', '.join(bins)})"

    def to_json(self) -> dict[str, Any]:
        return {"feature": DEPTH_FEATURE, "edges": list(self.edges), "values": list(self.values)}

    @staticmethod
    def from_json(raw: Any) -> FlagThreshold:
        """Read `to_json`'s record, or a number: the one threshold of a run of an earlier
        release."""
        if isinstance(raw, dict):
            return FlagThreshold(tuple(map(float, raw["edges"])), tuple(map(float, raw["values"])))
        return FlagThreshold((), (float(raw),))


@dataclass(frozen=True)
class AgeThreshold:
    """`anomaly_score` above which a replay flags an object, per bin of its age (days since its
    first detection) and, within each, of its depth (`replay --threshold-from`).

    A replay re-scores objects at every age, most of them between a few weeks and the whole
    light curve: states the detector's calibration rows (complete light curves, and partial
    ones up to 50 days for the `early` preset) do not hold, where its threshold does not keep
    its rate (docs/early.md). This one is set on a replay of the run's val split, the known
    objects' re-scorings: bins of log10(1 + days since the first detection) (quantiles, 4 by
    default), each split in depth terciles (`FlagThreshold`).

    Attributes:
        edges: (bins - 1,) increasing edges of log10(1 + days) between the age bins.
        bins: the depth thresholds of each age bin.
    """

    edges: tuple[float, ...]
    bins: tuple[FlagThreshold, ...]

    @staticmethod
    def fit(
        scores: np.ndarray,
        days: np.ndarray,
        depth: np.ndarray,
        target_fpr: float,
        age_bins: int = 4,
        depth_bins: int = 3,
    ) -> AgeThreshold:
        """Thresholds for `target_fpr` in `age_bins` quantile bins of age, each in `depth_bins`
        of depth, of the (known) re-scorings given; fewer bins where some would hold fewer than
        1 / target_fpr of them (`FlagThreshold.fit`)."""
        scores, depth = np.asarray(scores, np.float64), np.asarray(depth, np.float64)
        age = _age(days)
        edges = FlagThreshold.fit(scores, age, target_fpr, age_bins).edges
        which = bin_index(age, edges)
        bins = tuple(
            FlagThreshold.fit(scores[which == b], depth[which == b], target_fpr, depth_bins)
            for b in range(len(edges) + 1)
        )
        return AgeThreshold(edges, bins)

    def flag(self, anomaly_score: np.ndarray, days: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(n,) bool: scores above the threshold of their age and depth bin (by more than
        `FLAG_MARGIN`)."""
        which = bin_index(_age(days), self.edges)
        depth = np.asarray(depth, np.float64)
        limit = np.empty(len(which))
        for b, threshold in enumerate(self.bins):
            limit[which == b] = threshold.at(depth[which == b])
        return np.asarray(anomaly_score) > limit + FLAG_MARGIN

    def describe(self) -> str:
        """One line per age bin: its days and its depth thresholds."""
        days = [0.0, *(10**e - 1 for e in self.edges), np.inf]
        return "; ".join(
            f"{a:.0f}-{b:.0f} days: {t.describe()}"
            for (a, b), t in zip(itertools.pairwise(days), self.bins, strict=True)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": "log10(1 + days since the first detection)",
            "edges": list(self.edges),
            "bins": [t.to_json() for t in self.bins],
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> AgeThreshold:
        bins = tuple(FlagThreshold.from_json(t) for t in raw["bins"])
        return AgeThreshold(tuple(map(float, raw["edges"])), bins)


def _age(days: np.ndarray) -> np.ndarray:
    """log10(1 + days since the first detection); NaN stays NaN (the first bin)."""
    return np.log10(1.0 + np.maximum(np.asarray(days, np.float64), 0.0))


def bin_index(values: np.ndarray, edges: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """(n,) each value's bin among `edges` (a depth or an age; NaN, none: the first)."""
    return np.digitize(np.where(np.isnan(values), -np.inf, values), np.asarray(edges, np.float64))


def warn_weak_calibration(
    val_scores: dict[str, np.ndarray], weights: dict[str, float], target_fpr: float
) -> None:
    """Warn where the val known objects cannot support the fusion or the threshold: a fused
    component that is constant on them (its weight is dead: e.g. a one-class classifier), or
    too few of them to resolve `target_fpr` (the threshold is then their highest score)."""
    for name, weight in weights.items():
        if weight > 0 and np.ptp(val_scores[name]) == 0:
            log.warning(
                "fused component %s is constant on the val known objects: it adds nothing", name
            )
    n_val = len(next(iter(val_scores.values()), ()))
    if target_fpr * n_val < 1:
        log.warning(
            "%d val known objects cannot resolve a false-positive rate of %.3g: the flag "
            "threshold is their highest score",
            n_val,
            target_fpr,
        )
