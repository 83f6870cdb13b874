"""Would deeper or shallower trees help the review's active model? (research, #15)

    python scripts/review_depth_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped policy (`active.POLICY`: coniferest's AADForest, 100 trees of 256 objects, on the VAE
latent means and the detector's scores) grows each tree to the library's default depth, log2(256)
= 8: a leaf then holds about one object of its tree's sample, and an answer re-weights the
leaves it falls in. Shallower trees (depth 6) share each answer with more objects; deeper ones
(12, 16: isolation to the end) with fewer. Pools, draws and simulated expert as
`scripts/review_feature_probe.py` (the validation folds of `plasticc-jax review --simulate
--validation`: 5% of each fold's pool from the held-out class, never the test split).

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the best
candidate by anomalies among the first 50 shown must beat the shipped policy by more than twice
the standard error of the paired per-fold differences.

Result (default-rare run from a fresh clone; 4.2 min on 2 cores): the shipped depth 27.25 in the
first 50 (the patched forest with the default depth reproduces it); depth 6 27.60 (+0.35 ±
0.91), 12 27.62 (+0.38 ± 0.92), 16 26.57 (-0.68 ± 1.00). Within the noise: not adopted.
"""

from __future__ import annotations

import functools

from review_feature_probe import probe_forest_variants

DEPTHS = (6, 12, 16)


def main() -> None:
    variants = {"shipped (depth log2(256) = 8)": None}  # the library's default
    for depth in DEPTHS:
        variants[f"depth {depth}"] = lambda forest, d=depth: functools.partial(forest, max_depth=d)
    probe_forest_variants(__doc__, "review_depth_probe.json", variants)


if __name__ == "__main__":
    main()
