"""Would a detector that knows the stage calibrate partial light curves better? (research, #12)

    python scripts/stage_calibration_probe.py RUN [RUN ...]
    # RUN: a run with `make validate CONFIG=early`

The early preset's detector calibrates each component, the fusion and the threshold once, on the
val known objects' complete and one partial light curve pooled over stages. A detector that knows
how long an object has been detected could calibrate against the val known objects at the same
stage instead. This probe recomputes that from validate's stored stage scores
(`validation/stages.parquet`; no network, no test data): per fold, group and stage, each
component's calibrated score calibrated again (`calibration.Reference`) against the fold's val
known objects of the other classes at that stage and of that group, the shipped fusion's weighted
mean of them calibrated the same way, and the fold AUROC at that stage as `validate` measures it
(`fusion_search.StageFolds`: an object without a row then ranks last). Several RUNs (e.g. two
training seeds) are averaged per fold before the paired differences.

The reference objects are the fold's negatives themselves (as everywhere in the validation:
docs/evaluation.md), so the per-stage flag rate would be exactly on target there; the AUROC moves
through how the groups' scores interleave and how the components are weighed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax.calibration import Reference
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import StageFolds, weighted_mean

STAGES = (2.0, 5.0, 10.0, 20.0, 50.0)


def per_stage_fused(folds: StageFolds, weights: dict[str, float], days: float) -> np.ndarray:
    """The fused score of every row of `folds.scores`, calibrated per fold, group and stage."""
    scores = folds.scores
    # The fold's negatives at this stage: the val known objects of the other classes (their rows
    # at this stage, the detector's calibration rows among them).
    stage = scores["stage"].to_numpy(np.float64)
    negative_rows = (stage == days) & ~scores["positive"].to_numpy(bool)
    recalibrated = scores.copy()
    references = []
    for members, shipped_reference in folds.groups:
        reference = members[negative_rows[members]]
        if reference.size < 2:  # too few at this stage: the shipped calibration's reference
            reference = shipped_reference
        references.append((members, reference))
        for name in weights:
            x = scores[name].to_numpy()
            recalibrated.loc[members, name] = Reference.fit(x[reference]).tail_score(x[members])
    mean = weighted_mean(recalibrated, weights)
    out = np.zeros(len(scores))
    for members, reference in references:
        out[members] = Reference.fit(mean[reference]).tail_score(mean[members])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    per_run = []
    for run in args.runs:
        validation = json.loads((run / "validation" / "validation.json").read_text())
        weights = parse_fusion(validation["config"]["eval"]["fusion"])
        stages = pd.read_parquet(run / "validation" / "stages.parquet")
        table = {}
        for days in STAGES:
            folds = StageFolds(stages, days)
            table[days] = (
                folds.aurocs(folds.fused(weights)),
                folds.aurocs(per_stage_fused(folds, weights, days)),
            )
        per_run.append(table)
    print(f"runs: {', '.join(map(str, args.runs))} (per fold, the mean over the runs)\n")
    head = ["days", "shipped calibration", "per-stage calibration", "difference (folds better)"]
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|")
    for days in STAGES:
        ids = sorted(per_run[0][days][0])
        shipped = np.array([np.mean([t[days][0][f] for t in per_run]) for f in ids])
        staged = np.array([np.mean([t[days][1][f] for t in per_run]) for f in ids])
        d = staged - shipped
        se = d.std(ddof=1) / np.sqrt(d.size)
        print(
            f"| {days:g} | {shipped.mean():.4f} | {staged.mean():.4f} | "
            f"{d.mean():+.4f} ± {se:.4f} ({(d > 0).sum()}/{d.size}) |"
        )


if __name__ == "__main__":
    main()
