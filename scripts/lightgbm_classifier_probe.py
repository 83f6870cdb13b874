"""Would more trees in a faster tree predictor help the detector? (research, #10)

    python scripts/lightgbm_classifier_probe.py RUN [--only a,b] [--out FILE]
    # RUN: with `make validate`
    (needs `pip install lightgbm`, not a dependency of the package)

The validation found the `classifier` component underfitted at 50 iterations (400 validate
+0.009, 1.9 standard errors, docs/evaluation.md), and scikit-learn's tree predictor makes more
trees expensive: 400 iterations predict 6-7x slower. LightGBM predicts the same kind of trees
several times faster, so it could give the detector more trees at the shipped prediction time.
Candidates, each in the classifier's place, fitted exactly as `components.Classifier` is (the
same rows, classes balanced by repeating the smaller classes' rows, the same features and
settings otherwise: learning rate 0.1, 15 leaves, at least 20 objects a leaf, one thread):
LightGBM with 50 (`lgbm_50`), 200 (`lgbm_200`) and 400 (`lgbm_400`) iterations.

Per fold and kind as `validate` fits the `classifier` component: fitted on the train split's
other known classes, calibrated on the val split's other known objects of the same kind, and
scored on the val split and the held-out class. The recomputation of the shipped score reproduces
the stored `classifier` column (printed). Only train and val splits are read, never the test
split. Adoption rule as docs/evaluation.md's, written before the run: the best fusion found with
`lgbm_200` or `lgbm_400` (whichever is higher) must beat the shipped one by more than twice the
standard error of the paired per-fold differences; `lgbm_50` would replace the shipped trees for
speed alone only if it is not worse by more than that.

Result (default-rare run, docs/evaluation.md; 13 min on 2 busy cores): the shipped score recomputed
exactly; alone 0.736 / 0.763 / 0.768; best fusion with 400 iterations 0.823, +0.0094 ± 0.0041
against the shipped 0.814 (the rule passed; `sn`: +0.0081 ± 0.0033). Not adopted: the premise was
wrong. Measured side by side on 2 quiet cores, LightGBM predicts these trees no faster than
scikit-learn (50 iterations 285 ms against 177 ms for 16,384 objects), and 400 iterations take
scoring from 24,671 to 10,142 objects/s, half the 20,000/s target.
"""

from __future__ import annotations

import functools

import lightgbm
import numpy as np
from validation_probe import classifier_probe

from plasticc_jax.components import balanced_rows
from plasticc_jax.config import Config

ITERATIONS = {"lgbm_50": 50, "lgbm_200": 200, "lgbm_400": 400}


def lgbm_model(
    x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config, iterations: int
) -> lightgbm.LGBMClassifier:
    """LightGBM's trees fitted as `components.Classifier` fits its own (the same rows, classes
    balanced by repeating rows, learning rate 0.1, 15 leaves, one thread)."""
    rows = balanced_rows(y)
    return lightgbm.LGBMClassifier(
        n_estimators=iterations,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=20,
        n_jobs=1,
        random_state=config.eval.seed,
        verbose=-1,
    ).fit(x[np.ix_(rows, columns)], y[rows])


def lgbm_score(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config, iterations: int):
    """A function: raw feature rows -> 1 - the largest probability of LightGBM's trees."""
    model = lgbm_model(x, y, columns, config, iterations)
    return lambda raw: 1.0 - model.predict_proba(raw[:, columns]).max(axis=1)


CANDIDATES = {
    name: (f"LightGBM {v}", functools.partial(lgbm_score, iterations=v))
    for name, v in ITERATIONS.items()
}


def main() -> None:
    classifier_probe(
        __doc__, "runs/lightgbm-classifier/scores.parquet", "LightGBM classifiers", CANDIDATES
    )


if __name__ == "__main__":
    main()
