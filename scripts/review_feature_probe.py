"""Would the light-curve features help the review's active model? (research, #15)

    python scripts/review_feature_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped policy (`active.POLICY`: coniferest's AADForest on the VAE latent means and the
detector's scores) never sees the per-object light-curve features that the detector's classifier
reads. The candidates add them as a feature group: the 29 physics features
(`features.PHYSICS_NAMES`: peak absolute magnitude, timescales, colours, epoch flux ratios,
variability), to the shipped groups or to the scores alone, and all 113 light-curve features
(those and the 84 `light-curve` statistics) to the shipped groups. The features are read from the
prepared dataset of the train and val splits (never the test split) and joined to the validation
pool of `plasticc-jax review --simulate --validation` (`review.validation.validation_pool`); each
candidate then runs the simulated expert on the same pools and draws as that command (5% of each
fold's pool from the held-out class, `--draws` per fold). Adoption rule, as for the earlier
policy probes of docs/review.md: the best candidate by anomalies among the first 50 shown must
beat the shipped policy by more than twice the standard error of the paired per-fold differences.

Result (default-rare run, docs/review.md; 2 min on 2 cores): the shipped policy 27.25 in the
first 50, every candidate lower (22.9-24.3): not adopted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import features, runs
from plasticc_jax.dataset import LightCurveArrays, iter_split
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.plasticc import class_name
from plasticc_jax.review import active, validation
from plasticc_jax.review.simulate import TARGET_SHOWN, active_curve, static_curve


def with_light_curve_features(table: pd.DataFrame, dataset_dir: Path) -> pd.DataFrame:
    """The pool with each object's raw light-curve features as `f_<name>` columns."""
    parts = [shard for split in ("train", "val") for shard in iter_split(dataset_dir, split)]
    arrays = LightCurveArrays.concatenate(parts)
    raw = pd.DataFrame(arrays.features, columns=list(FEATURE_NAMES), index=arrays.object_id)
    names = [*features.PHYSICS_NAMES, *features.LC_NAMES]
    joined = raw.loc[table["object_id"].to_numpy(np.int64), names].reset_index(drop=True)
    joined.columns = [f"f_{name}" for name in names]
    return pd.concat([table.reset_index(drop=True), joined], axis=1)


def simulate_groups(
    table: pd.DataFrame, groups: dict[str, list[str]], draws: int
) -> dict[str, dict[str, object]]:
    """The simulated expert with the shipped policy on each feature group (the first is the
    reference), on the pools and draws of `simulate_validation`; prints and returns, per group,
    the anomalies among the first 50 shown and the paired per-fold difference to the first."""
    folds = sorted(int(f) for f in table["fold"].unique())
    found: dict[str, dict[int, list[float]]] = {g: {} for g in ["static", *groups]}
    for fold in folds:
        part = table[table["fold"] == fold].reset_index(drop=True)
        positive = part["positive"].to_numpy(bool)
        negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
        fraction = validation.FRACTION
        n_pos = min(max(1, round(fraction * negatives.size / (1 - fraction))), positives.size)
        static = part["anomaly_score"].to_numpy(np.float64)
        matrices = {g: active.feature_matrix(part, columns) for g, columns in groups.items()}
        for g in found:
            found[g][fold] = []
        for draw in range(draws):  # the pools and draws of `simulate_validation`
            rng = np.random.default_rng([0, draw, fold])
            rows = np.concatenate([negatives, rng.choice(positives, n_pos, replace=False)])
            y = positive[rows]
            found["static"][fold].append(float(static_curve(static[rows], y, TARGET_SHOWN)[-1]))
            for g, x in matrices.items():
                curve = active_curve(x[rows], static[rows], y, TARGET_SHOWN, [], active.POLICY)
                found[g][fold].append(float(curve[-1]))
        print(class_name(fold), {g: np.mean(v[fold]) for g, v in found.items()}, flush=True)
    base = np.array([np.mean(found[next(iter(groups))][f]) for f in folds])
    report = {}
    print(f"\nanomalies among the first {TARGET_SHOWN} shown (mean over folds and draws)")
    for g, per_fold in found.items():
        means = np.array([np.mean(per_fold[f]) for f in folds])
        diff = means - base
        se = float(diff.std(ddof=1) / np.sqrt(diff.size))
        report[g] = {
            "first_50": float(means.mean()),
            "difference": float(diff.mean()),
            "se": se,
            "per_fold": {class_name(f): float(m) for f, m in zip(folds, means, strict=True)},
        }
        print(f"{g:45s} {means.mean():6.2f}  {diff.mean():+.2f} ± {se:.2f}  {means.round(1)}")
    return report


def report_against_first(per_fold: dict[str, dict[str, float]], out: Path) -> None:
    """Print, and write to `out`, each candidate's anomalies among the first 50 shown (mean over
    folds and draws) and its paired per-fold difference to the first candidate (the shipped)."""
    base = np.array(list(next(iter(per_fold.values())).values()))
    summary = {}
    print("\nanomalies among the first 50 shown (mean over folds and draws), against the shipped")
    for name, folds in per_fold.items():
        means = np.array(list(folds.values()))
        diff = means - base
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        summary[name] = {
            "first_50": means.mean(),
            "difference": diff.mean(),
            "se": se,
            "per_fold": folds,
        }
        print(f"{name:32s} {means.mean():6.2f}  {diff.mean():+.2f} ± {se:.2f}")
    out.write_text(json.dumps(summary, indent=1, default=float) + "\n")


def probe_forest_variants(doc: str, out: str, variants: dict[str, Callable | None]) -> None:
    """A review probe of the shipped policy with its AADForest replaced by each variant (a
    function of the library's class giving the one to use; None: the shipped forest), on the
    validation pools; reported against the first (`report_against_first`)."""
    import coniferest.aadforest

    args = probe_arguments(doc, out)
    table = validation.validation_pool(args.run, args.workdir or args.run.parent.parent)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    forest = coniferest.aadforest.AADForest
    per_fold: dict[str, dict[str, float]] = {}
    try:
        for name, variant in variants.items():
            # The ranker imports AADForest when it fits: the patched class is the one it gets.
            coniferest.aadforest.AADForest = forest if variant is None else variant(forest)
            print(f"\n## {name}")
            per_fold[name] = simulate_groups(table, {name: shipped}, args.draws)[name]["per_fold"]
    finally:
        coniferest.aadforest.AADForest = forest
    report_against_first(per_fold, args.out)


def probe_arguments(doc: str, out: str) -> argparse.Namespace:
    """The command line of a review probe: RUN, --workdir, --draws, --out (default `out`)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--workdir", type=Path, default=None, help="default: RUN/../..")
    parser.add_argument("--draws", type=int, default=validation.N_DRAWS)
    parser.add_argument("--out", type=Path, default=Path(out))
    return parser.parse_args()


def main() -> None:
    args = probe_arguments(__doc__, "review_feature_probe.json")
    workdir = args.workdir or args.run.parent.parent
    config = runs.read_config(args.run)
    pool = validation.validation_pool(args.run, workdir)
    table = with_light_curve_features(pool, workdir / config.data.dataset_dir)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    scores = [c for c in shipped if c not in active.latent_columns(shipped)]
    physics = [f"f_{name}" for name in features.PHYSICS_NAMES]
    every = physics + [f"f_{name}" for name in features.LC_NAMES]
    groups = {
        "shipped (latents + scores)": shipped,
        "latents + scores + physics": shipped + physics,
        "scores + physics": scores + physics,
        "latents + scores + all light-curve features": shipped + every,
    }
    report = simulate_groups(table, groups, args.draws)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
