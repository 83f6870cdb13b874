"""Would trees of smaller or larger samples help the review's active model? (research, #15)

    python scripts/review_subsample_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped policy (`active.POLICY`: coniferest's AADForest, 100 trees of 256 objects, on the VAE
latent means and the detector's scores) grows each tree on a sample of 256 objects of the pool
(about a quarter of a validation pool of about 1,000, a sixth of the test split's 5% pool). A
smaller sample isolates a small group of look-alike objects (a new class) in fewer splits, which
is what an isolation forest's score rewards, and spreads an answer's leaf over more objects of
the pool; a larger one the reverse (whole-pool trees of 1,024 objects, probed earlier on other
feature groups, 25.7 against 26.5: docs/review.md). Candidates: 64, 128 and 512 objects a tree.
Pools, draws and simulated expert as `scripts/review_feature_probe.py` (the validation folds of
`plasticc-jax review --simulate --validation`: 5% of each fold's pool from the held-out class,
never the test split).

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the best
candidate by anomalies among the first 50 shown must beat the shipped policy by more than twice
the standard error of the paired per-fold differences.

Result (default-rare run from a fresh clone, validated again: 0.814; 3.6 min on 2 cores shared
with another job): the shipped 256 objects a tree 27.25 in the first 50 (reproduced); 64 27.62
(+0.38 ± 0.70), 128 26.98 (-0.28 ± 0.78), 512 27.23 (-0.03 ± 1.45). Within the noise: not
adopted.
"""

from __future__ import annotations

from typing import Any

import coniferest.aadforest
from review_feature_probe import probe_arguments, report_against_first, simulate_groups

from plasticc_jax.review import active, validation

SAMPLES: tuple[int | None, ...] = (None, 64, 128, 512)  # None: the shipped 256


def main() -> None:
    args = probe_arguments(__doc__, "review_subsample_probe.json")
    workdir = args.workdir or args.run.parent.parent
    table = validation.validation_pool(args.run, workdir)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    forest = coniferest.aadforest.AADForest
    per_fold: dict[str, dict[str, float]] = {}
    try:
        for samples in SAMPLES:
            name = f"shipped ({active.N_SUBSAMPLES} a tree)" if samples is None else f"{samples}"

            def sized(samples: int | None = samples, **kwargs: Any) -> Any:
                if samples is not None:  # the ranker passes min(256, pool): this replaces it
                    kwargs["n_subsamples"] = samples
                return forest(**kwargs)

            # The ranker imports AADForest when it fits: the patched class is the one it gets.
            coniferest.aadforest.AADForest = sized
            print(f"\n## {name}")
            per_fold[name] = simulate_groups(table, {name: shipped}, args.draws)[name]["per_fold"]
    finally:
        coniferest.aadforest.AADForest = forest
    report_against_first(per_fold, args.out)


if __name__ == "__main__":
    main()
