"""Would the answers re-weighting the detector's own fused score beat the forest? (research, #15)

    python scripts/review_reweight_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The static ranking is the detector's `anomaly_score`: Fisher's fusion of calibrated components
with fixed weights (`eval.fusion`), calibrated per kind. Different held-out classes stand out in
different components (SLSN-I in the reconstruction chi2, kilonovae in the feature kNN), so the
answers could teach the fusion's weights instead of an isolation forest's leaves. The candidates
re-weight it with a logistic regression refitted from scratch after each answer, on the answered
objects ("anomaly" against "not interesting"; until both have been answered, the static ranking),
with the shipped fusion as its prior:

    logit P(anomaly) = b + (1 + delta) o + sum_j beta_j z_j,
    minimising the summed log-loss + (lambda / 2) (delta^2 + |beta|^2), b free,

where `o` is the static score and `z_j` the detector's other score columns (its 9 calibrated
components and the VAE's `chi2_per_cell`: those of the shipped policy, `active.feature_columns`,
except `anomaly_score` and the latents), each turned into its tail score in the pool, -log10 of
the fraction of the pool scoring at least as high (no label; every feature then in the units of
the fusion, 0 to log10 of the pool's size, and the components' heavy tails bounded). With no
answer, or delta = beta = 0, the ranking is exactly the static one; `lambda` pulls every
deviation from it toward 0 (lambda = 1: scikit-learn's default C = 1; a prior standard deviation
of 1 on each weight, i.e. one decade of a component's tail against one of the fused score). The
unanswered objects are ranked by the fitted logit. scikit-learn's `LogisticRegression` takes no
offset, so the fit is the same penalised log-loss minimised with scipy's L-BFGS (strictly
convex: one optimum, deterministic). Candidates, fixed before the run:

- `logistic`: as above, lambda = 1;
- `logistic-strong`: lambda = 10 (prior standard deviation 0.32: the answers move the fusion less);
- `logistic + latents`: lambda = 1, the 16 VAE latent means added as features (standardised over
  the pool to the tail scores' standard deviation, 1 / ln 10; a direction in the latent space
  can then be learnt too);
- `logistic + AADForest`: the mean of the rank fractions (`active.rank_fraction`) of `logistic`
  and of the shipped policy, both refitted on the same answers.

Pools, draws, simulated expert and answer order as `scripts/review_feature_probe.py` (the
validation folds of `plasticc-jax review --simulate --validation`: 5% of each fold's pool from the
held-out class, never the test split; show the top-ranked unanswered object, answer it with the
truth, re-rank). The shipped policy (`active.POLICY`) is run twice in the same run: by
`simulate_groups` (`simulate.active_curve`, the reference) and by this probe's loop, which must
reproduce it exactly (checked: the script stops otherwise) before its candidates are trusted.

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the best
candidate by anomalies among the first 50 shown (mean over folds and draws) is adopted only if it
beats the shipped policy by more than twice the standard error of the paired per-fold
differences. Also reported: the first 10 shown and the median time of one re-rank (must be well
under a second on a pool of about 1,100).

Result (default-rare run with `make validate`; 3.8 min on 2 shared cores, 10 folds x 4 draws;
the probe's loop reproduces `simulate_groups`'s shipped policy exactly in every fold, 27.25 in the
first 50 as in the earlier probes; static ranking 17.65). First 10 / first 50 / paired difference
in the first 50 ± s.e. / folds better of 10 / median re-rank ms: shipped 5.55 / 27.25 / - / - /
19; `logistic` 4.50 / 23.30 / -3.95 ± 1.21 / 1 / 0.8; `logistic-strong` 4.35 / 22.48 / -4.78 ±
1.37 / 1 / 0.5; `logistic + latents` 5.20 / 28.12 / +0.88 ± 1.30 / 4 / 0.8; `logistic +
AADForest` 5.42 / 26.57 / -0.68 ± 0.82 / 4 / 26 (the median of the logistic candidates counts the
first re-ranks, which return the static ranking; their 95th percentile is 9-13 ms). The best,
`logistic + latents`, is within the noise (+0.88 < 2 x 1.30): one fold makes it (SN Ia-91bg 5.0
-> 15.8; SN Ia 6.0 -> 9.8, SN II 17.0 -> 19.5, SN Ibc 17.2 -> 19.0) and it is lower in the other
six (EB 46.8 -> 44.5, M-dwarf 47.0 -> 44.0, SN Iax 6.5 -> 4.5). Not adopted. The fusion's
components re-weighted alone lose to the forest by more than twice their standard error (TDE 32.0
-> 22.5, SN Ibc 17.2 -> 6.2): a linear re-weighting of the same scores cannot pull up a held-out
class the way the forest's leaves do; what gains is the latent direction, as in the forest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from review_feature_probe import probe_arguments, simulate_groups
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata

from plasticc_jax.plasticc import class_name
from plasticc_jax.review import active, validation
from plasticc_jax.review.simulate import TARGET_SHOWN, static_curve

SHIPPED = "shipped (AADForest, latents + scores)"
CANDIDATES = ("logistic", "logistic-strong", "logistic + latents", "logistic + AADForest")
PENALTY, STRONG_PENALTY = 1.0, 10.0
FIRST = 10  # the other count reported beside the first TARGET_SHOWN


def pool_tail(values: np.ndarray) -> np.ndarray:
    """(n,) -log10 of the fraction of the pool scoring at least as high as each object (of
    n + 1, so the top object gets log10(n + 1))."""
    at_least = len(values) - rankdata(values, method="min") + 1
    return -np.log10(at_least / (len(values) + 1.0))


def fit_logit(x: np.ndarray, offset: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """(d,) the weights w of logit = b + offset + x @ w minimising the summed log-loss of the
    labels `y` (bool) + penalty / 2 |w|^2 (the intercept b unpenalised)."""
    sign = np.where(y, 1.0, -1.0)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        margin = sign * (b + offset + x @ w)
        d_logit = -sign * expit(-margin)
        value = np.logaddexp(0.0, -margin).sum() + 0.5 * penalty * w @ w
        return float(value), np.concatenate([[d_logit.sum()], x.T @ d_logit + penalty * w])

    start = np.zeros(x.shape[1] + 1)
    fit = minimize(loss, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-8})
    return fit.x[1:]


class Reweighter:
    """The re-weighted fusion of one pool (see the module): `scores(shown, y)` as a ranker's.

    Args:
        static: (n,) `anomaly_score`; components: (n, d) the other features (already in the
            pool's units); penalty: lambda.
    """

    def __init__(self, static: np.ndarray, components: np.ndarray, penalty: float):
        self.static = static
        self.offset = pool_tail(static)
        self.x = np.column_stack([self.offset, components])  # column 0: delta's
        self.penalty = penalty

    def scores(self, shown: list[int], y: np.ndarray) -> np.ndarray:
        """(n,) higher = shown first: the static score until both answers exist, then the
        fitted logit (less its intercept)."""
        answers = y[shown]
        if answers.all() or not answers.any():
            return self.static.copy()
        w = fit_logit(self.x[shown], self.offset[shown], answers, self.penalty)
        return self.offset + self.x @ w


def loop_curve(
    rank: Callable[[list[int]], np.ndarray], y: np.ndarray, timings: list[float]
) -> np.ndarray:
    """`simulate.active_curve` with any ranker: show the top-ranked unanswered object, answer
    it with the truth, re-rank; anomalies found after each of the first TARGET_SHOWN. Equal
    scores go by row order, as the shipped loop's did when this probe ran (it now breaks them
    by the static score, `ActiveRanker.order`)."""
    shown: list[int] = []
    for _ in range(min(TARGET_SHOWN, len(y))):
        start = time.perf_counter()
        scores = rank(shown)
        timings.append(time.perf_counter() - start)
        scores[shown] = -np.inf
        shown.append(int(np.argmax(scores)))
    return np.cumsum(y[shown])


def pool_features(
    part: pd.DataFrame, rows: np.ndarray, components: list[str], latents: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(tail scores of the components, scaled latents) of one drawn pool (no label)."""
    z = active.feature_matrix(part.iloc[rows], components)
    z = np.column_stack([pool_tail(z[:, j]) for j in range(z.shape[1])])
    mu = active.feature_matrix(part.iloc[rows], latents)
    sd = mu.std(axis=0)
    scaled = (mu - mu.mean(axis=0)) / np.where(sd > 0, sd, 1.0) / np.log(10.0)
    return z, scaled


