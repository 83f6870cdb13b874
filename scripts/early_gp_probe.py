"""Does the `gp_classifier` help the early preset at 10 days? (research, #12)

    python scripts/early_gp_probe.py RUN    # RUN: a run with `make prepare validate CONFIG=early`

`validate`'s 10-day fusion search covers the six best single components at that stage and those
of the configured fusion; the `gp_classifier` (the Gaussian-process features' classifier) is
neither on the early preset's validation, so this searches its weights beside the shipped
fusion's components: every fusion of weights 0-3 over them (`fusion_search.search`, scored as
the fold detectors score them, from validate's stored stage scores: no network, no test data).
It prints each component's fold mean AUROC at 10 days, the best fusion found, the best that
weighs the `gp_classifier`, and that one against the shipped fusion: the mean and standard
error of the paired per-fold differences. The rule (docs/early.md, written before the run):
adopt only if the best found weighs the `gp_classifier` and beats the shipped fusion by more
than twice that standard error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import config_io
from plasticc_jax.components import COMPONENTS
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import StageFolds, fusion_spec, search

HEADLINE_DAYS = 10.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run validated with the early preset")
    args = parser.parse_args(argv)
    folds = StageFolds(pd.read_parquet(args.run / "validation" / "stages.parquet"), HEADLINE_DAYS)
    fusion = config_io.load_preset("early").eval.fusion
    shipped = parse_fusion(fusion)
    single = {
        c: folds.mean_auroc(folds.scores[c].to_numpy())
        for c in COMPONENTS
        if c in folds.scores.columns
    }
    print(f"single components at {HEADLINE_DAYS:g} days (fold mean AUROC):")
    for name, value in sorted(single.items(), key=lambda item: -item[1]):
        print(f"  {name:22s} {value:.4f}")
    tried = search(folds, [*shipped, "gp_classifier"])
    with_gp = [t for t in tried if "gp_classifier" in t["weights"]]
    print(
        f"{len(tried)} fusions; best found: {fusion_spec(tried[0]['weights'])} "
        f"{tried[0]['mean_auroc']:.4f}"
    )
    best = with_gp[0]["weights"]
    print(f"best weighing the gp_classifier: {fusion_spec(best)} {with_gp[0]['mean_auroc']:.4f}")
    before, after = folds.aurocs(folds.fused(shipped)), folds.aurocs(folds.fused(best))
    diff = np.array([after[k] - before[k] for k in before])
    print(
        f"against the shipped {','.join(fusion)} ({np.mean(list(before.values())):.4f}): "
        f"{diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.4f} "
        f"({(diff > 0).sum()} of {diff.size} folds better)"
    )


if __name__ == "__main__":
    main()
