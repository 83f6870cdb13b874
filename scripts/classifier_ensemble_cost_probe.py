"""The classifier ensemble at the shipped classifier's prediction cost (research, #10)

    python scripts/classifier_ensemble_cost_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

`classifier_disagreement_probe.py` found the mean of five bagged `gp_classifier`s (50
iterations each) better than the one shipped, past the adoption rule in its place (+0.0088 ±
0.0036, 8 of 10 folds). Five models predict five times the trees, and the trees are most of
the detector's scoring time: scoring would fall below the 20,000 objects/s target. The same
ensembles with as many trees in all as the shipped classifier (50), each model shorter and
faster-learning:

- `ensemble_5x10`: five models of 10 iterations, learning rate 0.5;
- `ensemble_3x17`: three models of 17 iterations, learning rate 0.3.

Scored by 1 - the largest class probability of the models' mean, fitted and calibrated as the
first probe's (bootstrap samples, `max_features` 0.5, classes balanced). Adoption rule, as
docs/evaluation.md's, written before the run: the best fusion found with a candidate (in the
`gp_classifier`'s place or beside it) must beat the shipped fusion by more than twice the
standard error of the paired per-fold differences.

Result (the same validation, 2026-12-05; 58 s on 2 cores): alone 0.767 and 0.773 against the
`gp_classifier`'s 0.766; in its place -0.0029 ± 0.0062 and +0.0003 ± 0.0046, beside it +0.0039 ±
0.0040 and +0.0045 ± 0.0043. Not adopted: the five full-length models' gain does not survive at
the shipped cost.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from class_knn_probe import report
from classifier_disagreement_probe import ensemble_scorer
from validation_probe import probe_arguments, read_validation, with_fold_columns

from plasticc_jax.calibration import Reference
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES

# name -> `ensemble_scorer`'s settings (models, iterations, learning rate).
VARIANTS: dict[str, dict[str, Any]] = {
    "ensemble_5x10": {"models_n": 5, "iterations": 10, "learning_rate": 0.5},
    "ensemble_3x17": {"models_n": 3, "iterations": 17, "learning_rate": 0.3},
}


def ensemble_columns(
    objects: pd.DataFrame, held_out: int, config: Config, variants: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """Each variant's `ensemble_maxprob` for one fold's scored objects, fitted per kind on the
    train split's other known classes and calibrated on the val split's other known objects."""
    raw = np.stack(objects["raw"].to_numpy()).astype(np.float32)
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    scored = (split == "val") | (target == held_out)
    columns = {name: np.zeros(len(raw)) for name in variants}
    for g in (True, False):
        fit = (split == "train") & (target != held_out) & (galactic == g)
        if not fit.any():
            continue
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        for name, settings in variants.items():
            score = ensemble_scorer(raw[fit], target[fit], config, **settings)
            reference = Reference.fit(score(raw[val])["ensemble_maxprob"])
            columns[name][rows] = reference.tail_score(score(raw[rows])["ensemble_maxprob"])
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    return out.assign(**{name: column[scored] for name, column in columns.items()})


def ensemble_probe(doc: str, out: str, variants: dict[str, dict[str, Any]]) -> None:
    """The command of a probe of ensemble variants, reported against the shipped fusion."""
    args = probe_arguments(doc, out)
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    make = lambda f: ensemble_columns(objects, f, config, variants)  # noqa: E731
    table = with_fold_columns(scores, make, args.out)
    print(f"({time.perf_counter() - start:.0f} s)")
    report(table, config, tuple(variants), "gp_classifier")


if __name__ == "__main__":
    ensemble_probe(__doc__, "runs/classifier-ensemble-cost/scores.parquet", VARIANTS)
