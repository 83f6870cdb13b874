"""The `gp_classifier` with 400 iterations: what its capacity is worth (research, #10)

    python scripts/gp_classifier_capacity_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

For information, not a candidate: 400 iterations predict 6-7x slower than the shipped 50, which
the scoring target forbids whatever the validation says (docs/evaluation.md, "Detector
settings"). They were measured on the first classifier (141 features: +0.009) before the
Gaussian-process features; the `gp_classifier` now carries half the fusion's weight, so this
measures what a tree predictor fast enough to afford them (the lead docs/evaluation.md names)
would buy now. Same rows, features and settings but the iterations; fitted per fold and kind as
`validate` does it (`ovr_classifier_probe.fold_columns`). Written and committed before the run:
nothing is adopted from it.

Result (default-rare run with `make validate`; 2.3 min on 2 cores; the `gp_classifier`
recomputed exactly): alone 0.785 against 0.766; in its place, the shipped weights the best found,
0.831 against 0.8292 (+0.0016 ± 0.0035, 6/10 folds better); beside it, best found
`gp_iterations_400:3,gp_classifier:2,latent_mahalanobis:1,feature_mahalanobis:1,recon_chi2:2`
0.833 (+0.0039 ± 0.0040). The capacity lead (+0.009 on the first classifier) has faded.
"""

from __future__ import annotations

import numpy as np
from ovr_classifier_probe import probe_gp_classifier

from plasticc_jax.components import balanced_rows, boosted_trees
from plasticc_jax.config import Config

ITERATIONS = 400


def more_trees(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config):
    """A scorer of raw feature rows: 1 - the largest class probability of ITERATIONS trees."""
    rows = balanced_rows(y)
    model = boosted_trees(ITERATIONS, config.eval.seed).fit(x[np.ix_(rows, columns)], y[rows])
    return lambda raw: 1.0 - model.predict_proba(raw[:, columns]).max(axis=1)


def main() -> None:
    candidates = {f"gp_iterations_{ITERATIONS}": more_trees}
    probe_gp_classifier(__doc__, "runs/gp-classifier-capacity/scores.parquet", candidates)


if __name__ == "__main__":
    main()
