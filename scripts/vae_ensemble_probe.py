"""Would two VAEs trained with different seeds (a deep ensemble) find held-out classes better
than one? (research check, issue #10)

    python scripts/vae_ensemble_probe.py RUN_SEED0 RUN_SEED1

Each RUN has `make validate` done with the same settings but `train.seed` (0 and 1: `plasticc-jax
validate --set train.seed=1`). Reads both `validation/scores.parquet` (the leave-one-known-class-
out fold scores: known classes only, never the test split). The fold networks differ; the
components that read only the features (`classifier`, `gp_classifier`, `feature_*`) are the same
in both. The ensemble's score of a network's component (`latent_knn`, `latent_mahalanobis`,
`latent_forest`, `head_maxprob`, `recon_chi2`) is the mean of the two seeds' calibrated scores,
calibrated again against the fold's val known objects of the same detector group (as each
component is); the fusion is then computed as the detector computes it (`fusion_search.Folds`).

The rule, written before the first run of this script:
- candidate: the shipped fusion (`config.VALIDATED_FUSION["rare"]`) on the ensemble's components;
- baseline: the same fusion on one network, each fold's AUROC the mean of seed 0's and seed 1's
  (what one network of either seed is expected to give);
- build it only if the mean of the paired per-fold differences exceeds twice its standard error.
  It would cost a second network: twice the training time and twice the network's pass when
  scoring (about 70% of `score`'s time). The best fusion found on the ensemble is printed for
  information only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax.config import VALIDATED_FUSION
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec

NETWORK_COMPONENTS = (
    "latent_knn",
    "latent_mahalanobis",
    "latent_forest",
    "head_maxprob",
    "recon_chi2",
)
KEY = ["fold", "object_id"]


def ensemble(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """`first` with each network component the recalibrated mean of both seeds' scores."""
    second = second.set_index(KEY).loc[pd.MultiIndex.from_frame(first[KEY])]
    folds = Folds(first)
    out = first.copy()
    for name in NETWORK_COMPONENTS:
        mean = (first[name].to_numpy() + second[name].to_numpy()) / 2
        out[name] = folds.recalibrated(mean)
    return out


def paired(candidate: dict[int, float], baseline: dict[int, float]) -> tuple[float, float, int]:
    diff = np.array([candidate[f] - baseline[f] for f in sorted(candidate)])
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size)), int((diff > 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_seed0", type=Path)
    parser.add_argument("run_seed1", type=Path)
    args = parser.parse_args()
    seeds = [
        pd.read_parquet(r / "validation" / "scores.parquet")
        for r in (args.run_seed0, args.run_seed1)
    ]
    for name in ("classifier", "gp_classifier", "feature_mahalanobis"):
        joined = seeds[0].merge(seeds[1], on=KEY)
        same = np.allclose(joined[f"{name}_x"], joined[f"{name}_y"])
        print(f"{name}: {'the same' if same else 'DIFFERENT'} in both seeds")
    shipped = parse_fusion(VALIDATED_FUSION["rare"])
    single = [Folds(s) for s in seeds]
    per_seed = [f.aurocs(f.fused(shipped)) for f in single]
    baseline = {fold: (per_seed[0][fold] + per_seed[1][fold]) / 2 for fold in per_seed[0]}
    both = Folds(ensemble(*seeds))
    candidate = both.aurocs(both.fused(shipped))
    print(f"shipped fusion `{VALIDATED_FUSION['rare']}`:")
    for label, aurocs in (
        ("seed 0", per_seed[0]),
        ("seed 1", per_seed[1]),
        ("ensemble", candidate),
    ):
        print(
            f"  {label:9s} {np.mean(list(aurocs.values())):.4f}  "
            + " ".join(f"{aurocs[f]:.3f}" for f in sorted(aurocs))
        )
    mean, se, better = paired(candidate, baseline)
    verdict = "passes" if mean > 2 * se else "does not pass"
    print(
        f"ensemble - one network (mean of seeds): {mean:+.4f} ± {se:.4f} "
        f"({better}/10 folds better): {verdict} the rule"
    )
    for name in NETWORK_COMPONENTS:
        alone = [f.mean_auroc(f.scores[name].to_numpy()) for f in (*single, both)]
        print(f"  {name:20s} seeds {alone[0]:.3f} / {alone[1]:.3f}, ensemble {alone[2]:.3f}")
    components = [
        c
        for c in seeds[0].columns
        if c
        in (
            *NETWORK_COMPONENTS,
            "classifier",
            "gp_classifier",
            "feature_mahalanobis",
            "feature_knn",
            "feature_forest",
        )
    ]
    best = both.search(components, also=shipped)[0]
    spec = fusion_spec(best["weights"])
    print(
        f"for information, the best fusion found on the ensemble: {best['mean_auroc']:.4f} `{spec}`"
    )


if __name__ == "__main__":
    main()
