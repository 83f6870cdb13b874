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
stars lose (RR Lyrae 0.943 -> 0.857, EB 0.974 -> 0.912); the shipped weights with
`feature_mahalanobis_lda` in `feature_mahalanobis`'s place 0.829, -0.0005 ± 0.0059 (7/10 folds
better: TDE 0.807 -> 0.832, RR Lyrae 0.968 -> 0.934); the best fusion found is the shipped one
itself (every candidate weight 0): +0.0000. Not adopted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from validation_probe import Normalisation, feature_component_probe, quantile_normalisation

from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES


def discriminant_space(objects: pd.DataFrame) -> dict[str, Normalisation]:
    """The shipped normalisation (`_again`) and the candidate (`_lda`): every feature
    quantile-normalised, then projected on the discriminant axes of the fitting rows' classes."""
    target = objects["target"].to_numpy()
    every = quantile_normalisation(FEATURE_NAMES)

    def project(raw: np.ndarray, fit: np.ndarray) -> np.ndarray:
        x = every(raw, fit)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
        return lda.fit(x[fit], target[fit]).transform(x).astype(np.float32)

    return {"_again": quantile_normalisation(MODEL_FEATURE_NAMES), "_lda": project}


if __name__ == "__main__":
    feature_component_probe(
        __doc__,
        "runs/lda-components/scores.parquet",
        discriminant_space,
        "the feature components in the discriminant space",
    )
