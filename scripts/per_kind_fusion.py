"""Would separate fusion weights for galactic and extragalactic objects help? (research check)

    python scripts/per_kind_fusion.py RUN    # RUN: a run with `make validate` done

Reads `RUN/validation/scores.parquet` (the leave-one-known-class-out fold scores: known classes
only, never the test split) and searches the fusion weights of each kind on the folds whose
held-out class is of that kind, the other kind keeping the configured weights; then scores both
kinds' best weights together. Prints the mean fold AUROC of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import runs
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, weight_grid

Weights = dict[str, float]


def fused(folds: Folds, galactic: np.ndarray, weights: dict[bool, Weights]) -> np.ndarray:
    """`Folds.fused` with each object's kind's weights: the calibrated components' weighted
    mean, calibrated again against the fold's negatives of the same kind."""
    scores = folds.scores
    mean = np.zeros(len(scores))
    for kind, chosen in weights.items():
        total = sum(chosen.values())
        kind_mean = sum(w / total * scores[name].to_numpy() for name, w in chosen.items())
        mean = np.where(galactic == kind, kind_mean, mean)
    return folds.recalibrated(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    run = parser.parse_args().run
    scores = pd.read_parquet(run / "validation" / "scores.parquet")
    configured = parse_fusion(runs.read_config(run).eval.fusion)
    folds, galactic = Folds(scores), scores["galactic"].to_numpy(bool)
    held_galactic = {
        fold: bool(galactic[rows][folds.positive[rows]].all()) for fold, rows in folds.folds.items()
    }
    components = [*configured, "head_maxprob", "feature_knn"]
    base = folds.aurocs(fused(folds, galactic, {True: configured, False: configured}))
    print(f"configured weights for both kinds: {np.mean(list(base.values())):.3f}")
    best: dict[bool, Weights] = {}
    for kind in (True, False):
        own = [f for f, g in held_galactic.items() if g == kind]
        tried = []
        for weights in weight_grid(components):
            aurocs = folds.aurocs(fused(folds, galactic, {kind: weights, not kind: configured}))
            tried.append((float(np.mean([aurocs[f] for f in own])), weights))
        score, best[kind] = max(tried, key=lambda t: t[0])
        name = "galactic" if kind else "extragalactic"
        print(
            f"{name} ({len(own)} folds): configured {np.mean([base[f] for f in own]):.3f}, "
            f"best {score:.3f} with {best[kind]}"
        )
    both = folds.aurocs(fused(folds, galactic, best))
    print(f"each kind its best weights: {np.mean(list(both.values())):.3f}")


if __name__ == "__main__":
    main()
