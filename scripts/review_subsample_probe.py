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

from review_feature_probe import probe_forest_variants

from plasticc_jax.review import active

SAMPLES = (64, 128, 512)


def _sized(forest: Any, samples: int) -> Any:
    """The forest with `samples` objects a tree, whatever the ranker asks (min(256, pool))."""
    return lambda **kwargs: forest(**{**kwargs, "n_subsamples": samples})


def main() -> None:
    variants = {f"shipped ({active.N_SUBSAMPLES} a tree)": None}
    for samples in SAMPLES:
        variants[str(samples)] = lambda forest, k=samples: _sized(forest, k)
    probe_forest_variants(__doc__, "review_subsample_probe.json", variants)


if __name__ == "__main__":
    main()
