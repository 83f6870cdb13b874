"""The five bagged classifiers again, on other bootstrap draws (research, #10)

    python scripts/classifier_ensemble_draws_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

`classifier_disagreement_probe.py` found the mean of five bagged `gp_classifier`s better than the
one shipped, past the adoption rule in its place (+0.0088 ± 0.0036, 8 of 10 folds), on one draw
of bootstrap samples and seeds. A check of that gain, not a new choice: the same ensemble on two
other draws (`draw` 1 and 2 of `ensemble_scorer`), reported as they come out beside the first.
"""

from __future__ import annotations

from classifier_ensemble_cost_probe import ensemble_probe

if __name__ == "__main__":
    ensemble_probe(
        __doc__,
        "runs/classifier-ensemble-draws/scores.parquet",
        {"ensemble_draw1": {"draw": 1}, "ensemble_draw2": {"draw": 2}},
    )
