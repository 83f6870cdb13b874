"""A simulated expert: how many anomalies the active loop finds, against the static ranking.

For evaluation only: the expert is replaced by the true labels of the run's **test** split
(`is_anomaly`), which nothing else in a review ever reads. For each anomaly fraction (5% and 1% by
default) and each of `n_draws` draws, the pool is every known-class test object plus a random
subsample of the test anomalies making up that fraction of the pool (at 5%: the 1,480 known
objects of `rare` and 78 anomalies). Then

- **static**: candidates are shown in the order of the detector's `anomaly_score`;
- **active**: the first candidate is the top of the active model without answers, and after each
  answer the model is refitted (`active.ActiveRanker`, as in a review session) and the next
  candidate is the top unanswered object.

The discovery curve is the number of anomalies found against the number of candidates shown.
Outputs in the run: `reports/review_simulation.json` and `.md`, and the figure
`reports/figures/review_discovery.png`. No labels file is read or written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from plasticc_jax import provenance, runs
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path, atomic_write_text, folder_lock
from plasticc_jax.review import active
from plasticc_jax.review.pool import NOT_EVALUATED, read_table

log = logging.getLogger(__name__)

FRACTIONS: tuple[float, ...] = (0.05, 0.01)
N_DRAWS = 20
N_SHOWN = 100
CHECKPOINTS: tuple[int, ...] = (10, 50, 100)
# Done when, at the first fraction: the active loop finds this many times the static ranking's
# anomalies among the first `TARGET_SHOWN` candidates (mean of the draws), or all there are.
TARGET_RATIO, TARGET_SHOWN = 1.5, 50
# The goal's ratio comes with a 95% interval over the draws (a paired bootstrap: each resample
# of draws keeps a draw's static and active counts together, as they share its pool).
INTERVAL_RESAMPLES = 10_000
# Fewer draws give no interval: a bootstrap of two or three values says nothing (a review saw
# one of two draws reported as a 95% interval).
MIN_INTERVAL_DRAWS = 10
FIGURE = Path("reports") / "figures" / "review_discovery.png"
SUMMARY = Path("reports") / "review_simulation"


def active_curve(
    features: np.ndarray,
    static: np.ndarray,
    is_anomaly: np.ndarray,
    n_shown: int,
    timings: list[float],
    policy: active.Policy = active.POLICY,
) -> np.ndarray:
    """Anomalies found after each of the first `n_shown` candidates of the active loop, (k,).

    Args:
        features: (n, d) the pool's features; static: (n,) its `anomaly_score`;
        is_anomaly: (n,) the simulated expert's answers.
        timings: each re-rank's seconds are appended to it.
        policy: the active model (`active.POLICY`, as in a review session).
    """
    ranker = active.ActiveRanker(features, static, policy)
    shown: list[int] = []
    answered = np.zeros(len(features), bool)
    for _ in range(min(n_shown, len(features))):
        start = time.perf_counter()
        scores = ranker.scores(features[shown], is_anomaly[shown])
        timings.append(time.perf_counter() - start)
        shown.append(int(ranker.order(scores, answered)[0]))
        answered[shown[-1]] = True
    return np.cumsum(is_anomaly[shown])


def static_curve(static: np.ndarray, is_anomaly: np.ndarray, n_shown: int) -> np.ndarray:
    """Anomalies found among the first `n_shown` objects of the static ranking, (k,)."""
    return np.cumsum(is_anomaly[np.argsort(-static, kind="stable")][:n_shown])


def _mean_std(curves: np.ndarray, k: int) -> dict[str, float]:
    column = curves[:, min(k, curves.shape[1]) - 1]
    return {"mean": float(column.mean()), "std": float(column.std())}


def simulate(
    run_dir: Path,
    fractions: tuple[float, ...] = FRACTIONS,
    n_draws: int = N_DRAWS,
    n_shown: int = N_SHOWN,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the simulated expert on a run's test split; write the summary and the figure.

    Args:
        run_dir: a trained and evaluated run (its `scores.parquet`).
        fractions: anomaly fractions of the pool; n_draws: random pools per fraction;
        n_shown: candidates shown per draw; seed: of the draws.

    Returns:
        The summary written to `reports/review_simulation.json`.

    Raises:
        UserError: not an evaluated run, or a test split without known objects or anomalies.
    """
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    # Read while no evaluate or train rewrites the run (they hold its lock), as a review reads
    # it: one running now is named, where its INCOMPLETE marker said "run evaluate again".
    with folder_lock(run_dir, "review", shared=True):
        provenance.require_complete(run_dir)  # not a table half rewritten by evaluate
        table = read_table(run_dir / "scores.parquet", NOT_EVALUATED)
    test = table[table["split"] == "test"].reset_index(drop=True)
    labels = test["is_anomaly"].to_numpy(bool)
    known = test["target"].isin(config.data.known_classes).to_numpy() & ~labels
    known_rows, anomaly_rows = np.flatnonzero(known), np.flatnonzero(labels)
    if not known_rows.size or not anomaly_rows.size:
        raise UserError(f"the test split of {run_dir} needs known objects and anomalies")
    names = active.feature_columns(test, run_dir / "models")
    features = active.feature_matrix(test, names)
    static = test["anomaly_score"].to_numpy(np.float64)
    start = time.perf_counter()
    timings: list[float] = []
    pools: list[dict[str, Any]] = []
    pool_curves: list[dict[str, np.ndarray]] = []  # (draws, n_shown) static and active, a pool
    checkpoints = sorted({k for k in CHECKPOINTS if k < n_shown} | {n_shown})
    for fraction in fractions:
        n_anomalies = min(
            max(1, round(fraction * known_rows.size / (1.0 - fraction))), anomaly_rows.size
        )
        curves: dict[str, list[np.ndarray]] = {"static": [], "active": []}
        for draw in range(n_draws):
            rng = np.random.default_rng([seed, draw, round(fraction * 1e6)])
            rows = np.concatenate([known_rows, rng.choice(anomaly_rows, n_anomalies, False)])
            y = labels[rows]
            curves["static"].append(static_curve(static[rows], y, n_shown))
            curves["active"].append(active_curve(features[rows], static[rows], y, n_shown, timings))
            log.info(
                "%.0f%% pool, draw %d/%d: %d anomalies in the first %d shown (static %d)",
                100 * fraction,
                draw + 1,
                n_draws,
                curves["active"][-1][-1],
                len(curves["active"][-1]),
                curves["static"][-1][-1],
            )
        stacked = {name: np.stack(c).astype(np.float64) for name, c in curves.items()}
        pool_curves.append(stacked)
        pools.append(
            {
                "anomaly_fraction": fraction,
                "n_known": int(known_rows.size),
                "n_anomalies": int(n_anomalies),
                "found": {
                    name: {str(k): _mean_std(c, k) for k in checkpoints}
                    for name, c in stacked.items()
                },
                "curves": {
                    f"{name}_{stat}": getattr(c, stat)(axis=0).round(3).tolist()
                    for name, c in stacked.items()
                    for stat in ("mean", "std")
                },
            }
        )
    summary = {
        "run": str(run_dir),
        "pool": "test split: every known-class object plus subsampled anomalies",
        "model": {"name": active.POLICY.describe(), **dataclasses.asdict(active.POLICY)},
        "features": names,
        "n_draws": n_draws,
        "n_shown": n_shown,
        "pools": pools,
        "target": _target(pools[0], n_shown, pool_curves[0], seed),
        "rerank_ms": {
            "median": 1e3 * float(np.median(timings)),
            "p95": 1e3 * float(np.quantile(timings, 0.95)),
            "max": 1e3 * float(np.max(timings)),
        },
        "elapsed_s": time.perf_counter() - start,
    }
    report = run_dir / SUMMARY
    atomic_write_text(report.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    atomic_write_text(report.with_suffix(".md"), summary_markdown(summary))
    discovery_figure(summary, run_dir / FIGURE)
    log.info("wrote %s(.json, .md) and %s", report, run_dir / FIGURE)
    return summary


def _target(
    pool: dict[str, Any], n_shown: int, curves: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """The issue's goal at the first fraction: active >= 1.5x static in the first 50 shown;
    `curves`: that pool's (draws, n_shown) discovery curves, static and active."""
    # A pool smaller than TARGET_SHOWN (a tiny run's): judged at its size (a review: an
    # IndexError).
    k = min(TARGET_SHOWN, n_shown, len(pool["curves"]["active_mean"]))
    found_active = pool["curves"]["active_mean"][k - 1]
    found_static = pool["curves"]["static_mean"][k - 1]
    ratio = found_active / found_static if found_static > 0 else None
    everything = min(k, pool["n_anomalies"])
    draws = {name: curves[name][:, k - 1] for name in ("active", "static")}
    return {
        "anomaly_fraction": pool["anomaly_fraction"],
        "shown": k,
        "active_mean": found_active,
        "static_mean": found_static,
        "ratio": ratio,
        "ratio_interval": ratio_interval(draws["active"], draws["static"], seed),
        "draws": {name: values.tolist() for name, values in draws.items()},
        "met": bool(found_active >= everything or (ratio or 0.0) >= TARGET_RATIO),
    }


def ratio_interval(
    active_found: np.ndarray, static_found: np.ndarray, seed: int
) -> list[float] | None:
    """95% interval of mean(active) / mean(static) over the draws: a paired percentile
    bootstrap (scipy.stats.bootstrap); None with fewer than `MIN_INTERVAL_DRAWS` draws, with
    draws that do not vary (nothing to resample), or where the static ranking found nothing in
    some resample (the ratio is then unbounded)."""
    few = len(active_found) < MIN_INTERVAL_DRAWS
    if few or np.ptp(active_found) == np.ptp(static_found) == 0:
        return None

    def ratio(active_found: np.ndarray, static_found: np.ndarray, axis: int) -> np.ndarray:
        return active_found.mean(axis=axis) / static_found.mean(axis=axis)

    with np.errstate(divide="ignore", invalid="ignore"):  # a resample whose static found none
        result = stats.bootstrap(
            (active_found, static_found),
            ratio,
            paired=True,
            vectorized=True,
            n_resamples=INTERVAL_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    return [float(low), float(high)] if np.isfinite([low, high]).all() else None


def _ratio(active_found: float, static_found: float) -> str:
    return f"{active_found / static_found:.2f}" if static_found > 0 else "–"


def _interval(target: dict[str, Any]) -> str:
    interval = target.get("ratio_interval")
    if not interval:
        return ""
    return f", 95% interval over the draws {interval[0]:.2f}-{interval[1]:.2f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a short markdown report."""
    lines = [
        "# Simulated expert: active loop vs static ranking",
        "",
        f"Run `{summary['run']}`; pool: {summary['pool']}; {summary['n_draws']} draws per "
        f"fraction; anomalies found among the first k candidates shown, mean ± std of the draws.",
        "",
        "| anomaly fraction | pool | k | static | active | active / static |",
        "|---|---|---|---|---|---|",
    ]
    for pool in summary["pools"]:
        size = f"{pool['n_known']} + {pool['n_anomalies']}"
        for k, static in pool["found"]["static"].items():
            act = pool["found"]["active"][k]
            lines.append(
                f"| {100 * pool['anomaly_fraction']:g}% | {size} | {k} | "
                f"{static['mean']:.1f} ± {static['std']:.1f} | "
                f"{act['mean']:.1f} ± {act['std']:.1f} | {_ratio(act['mean'], static['mean'])} |"
            )
    target, timing = summary["target"], summary["rerank_ms"]
    lines += [
        "",
        f"Goal (at {100 * target['anomaly_fraction']:g}%, first {target['shown']} shown): active "
        f">= {TARGET_RATIO}x static or all anomalies: **{'met' if target['met'] else 'missed'}** "
        f"({target['active_mean']:.1f} vs {target['static_mean']:.1f}: "
        f"{_ratio(target['active_mean'], target['static_mean'])}x{_interval(target)}).",
        "",
        f"Re-rank after each answer ({summary['model']['name']}, {len(summary['features'])} "
        f"features): median {timing['median']:.0f} ms, 95th percentile {timing['p95']:.0f} ms, "
        f"max {timing['max']:.0f} ms.",
        "",
    ]
    return "\n".join(lines)


def discovery_figure(summary: dict[str, Any], path: Path) -> Path:
    """Anomalies found vs candidates shown, one panel per fraction (mean ± std of the draws)."""
    from matplotlib.figure import Figure  # imported only to draw

    pools = summary["pools"]
    fig = Figure(figsize=(5.2 * len(pools), 3.8), layout="constrained")
    axes = fig.subplots(1, len(pools), squeeze=False)[0]
    for ax, pool in zip(axes, pools, strict=True):
        curves = pool["curves"]
        shown = np.arange(1, len(curves["active_mean"]) + 1)
        for name, colour in (("active", "#c0392b"), ("static", "#1f78b4")):
            mean, std = np.asarray(curves[f"{name}_mean"]), np.asarray(curves[f"{name}_std"])
            label = "active loop" if name == "active" else "static ranking"
            ax.plot(shown, mean, color=colour, label=label)
            ax.fill_between(shown, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        ax.plot(
            shown, np.minimum(shown, pool["n_anomalies"]), "k:", lw=1, label="a perfect ranking"
        )
        share = pool["n_anomalies"] / (pool["n_known"] + pool["n_anomalies"])
        ax.plot(shown, share * shown, color="grey", lw=0.8, ls="--", label="a random one")
        ax.set_title(
            f"{100 * pool['anomaly_fraction']:g}% anomalies ({pool['n_anomalies']} among "
            f"{pool['n_known'] + pool['n_anomalies']})",
            fontsize=10,
        )
        ax.set_xlabel("candidates shown")
        ax.set_ylabel("anomalies found (mean ± sd of the draws)")
        ax.set_ylim(0, max(1.0, 1.1 * float(np.max(curves["active_mean"]) + 1)))
        ax.legend(fontsize=8, loc="upper left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    return path
