"""Would class-conditional (Mondrian) p-values of the classifier help the detector? (research, #10)

    python scripts/class_conformal_probe.py RUN [--out FILE]   # RUN: with `make validate`

The shipped `classifier` component scores 1 - the largest class probability of the gradient-boosted
trees. Known classes that the trees confuse with one another (the supernova subtypes) then give
genuine known objects high scores, and the validation's weakest folds are those subtypes. The
candidate reads the same probabilities per class, the way a Mondrian conformal predictor does
(Vovk et al. 2005): for each known class c, the p-value of the object's probability of c among
the class-c fitting objects' own (out-of-fold) probabilities of c, (1 + #{p_c(ref) <= p_c(x)}) /
(1 + n_c); an object typical of some class is not anomalous however confused the trees are
between classes. Score: -log10 of the largest p-value over the classes (`conformal`).

Per fold and kind, exactly as `validate` fits the `classifier` component (the package's
`components.Classifier`, the validated run's settings): fitted on the train split's other known
classes; the class references come from 5-fold cross-fitted probabilities of those same objects
(stratified, seeded), so no reference object scores itself; calibrated on the val split's other
known objects of the same kind and scored on the val split and the held-out class. The
recomputation of the shipped score reproduces the stored `classifier` column (printed). Only
train and val splits are read, never the test split. Adoption rule as docs/evaluation.md's: the
best fusion with it must beat the shipped one by more than twice the standard error of the
paired per-fold differences.

Result (default-rare run, docs/evaluation.md; 145 s on 2 cores): the shipped score recomputed
exactly; the p-values alone 0.675 against 0.736, in the classifier's place 0.781 (0.791 with the
weights searched again), and beside it the fusion search gives them weight 0: not adopted.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from validation_probe import (
    compare_with_classifier,
    evidence,
    probe_arguments,
    probe_table,
)

from plasticc_jax.calibration import Reference
from plasticc_jax.components import Classifier
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES

CROSS_FOLDS = 5
SEED = 0


def cross_fitted(x: np.ndarray, y: np.ndarray, config: Config) -> np.ndarray:
    """(n, classes) out-of-fold probabilities of the fitting objects (stratified folds)."""
    rng = np.random.default_rng(SEED)
    fold = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        fold[rows] = rng.permutation(rows.size) % CROSS_FOLDS
    out = np.zeros((len(y), np.unique(y).size))
    for k in range(CROSS_FOLDS):
        held = fold == k
        model = Classifier(config.eval).fit(evidence(x[~held]), y[~held])
        out[held] = model.probabilities(evidence(x[held]))
    return out


def conformal(p: np.ndarray, reference: np.ndarray, labels: np.ndarray, classes: np.ndarray):
    """(n,) -log10 of the largest class-conditional p-value of the probabilities `p`."""
    best = np.zeros(len(p))
    for j, c in enumerate(classes):
        own = np.sort(reference[labels == c, j])
        at_most = np.searchsorted(own, p[:, j], side="right")
        best = np.maximum(best, (1.0 + at_most) / (1.0 + own.size))
    return -np.log10(best)


def fold_columns(objects: pd.DataFrame, held_out: int, config: Config) -> pd.DataFrame:
    """The shipped classifier score recomputed (`classifier_again`) and the candidate
    (`conformal`), calibrated, for one fold's scored objects."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    columns = {"classifier_again": np.zeros(len(objects)), "conformal": np.zeros(len(objects))}
    for g in (True, False):
        fit = fit_all & (galactic == g)
        x, y = raw[fit], target[fit]
        model = Classifier(config.eval).fit(evidence(x), y)
        reference = cross_fitted(x, y, config)
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        p_val, p_rows = (model.probabilities(evidence(raw[part])) for part in (val, rows))
        for name, reference_score, score in (
            ("classifier_again", 1.0 - p_val.max(axis=1), 1.0 - p_rows.max(axis=1)),
            (
                "conformal",
                conformal(p_val, reference, y, model.classes),
                conformal(p_rows, reference, y, model.classes),
            ),
        ):
            columns[name][rows] = Reference.fit(reference_score).tail_score(score)
    for name, column in columns.items():
        out[name] = column[scored]
    return out


def main() -> None:
    args = probe_arguments(__doc__, "runs/class-conformal/scores.parquet")
    start = time.perf_counter()
    config, table = probe_table(args, fold_columns)

    print(f"\nclass-conditional p-values ({time.perf_counter() - start:.0f} s):\n")
    compare_with_classifier(table, config, "conformal", "the class-conditional p-values")


if __name__ == "__main__":
    main()
