"""Do few-point features (rise rate and colours since the first detection) help early detection?

    python scripts/early_features_probe.py --baseline RUN [RUN ...] --candidate RUN [RUN ...]
    # RUN: a run folder validated with `make validate CONFIG=early` (validation/stages.parquet)

The question (issue #12; docs/early.md's next lead for partial light curves, "features defined
on few points"): four physics features added to `features.PHYSICS_NAMES`, computed from the raw
observations known so far (so right for partial light curves):

- `rise_mag_per_day`: in the passband of the brightest detection so far, 2.5 log10(peak flux /
  flux of that band's first detection) / (t_peak - t of that first detection); NaN with fewer than
  2 detections in that band, a time difference under 0.5 day or a flux not positive;
- `colour_first_gr`, `colour_first_ri`, `colour_first_iz`: the normalised colours
  (`features._colour`) of each band's inverse-variance weighted mean flux over the observations
  in the first 5 days from the object's first detection; NaN where a band has none then.

Baseline: the code before the features; candidate: with them (dataset prepared again, the ten
fold networks retrained, since the features also feed the VAE's encoder). Both by the
leave-one-known-class-out validation (`plasticc-jax validate --config early`), no test data.

What this prints (per stage: 2, 5, 10, 20, 50 days after the first detection, and complete):
the mean over the 10 folds of the fold AUROC of the held-out known class with the early preset's
shipped fusion (configs/early.py FUSION), recomputed from each run's stored component scores
exactly as `validate` does (`fusion_search.StageFolds`; checked against the run's own
validation.json per fold and stage), for baseline and candidate, and the paired per-fold
differences candidate - baseline: mean ± standard error (ddof=1, over the 10 folds) and the
number of folds better. Several RUNs per side (training seeds) are averaged per fold first.

THE RULE, written before any run: adopt the features only if the 10-day mean paired difference
exceeds twice its standard error AND the complete-curve mean paired difference is not below -2
standard errors (of the complete-curve differences). If the 10-day difference comes out above +1
standard error with one seed, both sides are validated again with a second training seed
(`--set train.seed=1`), the AUROCs averaged per fold over the two seeds, and the rule applied to
those averages.

Result (a helper's run, reproduced by this script; one seed, each `validate` 7 min on 2 cores,
no test data): at 10 days 0.5999 against 0.6092, -0.0093 ± 0.0098 (4/10 folds better); lower at
every stage, complete -0.0062 ± 0.0062 (5/10): not adopted, no second seed (the rule asks for it
only above +1 s.e.). The components that read only the features hardly move at 10 days
(`feature_mahalanobis` +0.0005, `classifier` +0.0017); the loss is in the retrained networks'
components (`recon_chi2` -0.013, `latent_knn` -0.009), mostly on the M-dwarf fold. The features
are missing on most light curves (at 10 days `rise_mag_per_day` NaN on 82% of the train rows,
the first colours on 65%). The feature code was a research branch, not merged and not kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import StageFolds
from plasticc_jax.stages import stage_name

DAYS = (2.0, 5.0, 10.0, 20.0, 50.0, float("inf"))
HEADLINE, COMPLETE = 10.0, float("inf")


def shipped_fusion() -> tuple[str, ...]:
    path = Path(__file__).resolve().parents[1] / "plasticc_jax" / "configs" / "early.py"
    spec = importlib.util.spec_from_file_location("early_preset", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.FUSION)


def run_aurocs(run: Path, fusion: tuple[str, ...]) -> dict[float, dict[int, float]]:
    """{days: {fold: AUROC}} of one validated run with the given fusion; checked against the
    run's validation.json where it was validated with that fusion."""
    weights = parse_fusion(fusion)
    stages = pd.read_parquet(run / "validation" / "stages.parquet")
    validation = json.loads((run / "validation" / "validation.json").read_text())
    out = {}
    for days in DAYS:
        folds = StageFolds(stages, days)
        out[days] = folds.aurocs(folds.fused(weights))
    stored = validation["stages"]
    if tuple(stored["configured_fusion"].split(",")) == fusion:
        for days in DAYS:
            reported = stored["aurocs"][stage_name(days)]["folds"]
            worst = max(abs(out[days][int(f)] - v) for f, v in reported.items())
            assert set(map(int, reported)) == set(out[days]), (run, days)
            assert worst < 1e-12, f"{run} at {stage_name(days)}: off validate's by {worst}"
        print(f"{run}: matches its validation.json at every stage and fold")
    else:
        print(f"{run}: validated with {stored['configured_fusion']}, not checked")
    return out


def mean_over_runs(runs: list[Path], fusion: tuple[str, ...]) -> dict[float, dict[int, float]]:
    tables = [run_aurocs(r, fusion) for r in runs]
    return {d: {f: float(np.mean([t[d][f] for t in tables])) for f in tables[0][d]} for d in DAYS}


def compare(baseline: list[Path], candidate: list[Path]) -> None:
    """Print the table and the rule's verdict of candidate runs against baseline runs (each
    several training seeds, averaged per fold)."""
    fusion = shipped_fusion()
    print(f"fusion: {','.join(fusion)}")
    base = mean_over_runs(baseline, fusion)
    cand = mean_over_runs(candidate, fusion)
    print("\n| stage | baseline | candidate | difference, mean ± s.e. (folds better) |")
    print("|---|---|---|---|")
    summary = {}
    for days in DAYS:
        ids = sorted(base[days])
        assert ids == sorted(cand[days]), "the runs' folds differ"
        b = np.array([base[days][f] for f in ids])
        c = np.array([cand[days][f] for f in ids])
        d = c - b
        se = float(d.std(ddof=1) / np.sqrt(d.size))
        summary[days] = (float(d.mean()), se)
        print(
            f"| {stage_name(days)} | {b.mean():.4f} | {c.mean():.4f} | "
            f"{d.mean():+.4f} ± {se:.4f} ({int((d > 0).sum())}/{d.size}) |"
        )
    print("\nper fold at 10 days (baseline, candidate):")
    for f in sorted(base[HEADLINE]):
        print(f"  fold {f}: {base[HEADLINE][f]:.4f} {cand[HEADLINE][f]:.4f}")
    (m10, s10), (mc, sc) = summary[HEADLINE], summary[COMPLETE]
    adopt = m10 > 2 * s10 and mc >= -2 * sc
    print(
        f"\n10 days: {m10:+.4f} vs 2 s.e. {2 * s10:.4f}; complete: {mc:+.4f} vs -2 s.e. "
        f"{-2 * sc:.4f} -> {'ADOPT' if adopt else 'do not adopt'}"
    )
    if m10 > s10 and len(baseline) == 1:
        print("10-day difference above +1 s.e. with one seed: the rule asks for a second seed")


def main(doc: str = __doc__) -> None:
    """The command line of this comparison, described by the calling probe's `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--baseline", type=Path, nargs="+", required=True)
    parser.add_argument("--candidate", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    compare(args.baseline, args.candidate)


if __name__ == "__main__":
    main()
