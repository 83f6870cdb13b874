"""Should galactic objects be scored from fewer observations than extragalactic ones?

    python scripts/galactic_min_observations_probe.py --baseline RUN RUN --candidate RUN RUN
    # RUN: a run folder validated with `make validate CONFIG=early` (validation/stages.parquet),
    # one per training seed (train.seed 0 and 1), the same seeds on both sides

The question (issue #12; the lead docs/early.md names after `data.min_observations = 3` was
validated and not adopted): a partial light curve with fewer than `data.min_observations` (5)
points has no row and cannot be scored, which is most of Mira's low early AUROC on the test
split (63% of Mira have fewer than five points at 10 days). With 3 for every object three
folds made the gain (RR Lyrae +0.319, EB +0.084, AGN +0.079 at 10 days) and six of the other
seven lost a little (M-dwarf among them). The candidate asks for 3 from galactic objects only
(`data.min_observations_galactic = 3`; hostgal_photoz == 0, the detector's own kinds), 5 from
the others. Baseline: the early preset (5 for all). Each side: its own dataset (`prepare`) and
the ten fold networks retrained (`validate`), with training seeds 0 and 1; no test data.

What this prints: `early_features_probe.compare`: per stage, the mean over the 10 folds of the
held-out class's fold AUROC with the early preset's shipped fusion, recomputed from each run's
stored component scores as `validate` does, each fold averaged over the seeds first; the paired
per-fold differences candidate - baseline, mean ± standard error (ddof=1) and folds better.

THE RULE, written before any run (2026-12-02): adopt the per-kind minimum only if the 10-day
mean of the paired per-fold differences (seed-averaged) exceeds twice its standard error AND the
complete-curve mean difference is not below -2 of its standard errors. Otherwise the setting
stays out of the package (its code was a research branch, not kept).

Result (2026-12-02, the four validations 10-21 min each on 2 cores; docs/early.md): at 10 days
0.6392 against 0.6057, +0.0335 ± 0.0333 (3/10 folds better: RR Lyrae +0.316, EB +0.094, M-dwarf
+0.014; the seven extragalactic folds -0.036 to -0.002); complete +0.0037 ± 0.0033. Not adopted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from early_features_probe import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, nargs=2, required=True)
    parser.add_argument("--candidate", type=Path, nargs=2, required=True)
    args = parser.parse_args()
    compare(args.baseline, args.candidate)


if __name__ == "__main__":
    main()
