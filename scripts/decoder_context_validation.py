"""The VAE's decoder given the object's context (a conditional VAE) against the shipped VAE, on
the leave-one-known-class-out validation (research, #10)

    python scripts/decoder_context_validation.py RUN_SHIPPED RUN_CONTEXT

Each RUN has `make validate` done with the default preset on the same prepared dataset, the
second with the research change (not merged) and `--set model.decoder_context=true`: the decoder
reads, beside z, the object's host photo-z, whether it is galactic and its Milky Way extinction
(normalised network features), so that the latent space need not spend its dimensions on
distance and dust and can hold the light curve's intrinsic shape: the first step of a
ParSNIP-style redshift-aware model (Boone 2021), the lead docs/evaluation.md names next, without
its physical decoder. The encoder, the head, the loss and the detector are unchanged; the ten
fold networks are retrained. Reads both `validation/scores.parquet` (known classes only, never
the test split).

Adoption rule, written and committed before the candidate's validation (the rule of the earlier
network and detector settings, docs/evaluation.md): the candidate's best fusion found must beat
the shipped network's shipped fusion by more than twice the standard error of the paired per-fold
differences; then the change is merged with the fusion found and the test split evaluated once.
Otherwise the branch is not merged and the result is documented.

Result (the candidate validated in 6 min on 2 cores, against this release's validation of the
shipped network on the same machine and dataset): the shipped fusion 0.8292 on both, -0.0000 ±
0.0010 (4/10 folds better); the candidate's best found
`gp_classifier:3,latent_mahalanobis:1,classifier:1,feature_mahalanobis:1,recon_chi2:1` (the
shipped fusion itself) 0.8292, -0.0000 ± 0.0038; the latent Mahalanobis alone 0.758 against
0.751, the latent kNN 0.734 against 0.740. Short of the rule: not merged.
"""

from __future__ import annotations

from gp_fit_validation import judge_candidate

if __name__ == "__main__":
    judge_candidate(__doc__, "decoder context")
