"""The feature distance components in the known classes' discriminant space (research, #10)

    python scripts/lda_components_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The distance components (`feature_mahalanobis`, `feature_knn`, `feature_forest`) weigh each of
the 141 quantile-normalised features alike, so the many that say little about the class dilute
the few that tell the known classes apart, and the validation's weakest folds are supernova
subtypes close to a known one (SN Iax, Ia-91bg, Ibc, Ia: 0.66-0.73). The candidates are the same
components in a supervised space: all 173 features (the Gaussian-process ones included)
quantile-normalised as the 141 are, then projected by linear discriminant analysis of the fold's
train known classes (scikit-learn's `LinearDiscriminantAnalysis`, eigen solver with Ledoit-Wolf
shrinkage; one fewer dimension than classes), where a held-out subtype may fall between the
classes it resembles: `feature_mahalanobis_lda`, `feature_knn_lda`, `feature_forest_lda`.

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's, as `validate` fits and calibrates the shipped ones (the shipped ones are recomputed
and checked against the stored columns).

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with the
candidates must beat the shipped fusion (`config.VALIDATED_FUSION["rare"]`) by more than twice
the standard error of the paired per-fold differences (every weight 0-3 of the shipped fusion's
components and the three candidates).

Result (the validation of docs/evaluation.md, 137 s on 2 cores; the shipped components
recomputed exactly): alone `feature_mahalanobis_lda` 0.704 (0.702 shipped), `feature_knn_lda`
0.713 (0.706), `feature_forest_lda` 0.657 (0.659): the supernova folds gain a little (SN Ibc
0.527 -> 0.627, SN Ia-91bg 0.486 -> 0.553, SN II 0.613 -> 0.665 for the kNN) and the variable
stars lose (RR Lyrae 0.943 -> 0.857, EB 0.974 -> 0.912); the best fusion found is the shipped
one itself (every candidate weight 0): +0.0000. Not adopted.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from validation_probe import (
    FEATURE_COMPONENTS,
    feature_component_columns,
    paired,
    probe_arguments,
    quantile_normalisation,
    read_validation,
    table_rows,
)

from plasticc_jax.config import VALIDATED_FUSION
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

SUFFIX = "_lda"


def discriminant_space(target: np.ndarray):
    """A normalisation (`validation_probe.Normalisation`): every feature quantile-normalised,
    then projected on the discriminant axes of the fitting rows' classes (`target`: the class of
    every row)."""
    every = quantile_normalisation(FEATURE_NAMES)

    def project(raw: np.ndarray, fit: np.ndarray) -> np.ndarray:
        x = every(raw, fit)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
        return lda.fit(x[fit], target[fit]).transform(x).astype(np.float32)

    return project


def main() -> None:
    args = probe_arguments(__doc__, "runs/lda-components/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    target = objects["target"].to_numpy()
    parts = []
    for fold in (int(f) for f in scores["fold"].unique()):
        normalisations = {
            "_again": quantile_normalisation(MODEL_FEATURE_NAMES),
            SUFFIX: discriminant_space(target),
        }
        parts.append(feature_component_columns(objects, fold, config.eval, normalisations))
    new = pd.concat(parts, ignore_index=True)
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    assert not table[new.columns].isna().any().any(), "a scored object without new scores"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"components: {time.perf_counter() - start:.0f} s")
    for c in FEATURE_COMPONENTS:  # the recomputation reproduces the stored columns
        print(f"{c}: max |recomputed - stored| {np.abs(table[c] - table[c + '_again']).max():.2e}")

    folds = Folds(table)
    shipped = parse_fusion(VALIDATED_FUSION[config.data.protocol])
    candidates = [f"{c}{SUFFIX}" for c in FEATURE_COMPONENTS]
    rows = {"shipped fusion": folds.fused(shipped)}
    rows |= {c: table[c].to_numpy() for c in [*FEATURE_COMPONENTS, *candidates]}
    searched = [*shipped, *candidates]
    best = folds.search(searched, searched)[0]["weights"]
    rows[f"best found: {fusion_spec(best)}"] = folds.fused(best)
    table_rows(folds, rows)
    name = list(rows)[-1]
    print(f"{name}: {paired(folds, rows[name], rows['shipped fusion'])}")
    print(f"total: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