def draw_curves(
    x: np.ndarray,
    static: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    mu: np.ndarray,
    timings: dict[str, list[float]],
) -> dict[str, np.ndarray]:
    """The shipped policy's and every candidate's curve on one drawn pool: x, the shipped
    features; static, `anomaly_score`; y, the truth; z, mu: `pool_features`."""
    forest = active.ActiveRanker(x, static, active.POLICY)
    logistic = Reweighter(static, z, PENALTY)
    strong = Reweighter(static, z, STRONG_PENALTY)
    with_latents = Reweighter(static, np.column_stack([z, mu]), PENALTY)

    def shipped(s: list[int]) -> np.ndarray:  # as `simulate.active_curve` calls it
        return forest.scores(x[s], y[s])

    def both(s: list[int]) -> np.ndarray:
        return 0.5 * (
            active.rank_fraction(shipped(s)) + active.rank_fraction(logistic.scores(s, y))
        )

    rankers: dict[str, Callable[[list[int]], np.ndarray]] = {
        SHIPPED: shipped,
        "logistic": lambda s: logistic.scores(s, y),
        "logistic-strong": lambda s: strong.scores(s, y),
        "logistic + latents": lambda s: with_latents.scores(s, y),
        "logistic + AADForest": both,
    }
    return {n: loop_curve(r, y, timings.setdefault(n, [])) for n, r in rankers.items()}


