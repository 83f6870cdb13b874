"""The VAE at half its width (`model.hidden=256,128`) against the shipped (512, 256), on the
leave-one-known-class-out validation (research, #10: the scoring speed target)

    python scripts/network_width_validation.py RUN_SHIPPED RUN_HALF

Each RUN has `make validate` done with the default preset (the second with `--set
model.hidden=256,128`, its ten fold networks trained at that width; the same prepared dataset).
Reads both `validation/scores.parquet` (known classes only, never the test split) and prints the
shipped fusion's fold AUROC on each, their paired difference, and each run's best fusion found.

Why: scoring (encode + detector, from tensors) ran at 11,400-13,700 objects/s on this release's
machine, short of the issue's 20,000/s, and the network's pass is about 71% of that time; half
the width is 2.2x fewer operations per object (1.30 against 2.85 MFLOP, XLA's count). An earlier
release validated it at -0.0042 ± 0.0023 (2/10 folds better; docs/evaluation.md, "Detector
settings, a smaller network"), before the Gaussian-process features, which now carry most of
the fusion (`gp_classifier:3`), and before the cost rule.

Adoption rule, written and committed before the half-width validation's run: the half-width
network becomes the default if the shipped fusion's fold mean with it is within one standard
error (of the paired per-fold differences) of the shipped network's: the cost rule's tie
(docs/evaluation.md, "The fusion without the first classifier"), applied to the network, whose
ties go to the cheaper. The fusion's weights stay the shipped ones (the best found on each is
printed for information). Otherwise the shipped width stays, and the result is documented.

Result (the half width validated in 15 min on 2 cores shared with a CI run; the shipped network's
validation is this release's): the shipped fusion 0.8262 against 0.8292, -0.0031 ± 0.0013 (3/10
folds better), lower in seven folds (TDE 0.807 -> 0.797, SN Ibc 0.657 -> 0.649); `gp_classifier`
alone 0.766 on both; the best fusion found 0.8270 against 0.8295. Not a tie: the width stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gp_fit_validation import compare_two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_shipped", type=Path)
    parser.add_argument("run_half", type=Path)
    args = parser.parse_args()
    mean, se = compare_two(("shipped", args.run_shipped), ("half width", args.run_half))
    print("a tie: adopt the half width" if mean >= -se else "not a tie: the width stays")


if __name__ == "__main__":
    main()
