"""Two corrections of the physics features, from an astrophysical review, against the shipped
features on the leave-one-known-class-out validation (research, #10)

    python scripts/physics_corrections_validation.py RUN_SHIPPED RUN_CORRECTED

Each RUN has `make prepare validate` done with the default preset, the second with the research
change (a branch, not merged unless it passes): a review of the features as an astronomer reads
them (this release) found two that do not measure what their names say.

- **Milky Way dust.** Nothing removed it: an extragalactic object behind E(B-V) = 0.2 (5% of the
  training set's) looks about 1 magnitude fainter in u and redder in every colour, so
  `peak_abs_mag` and the colours mix the host's light with our Galaxy's dust (the trees could
  learn around it through `mwebv`; the distance components cannot). The candidate multiplies
  each extragalactic object's fluxes and errors by 10^(0.4 R_b E(B-V)) before gridding (R_b of
  Cardelli, Clayton & Mathis 1989 at R_V = 3.1 and the passbands' effective wavelengths: 4.81,
  3.64, 2.70, 2.06, 1.58, 1.31); galactic objects, in front of an unknown part of the column,
  are left as they are. The grid the VAE reads, the physics, `light-curve` and Gaussian-process
  features all see the corrected fluxes.
- **Half-maximum times.** `half_max_rise_days` / `half_max_fall_days` took the earliest and
  latest sampled point above half of the band's brightest point over the whole light curve
  (anywhere within 300 days of t0, not necessarily a run through the peak): 0 for most
  supernovae and kilonovae, negative for some eclipsing binaries, seasons apart for variables.
  The candidate: the run of consecutive points of t0's band around t0 above half of the band's
  brightest point within 10 days of t0, each end's crossing interpolated linearly.

Adoption rule, written and committed before the candidate's validation (the rule of every
candidate since the first detector settings, docs/evaluation.md): the candidate's best fusion
found must beat the shipped features' shipped fusion by more than twice the standard error of
the paired per-fold differences; then the change is merged with the fusion found and the test
split evaluated once. Otherwise the branch is not merged, the result is documented, and the
features' documentation says what they measure as they are.

Result (2026-12-04; both validated in fresh workdirs on this day's machine, 15 min for the two on
2 cores): the shipped fusion 0.8299 with the corrections against 0.8293 without, +0.0006 ±
0.0031 (5/10 folds better); the corrected run's best fusion found is the shipped fusion; the
`gp_classifier` alone 0.760 against 0.766. Short of the rule: not merged.
"""

from __future__ import annotations

from gp_fit_validation import judge_candidate

if __name__ == "__main__":
    judge_candidate(__doc__, "corrected")
