"""The five bagged classifiers again, on other bootstrap draws (research, #10)

    python scripts/classifier_ensemble_draws_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

`classifier_disagreement_probe.py` found the mean of five bagged `gp_classifier`s better than the
one shipped, past the adoption rule in its place (+0.0088 ± 0.0036, 8 of 10 folds), on one draw
of bootstrap samples and seeds. A check of that gain, not a new choice: the same ensemble on two
other draws (`draw` 1 and 2 of `ensemble_scorer`), reported as they come out beside the first.

Result (the same validation, 2026-12-05; 215 s on 2 cores): alone 0.786 and 0.777 (the first
draw 0.789); in the `gp_classifier`'s place, the shipped weights (the best found there), 0.838
and 0.832: **+0.0085 ± 0.0039** (8/10) and **+0.0030 ± 0.0042** (6/10), against the first
draw's +0.0088 ± 0.0036; beside it +0.0092 ± 0.0056 and +0.0046 ± 0.0052. The sign holds on every
draw, the size does not: the mean over the three draws in its place is +0.0068, and one draw of
three falls well short of the rule. The first draw's pass was partly its luck.
"""

from __future__ import annotations

from classifier_ensemble_cost_probe import ensemble_probe

if __name__ == "__main__":
    ensemble_probe(
        __doc__,
        "runs/classifier-ensemble-draws/scores.parquet",
        {"ensemble_draw1": {"draw": 1}, "ensemble_draw2": {"draw": 2}},
    )
