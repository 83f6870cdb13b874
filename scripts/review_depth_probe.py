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

import coniferest.aadforest
from review_feature_probe import probe_arguments, report_against_first, simulate_groups

from plasticc_jax.review import active, validation

DEPTHS: tuple[int | None, ...] = (None, 6, 12, 16)  # None: the library's default (shipped)


def main() -> None:
    args = probe_arguments(__doc__, "review_depth_probe.json")
    workdir = args.workdir or args.run.parent.parent
    table = validation.validation_pool(args.run, workdir)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    forest = coniferest.aadforest.AADForest
    per_fold: dict[str, dict[str, float]] = {}
    try:
        for depth in DEPTHS:
            name = "shipped (depth log2(256) = 8)" if depth is None else f"depth {depth}"
            # The ranker imports AADForest when it fits: the patched class is the one it gets.
            coniferest.aadforest.AADForest = functools.partial(forest, max_depth=depth)
            print(f"\n## {name}")
            per_fold[name] = simulate_groups(table, {name: shipped}, args.draws)[name]["per_fold"]
    finally:
        coniferest.aadforest.AADForest = forest
    report_against_first(per_fold, args.out)


if __name__ == "__main__":
    main()
