"""More trees at the shipped prediction time: CatBoost's symmetric trees (research, #10)

    python scripts/catboost_classifier_probe.py RUN [--only a,b] [--out FILE]
    # RUN: with `make validate`
    (needs `pip install catboost`, not a dependency of the package)

The `classifier` component is underfitted at 50 iterations: LightGBM with 400 passed the
adoption rule (+0.0094 ± 0.0041, `lightgbm_classifier_probe.py`) but predicts no faster than
scikit-learn, and 400 such trees halve the scoring speed. CatBoost grows symmetric (oblivious)
trees, one per iteration for all classes, which predict fast. Measured first, before any
validation (side by side, 2 cores, 16,384 extragalactic val objects of `rare`): the shipped 50
iterations predict in 102 ms (fit 1.9 s), CatBoost with 400 iterations of depth 6 and 64 borders
in 23 ms (fit 12 s), of depth 5 in 16 ms (fit 8 s).

Candidates, each in the classifier's place, fitted on the same rows as `components.Classifier`
(classes balanced by repeating the smaller classes' rows, the same feature columns): CatBoost,
400 iterations, learning rate 0.2, 64 borders a feature, depth 6 (`catboost_d6`) and depth 5
(`catboost_d5`). Only train and val splits are read, never the test split. Adoption rule as
docs/evaluation.md's, written before the run: the best fusion found with the better candidate
must beat the shipped one by more than twice the standard error of the paired per-fold
differences.

Result (default-rare run, docs/evaluation.md; 5 min on 2 cores): the shipped score recomputed
exactly; alone 0.742 (depth 6) and 0.726 (depth 5); in the classifier's place +0.0002 ± 0.0029
and -0.0026 ± 0.0022 (fail); beside it, depth 6, 0.819, +0.0048 ± 0.0021 (past the rule by a
hair; `sn` +0.0013 ± 0.0008). Not adopted (a 264 MB dependency for a second tree model's
averaging, docs/evaluation.md).
"""

from __future__ import annotations

import functools

import numpy as np
from catboost import CatBoostClassifier
from validation_probe import classifier_probe

from plasticc_jax.components import balanced_rows
from plasticc_jax.config import Config

DEPTHS = {"catboost_d6": 6, "catboost_d5": 5}


def catboost_score(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config, depth: int):
    """A function: raw feature rows -> 1 - the largest probability of CatBoost's trees."""
    rows = balanced_rows(y)
    model = CatBoostClassifier(
        iterations=400,
        learning_rate=0.2,
        depth=depth,
        border_count=64,
        loss_function="MultiClass",
        thread_count=2,
        random_seed=config.eval.seed,
        verbose=0,
        allow_writing_files=False,
    ).fit(x[np.ix_(rows, columns)], y[rows])
    return lambda raw: 1.0 - model.predict_proba(raw[:, columns]).max(axis=1)


CANDIDATES = {
    name: (f"CatBoost depth {v}", functools.partial(catboost_score, depth=v))
    for name, v in DEPTHS.items()
}


def main() -> None:
    classifier_probe(
        __doc__, "runs/catboost-classifier/scores.parquet", "CatBoost classifiers", CANDIDATES
    )


if __name__ == "__main__":
    main()
