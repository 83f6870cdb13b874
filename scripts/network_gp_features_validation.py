"""The network given the Gaussian-process features too, against the shipped network, on the
leave-one-known-class-out validation (research, #10)

    python scripts/network_gp_features_validation.py RUN_SHIPPED RUN_CANDIDATE

Each RUN has `make validate` done with the default preset on the same prepared dataset, the
second with the research change (a branch, not merged unless it passes): the network's feature
statistics, and so its input, cover all 173 features (`gridding.FEATURE_NAMES`) instead of the
first 141 (`gridding.MODEL_FEATURE_NAMES`). Only the `gp_classifier` reads the 32
Gaussian-process features today, and it carries most of the fusion; the VAE's classification
head learns the known classes from the network's input, so with the features that separate the
supernova subtypes best (the validation's weakest folds) its latent space, where
`latent_mahalanobis` and `latent_knn` measure, could separate them better too. The feature
components read the network's statistics, so they move to all 173 features as well (measured
alone before: +0.0003 ± 0.0012, docs/evaluation.md). The ten fold networks are retrained.

Adoption rule, written and committed before the candidate's validation (the rule of every
candidate since the first detector settings, docs/evaluation.md): the candidate's best fusion
found must beat the shipped network's shipped fusion by more than twice the standard error of
the paired per-fold differences; then the change is merged with the fusion found, the protocols
validated again and the test split evaluated once. Otherwise the branch is not merged and the
result is documented.

Result (2026-12-04; the candidate validated in 14 min on 2 cores shared with other work, against
that day's validation of the shipped code on the same dataset): the shipped fusion 0.8321 against
0.8293, +0.0029 ± 0.0028 (5/10 folds better); the candidate's best found
`latent_mahalanobis:2,classifier:3,gp_classifier:3,latent_knn:2,feature_mahalanobis:2,recon_chi2:3`
0.8337, +0.0045 ± 0.0051 (7/10). Short of the rule: not merged.
"""

from __future__ import annotations

from gp_fit_validation import judge_candidate

if __name__ == "__main__":
    judge_candidate(__doc__, "network reads all")
