"""The feature distance components on the Gaussian-process features too (research, #10)

    python scripts/gp_feature_components_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The 32 Gaussian-process features (`gp_features.py`) are read by the `gp_classifier` alone; the
distance components (`feature_mahalanobis`, `feature_knn`, `feature_forest`) read the 141 features
the network reads. The process's smooth model gives colours and timescales where the raw points
are noisy or missing, which is where the supernova subtypes, the validation's weakest folds, are
told apart; the candidates are the same components fitted on all 173 features
(`feature_mahalanobis_gp`, `feature_knn_gp`, `feature_forest_gp`), quantile-normalised as the 141
are (`FeatureStats`, fitted on the fold's train known objects).

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` fits and calibrates the shipped
ones (which this script recomputes on the 141 features and checks against the stored columns).

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with the
candidates must beat the shipped fusion (`config.VALIDATED_FUSION["rare"]`) by more than twice
the standard error of the paired per-fold differences. The search: every weight 0-3 of the
shipped fusion's components and the three candidates (seven components, as many as `validate`'s
own search; a candidate in `feature_mahalanobis`'s place is the weight 0 for it).

Result (the validation of docs/evaluation.md, 105 s on 2 busy cores; the shipped components
recomputed exactly): alone `feature_mahalanobis_gp` 0.712 (0.702 on the 141), `feature_knn_gp`
0.720 (0.706; TDE 0.749 -> 0.825, RR Lyrae 0.943 -> 0.873), `feature_forest_gp` 0.674 (0.659);
the best fusion found is the shipped one with `feature_mahalanobis_gp` in its place, 0.830,
+0.0003 ± 0.0012 (5/10 folds better): not adopted.
"""

from __future__ import annotations

from validation_probe import feature_component_probe, quantile_normalisation

from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

if __name__ == "__main__":
    feature_component_probe(
        __doc__,
        "runs/gp-feature-components/scores.parquet",
        {
            "_again": quantile_normalisation(MODEL_FEATURE_NAMES),
            "_gp": quantile_normalisation(FEATURE_NAMES),
        },
        "the feature components on all features",
    )
