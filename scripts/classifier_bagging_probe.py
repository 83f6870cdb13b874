"""Two classifiers averaged instead of one: variance, not capacity (research, #10)

    python scripts/classifier_bagging_probe.py RUN [--only a,b] [--out FILE]
    # RUN: with `make validate`

CatBoost's trees beside the shipped classifier passed the adoption rule by a hair (+0.0048 ±
0.0021, `catboost_classifier_probe.py`) while they carry no more alone: the gain came from
averaging two tree models. scikit-learn's gradient boosting can be made diverse without another
library: with `max_features` each split considers a random half of the features, so two seeds
give two different models. Candidates, each in the classifier's place, fitted on the classifier's
rows (classes balanced the same way) and features, with its settings otherwise (50 iterations,
learning rate 0.1, 15 leaves):

- `hgb_half`: one model, `max_features=0.5` (the shipped prediction cost);
- `hgb_half_x2`: the mean of two such models' probabilities (seeds 0 and 1; twice the
  classifier's prediction cost: about 13% more of scoring's time, by the shares in
  docs/evaluation.md, so about 21,900 objects/s from the measured 24,700; to be measured before
  any test-split evaluation).

Only train and val splits are read, never the test split. Adoption rule as docs/evaluation.md's,
written before the run: the best fusion found with a candidate (in the classifier's place or
beside it) must beat the shipped one by more than twice the standard error of the paired
per-fold differences; `hgb_half_x2` also only if scoring stays at 20,000 objects/s or more.

Result (default-rare run, docs/evaluation.md; 2 min on 2 cores): the shipped score recomputed
exactly; alone 0.740 and 0.744; in the classifier's place -0.0010 ± 0.0020 and -0.0009 ±
0.0012, beside it +0.0017 ± 0.0031 and +0.0013 ± 0.0030. Not adopted (the rule fails).
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from validation_probe import classifier_probe

from plasticc_jax.components import balanced_rows
from plasticc_jax.config import Config

SEEDS = {"hgb_half": (0,), "hgb_half_x2": (0, 1)}


def half_features_score(
    x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config, seeds: tuple[int, ...]
):
    """A function: raw feature rows -> 1 - the largest of the models' mean probabilities."""
    rows = balanced_rows(y)
    models = [
        HistGradientBoostingClassifier(
            max_iter=config.eval.classifier_iterations,
            learning_rate=0.1,
            max_leaf_nodes=15,
            max_features=0.5,
            early_stopping=False,
            random_state=config.eval.seed + seed,
        ).fit(x[np.ix_(rows, columns)], y[rows])
        for seed in seeds
    ]

    def score(raw: np.ndarray) -> np.ndarray:
        p = np.mean([m.predict_proba(raw[:, columns]) for m in models], axis=0)
        return 1.0 - p.max(axis=1)

    return score


CANDIDATES = {
    name: (name, functools.partial(half_features_score, seeds=v)) for name, v in SEEDS.items()
}


def main() -> None:
    classifier_probe(
        __doc__, "runs/classifier-bagging/scores.parquet", "bagged classifiers", CANDIDATES
    )


if __name__ == "__main__":
    main()
