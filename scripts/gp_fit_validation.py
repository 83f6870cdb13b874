"""The fast fit of the Gaussian-process features (`data.gp_fit=fast`) against the full one, on
the leave-one-known-class-out validation (research, #10)

    python scripts/gp_fit_validation.py RUN_FULL RUN_FAST

Each RUN has `make validate` done with the default preset, the second with `--set
data.gp_fit=fast` (prepared with it too); only the `gp_classifier`'s inputs differ. Reads both
`validation/scores.parquet` (known classes only, never the test split) and prints the shipped
fusion's fold AUROC on each, their paired difference, `gp_classifier` alone, and the best
fusion found on each.

What it decides, written before the fast run's validation: nothing about the default, which
stays `full` in this release. `fast` is a speed setting for gridding (`prepare`, `score` from
files, `replay` nights) and is offered with its validation as measured here, good or bad.

Result (`plasticc-jax prepare validate --set data.gp_fit=fast` in a fresh workdir, 17 min on 2
cores, against this release's validation: every component but the `gp_classifier` the same to
the third decimal, the fold networks alike): the shipped fusion 0.8258 against 0.8292,
-0.0034 ± 0.0030 (5/10 folds better); `gp_classifier` alone 0.758 against 0.766; the best fusion
found 0.828 against 0.8295 (the same weights on both).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax.config import COMPONENT_NAMES, VALIDATED_FUSION
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.plasticc import class_name

FoldAurocs = dict[int, float]


def compare(runs: dict[str, Path]) -> tuple[dict[str, FoldAurocs], dict[str, FoldAurocs]]:
    """Print the shipped fusion's fold AUROC on each validated run (name -> RUN), its
    `gp_classifier` alone and its best fusion found; return the fold AUROCs per name of the
    shipped fusion and of the best found."""
    folds = {
        name: Folds(pd.read_parquet(run / "validation" / "scores.parquet"))
        for name, run in runs.items()
    }
    shipped = parse_fusion(VALIDATED_FUSION["rare"])
    aurocs = {name: f.aurocs(f.fused(shipped)) for name, f in folds.items()}
    ids = sorted(next(iter(aurocs.values())))
    print("run | mean | " + " | ".join(class_name(i) for i in ids))
    for name, per_fold in aurocs.items():
        values = [per_fold[i] for i in ids]
        print(f"{name} | {np.mean(values):.4f} | " + " | ".join(f"{v:.3f}" for v in values))
    best_aurocs = {}
    for name, f in folds.items():
        alone = f.mean_auroc(f.scores["gp_classifier"].to_numpy())
        components = [c for c in COMPONENT_NAMES if c in f.scores.columns]
        best = f.search(components, also=shipped)[0]
        best_aurocs[name] = f.aurocs(f.fused(best["weights"]))
        print(
            f"{name}: gp_classifier alone {alone:.4f}; best fusion found "
            f"{best['mean_auroc']:.4f} `{fusion_spec(best['weights'])}`"
        )
    return aurocs, best_aurocs


def report_paired(label: str, base: FoldAurocs, candidate: FoldAurocs) -> tuple[float, float]:
    """Print the paired per-fold difference candidate - base (mean ± standard error, folds
    better) after `label`; return its mean and standard error."""
    ids = sorted(base)
    diff = np.array([candidate[i] - base[i] for i in ids])
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))
    print(f"{label}: {mean:+.4f} ± {se:.4f} ({(diff > 0).sum()}/{diff.size} folds better)")
    return mean, se


def compare_two(base: tuple[str, Path], candidate: tuple[str, Path]) -> tuple[float, float]:
    """`compare` two validated runs, (name, RUN) each, and print the shipped fusion's paired
    per-fold difference candidate - base; return its mean and standard error."""
    aurocs, _ = compare(dict([base, candidate]))
    label = f"{candidate[0]} - {base[0]}, shipped fusion"
    return report_paired(label, aurocs[base[0]], aurocs[candidate[0]])


def judge_candidate(doc: str, name: str) -> None:
    """The command line of a research change validated against the shipped code
    (`SCRIPT RUN_SHIPPED RUN_CANDIDATE`, `doc` its help): print the shipped fusion's and the
    candidate's best fusion's paired per-fold differences against the shipped run's shipped
    fusion, and the verdict of the rule: the best found must beat it by more than twice the
    standard error."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("run_shipped", type=Path)
    parser.add_argument("run_candidate", type=Path)
    args = parser.parse_args()
    shipped, best = compare({"shipped": args.run_shipped, name: args.run_candidate})
    report_paired(f"{name} - shipped, shipped fusion", shipped["shipped"], shipped[name])
    mean, se = report_paired(
        f"{name}'s best found - shipped's shipped fusion", shipped["shipped"], best[name]
    )
    print("passes: merge it" if mean > 2 * se else "short of the rule: not merged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_full", type=Path)
    parser.add_argument("run_fast", type=Path)
    args = parser.parse_args()
    compare_two(("full", args.run_full), ("fast", args.run_fast))


if __name__ == "__main__":
    main()
