"""A faster-learning `gp_classifier` at the same prediction cost (research, #10)

    python scripts/gp_classifier_rate_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The classifier is underfitted at 50 iterations (docs/evaluation.md, "Detector settings": 400
iterations validate +0.009, but predict 6-7x slower, which the scoring target forbids). A higher
learning rate fits more in the same 50 iterations, so the same trees to predict: for the first
classifier (141 features, before the Gaussian-process features) 0.3 instead of 0.1 validated
+0.0037 ± 0.0032 (8/10 folds). The `gp_classifier` now carries half the fusion's weight
(`gp_classifier:3` of 6), so the same change may count for more there. Candidates, in the
`gp_classifier`'s place, its rows, features and settings otherwise (50 iterations, 15 leaves,
the seed): learning rate 0.2 (`gp_rate_0.2`) and 0.3 (`gp_rate_0.3`). Fitted per fold and kind as
`validate` does it; the shipped component recomputed and checked against the stored column
(`ovr_classifier_probe.fold_columns`).

Adoption rule, written and committed before the run (docs/evaluation.md's): the better
candidate's best fusion found in the `gp_classifier`'s place must beat the shipped fusion by more
than twice the standard error of the paired per-fold differences. A candidate that passes would
then be shipped with the protocols' validations and the test split run again once, and every
table regenerated.

Result (default-rare run with `make validate`; 11 min on 2 cores shared with another probe; the
`gp_classifier` recomputed exactly): alone 0.772 (0.2) and 0.777 (0.3) against 0.766; in its
place, the shipped weights being the best found for both, 0.828 (-0.0009 ± 0.0031, 5/10 folds
better) and 0.831 (+0.0018 ± 0.0039, 7/10) against 0.8292. Short of the rule: not adopted.
(Beside the shipped component, not the rule's placement, the best found with 0.3 is 0.834,
+0.0045 ± 0.0025, 8/10: a second model of the same trees, at twice the prediction cost.)
"""

from __future__ import annotations

import functools

import numpy as np
from ovr_classifier_probe import probe_gp_classifier

from plasticc_jax.components import balanced_rows, boosted_trees
from plasticc_jax.config import Config

RATES = (0.2, 0.3)


def faster_trees(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config, rate: float):
    """A scorer of raw feature rows: 1 - the largest class probability of the component's trees
    fitted at learning rate `rate`."""
    rows = balanced_rows(y)
    model = boosted_trees(config.eval.classifier_iterations, config.eval.seed)
    model.set_params(learning_rate=rate).fit(x[np.ix_(rows, columns)], y[rows])
    return lambda raw: 1.0 - model.predict_proba(raw[:, columns]).max(axis=1)


def main() -> None:
    candidates = {f"gp_rate_{r}": functools.partial(faster_trees, rate=r) for r in RATES}
    probe_gp_classifier(__doc__, "runs/gp-classifier-rate/scores.parquet", candidates)


if __name__ == "__main__":
    main()
