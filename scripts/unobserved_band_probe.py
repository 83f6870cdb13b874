"""Should a band without observations have NaN (undefined) summaries instead of 0?

    python scripts/unobserved_band_probe.py --baseline RUN [RUN ...] --candidate RUN [RUN ...]
    # RUN: a run folder validated with `make validate CONFIG=early` (validation/stages.parquet)

The question (found by a review of the features' numerics): `gridding` gives a passband with no
observation a `mean_flux_*`, `std_flux_*` and `frac_detected_*` of 0, which reads as "zero flux,
no spread, nothing detected" where the value is undefined. `FeatureStats` maps NaN to the
neutral 0 of its normal scores and the gradient-boosted classifiers route NaN on their own. No
complete light curve of the PLAsTiCC training set lacks a band, so the default preset's features
are the same either way; partial light curves (the `early` preset, `replay`, `score --as-of`)
often lack bands. Baseline: 0 (the code as it was); candidate: NaN for the three summaries of an
unobserved band (dataset prepared again, the ten fold networks retrained, since the features
feed the VAE's encoder too). Both by the leave-one-known-class-out validation (`plasticc-jax
validate --config early`), no test data.

THE RULE, written before any run (the rule of `early_features_probe.py`, whose comparison this
script runs): adopt NaN only if the 10-day mean paired difference candidate - baseline exceeds
twice its standard error AND the complete-curve mean paired difference is not below -2 standard
errors; a second training seed (`--set train.seed=1`) on both sides if the 10-day difference is
above +1 standard error with one seed. Otherwise 0 stays, and the code says that it was
validated.

Result (both sides `make prepare validate CONFIG=early` in fresh clones, 11 min each on 2
cores shared with other work, no test data; the baseline reproduces the documented 0.609 at 10
days fold for fold): a quarter of the train split's partial rows lack at least one band (24-26%
at 2-20 days, mostly u, g and r; none of the complete rows). At 10 days 0.6009 against 0.6093,
-0.0084 ± 0.0090 (6/10 folds better; M-dwarf 0.826 -> 0.760 and SN Ia-91bg 0.547 -> 0.491
make the loss); lower at every partial stage (-0.003 to -0.010), complete +0.0040 ± 0.0036.
Not adopted: 0 stays, no second seed (the rule asks for one only above +1 standard error).
"""

from __future__ import annotations

import early_features_probe

if __name__ == "__main__":
    early_features_probe.main(__doc__)