def fold_pools(part: pd.DataFrame, draws: Iterable[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, truth) of each drawn pool of one fold: its negatives and `validation.FRACTION` of
    positives, drawn as `simulate_groups` draws them."""
    positive = part["positive"].to_numpy(bool)
    negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
    fraction = validation.FRACTION
    n_pos = min(max(1, round(fraction * negatives.size / (1 - fraction))), positives.size)
    for draw in draws:
        rng = np.random.default_rng([0, draw, int(part["fold"].iloc[0])])
        rows = np.concatenate([negatives, rng.choice(positives, n_pos, replace=False)])
        yield rows, positive[rows]


def run_fold(
    part: pd.DataFrame, shipped: list[str], draws: Iterable[int], timings: dict[str, list[float]]
) -> dict[str, list[np.ndarray]]:
    """Every candidate's curves on one fold's draws (the pools and draws of `simulate_groups`)."""
    latents = active.latent_columns(shipped)
    components = [c for c in shipped if c not in latents and c != "anomaly_score"]
    static_all = part["anomaly_score"].to_numpy(np.float64)
    forest_features = active.feature_matrix(part, shipped)
    curves: dict[str, list[np.ndarray]] = {n: [] for n in ["static", SHIPPED, *CANDIDATES]}
    for rows, y in fold_pools(part, draws):
        static = static_all[rows]
        z, mu = pool_features(part, rows, components, latents)
        curves["static"].append(static_curve(static, y, TARGET_SHOWN))
        drawn = draw_curves(forest_features[rows], static, y, z, mu, timings)
        for name, curve in drawn.items():
            curves[name].append(curve)
    return curves


# One fold's curves per policy: (the fold's pool table, the shipped features, draws, timings).
FoldCurves = Callable[
    [pd.DataFrame, list[str], Iterable[int], dict[str, list[float]]], dict[str, list[np.ndarray]]
]


def probe_loop(
    table: pd.DataFrame,
    shipped: list[str],
    fold_curves: FoldCurves,
    shipped_name: str,
    checked: range,
    judged: range | None = None,
) -> tuple[dict[str, dict[int, list[np.ndarray]]], dict[str, list[float]]]:
    """(curves per policy and fold, re-rank times) of `fold_curves` on every fold.

    The probe's loop must reproduce `simulate_groups`'s shipped policy (`shipped_name`) on the
    `checked` draws, or the script stops. The curves returned are those of the `judged` draws
    (another set of pools, run after the check), or else of the checked ones.
    """
    print("\n## reference: simulate_groups with the shipped policy", flush=True)
    assert checked.start == 0, "simulate_groups draws from 0"
    reference = simulate_groups(table, {shipped_name: shipped}, len(checked))
    expected = reference[shipped_name]["per_fold"]
    timings: dict[str, list[float]] = {}
    found: dict[str, dict[int, list[np.ndarray]]] = {}
    print("\n## the probe's loop", flush=True)
    for fold in sorted(int(f) for f in table["fold"].unique()):
        part = table[table["fold"] == fold].reset_index(drop=True)
        curves = fold_curves(part, shipped, checked, timings)
        shipped_found = float(np.mean([c[-1] for c in curves[shipped_name]]))
        if shipped_found != expected[class_name(fold)]:
            raise SystemExit(
                f"the loop does not reproduce the shipped policy in fold {class_name(fold)}: "
                f"{shipped_found} vs {expected[class_name(fold)]}"
            )
        if judged is not None:
            curves = fold_curves(part, shipped, judged, timings)
        for name, policy_curves in curves.items():
            found.setdefault(name, {})[fold] = policy_curves
        means = {n: round(float(np.mean([c[-1] for c in v])), 2) for n, v in curves.items()}
        print(class_name(fold), means, flush=True)
    print("\nthe loop reproduces simulate_groups's shipped policy in every fold", flush=True)
    return found, timings


def report_policies(
    found: dict[str, dict[int, list[np.ndarray]]],
    timings: dict[str, list[float]],
    shipped_name: str,
    candidates: Sequence[str],
    out: Path,
    start: float,
) -> None:
    """Print, and write to `out`, each policy's anomalies among the first 10 and 50 shown (mean
    over folds and draws), its paired per-fold difference to the shipped policy in the first 50
    and the median re-rank time; then the best candidate and the adoption rule's verdict."""
    folds = sorted(next(iter(found.values())))

    def per_fold(name: str, k: int) -> np.ndarray:
        return np.array([np.mean([c[k - 1] for c in found[name][f]]) for f in folds])

    base = per_fold(shipped_name, TARGET_SHOWN)
    report = {}
    head = f"{'policy':28s} first {FIRST}  first {TARGET_SHOWN}  difference  better  ms"
    print(f"\nanomalies among the first k shown (mean over folds and draws)\n{head}")
    for name in found:
        means = per_fold(name, TARGET_SHOWN)
        diff = means - base
        se = float(diff.std(ddof=1) / np.sqrt(diff.size))
        ms = 1e3 * float(np.median(timings[name])) if name in timings else None
        report[name] = {
            f"first_{FIRST}": float(per_fold(name, FIRST).mean()),
            f"first_{TARGET_SHOWN}": float(means.mean()),
            "difference": float(diff.mean()),
            "se": se,
            "folds_better": int((diff > 0).sum()),
            "folds_worse": int((diff < 0).sum()),
            "per_fold": {class_name(f): float(m) for f, m in zip(folds, means, strict=True)},
            "rerank_ms": ms,
            "rerank_ms_p95": None if ms is None else 1e3 * float(np.quantile(timings[name], 0.95)),
        }
        row = report[name]
        print(
            f"{name:28s} {row[f'first_{FIRST}']:8.2f} {means.mean():9.2f}  "
            f"{diff.mean():+.2f} ± {se:.2f}  {row['folds_better']:2d}/{len(folds)}  "
            f"{'-' if ms is None else f'{ms:.1f}'}  {means.round(1)}"
        )
    best = max(candidates, key=lambda n: report[n][f"first_{TARGET_SHOWN}"])
    adopted = report[best]["difference"] > 2 * report[best]["se"]
    print(f"\nbest candidate: {best}; {'adopted' if adopted else 'not adopted'} by the rule")
    elapsed = time.perf_counter() - start
    print(f"({elapsed:.0f} s)")
    summary = {"policies": report, "best": best, "adopted": bool(adopted), "elapsed_s": elapsed}
    out.write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    args = probe_arguments(__doc__, "review_reweight_probe.json")
    start = time.perf_counter()
    workdir = args.workdir or args.run.parent.parent
    table = validation.validation_pool(args.run, workdir)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    print("features:", ", ".join(c for c in shipped if not c.startswith("mu_")), flush=True)
    found, timings = probe_loop(table, shipped, run_fold, SHIPPED, range(args.draws))
    report_policies(found, timings, SHIPPED, CANDIDATES, args.out, start)


if __name__ == "__main__":
    main()
