"""The feature distance components on the Gaussian-process features too (research, #10)

    python scripts/gp_feature_components_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The 32 Gaussian-process features (`gp_features.py`) are read by the `gp_classifier` alone; the
distance components (`feature_mahalanobis`, `feature_knn`, `feature_forest`) read the 141 features
the network reads. The process's smooth model gives colours and timescales where the raw points
are noisy or missing, which is where the supernova subtypes, the validation's weakest folds, are
told apart; the candidates are the same components fitted on all 173 features
(`feature_mahalanobis_gp`, `feature_knn_gp`, `feature_forest_gp`), quantile-normalised as the 141
are (`FeatureStats`, fitted on the fold's train known objects).

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` fits and calibrates the shipped
ones (which this script recomputes on the 141 features and checks against the stored columns).

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with the
candidates must beat the shipped fusion (`config.VALIDATED_FUSION["rare"]`) by more than twice
the standard error of the paired per-fold differences. The search: every weight 0-3 of the
shipped fusion's components and the three candidates (seven components, as many as `validate`'s
own search; a candidate in `feature_mahalanobis`'s place is the weight 0 for it).

Result (the validation of docs/evaluation.md, 105 s on 2 busy cores; the shipped components
recomputed exactly): alone `feature_mahalanobis_gp` 0.712 (0.702 on the 141), `feature_knn_gp`
0.720 (0.706; TDE 0.749 -> 0.825, RR Lyrae 0.943 -> 0.873), `feature_forest_gp` 0.674 (0.659);
the best fusion found is the shipped one with `feature_mahalanobis_gp` in its place, 0.830,
+0.0003 ± 0.0012 (5/10 folds better): not adopted.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
from validation_probe import paired, probe_arguments, read_validation, table_rows

from plasticc_jax.calibration import DEPTH_FEATURE
from plasticc_jax.components import Evidence
from plasticc_jax.config import VALIDATED_FUSION, EvalConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.detector import Detector, parse_fusion, route
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

COMPONENTS = ("feature_mahalanobis", "feature_knn", "feature_forest")


def fold_columns(objects: pd.DataFrame, held_out: int, config: EvalConfig) -> pd.DataFrame:
    """The feature components of one fold's scored objects, on the network's 141 features
    (`_again`: the shipped ones) and on all 173 (`_gp`)."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    fit = np.flatnonzero((split == "train") & (target != held_out))
    val = np.flatnonzero((split == "val") & (target != held_out))
    scored = np.flatnonzero((split == "val") | (target == held_out))
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    config = dataclasses.replace(config, components=COMPONENTS, fusion=(f"{COMPONENTS[0]}:1",))
    for suffix, names in (("_again", MODEL_FEATURE_NAMES), ("_gp", FEATURE_NAMES)):
        columns = [FEATURE_NAMES.index(n) for n in names]
        stats = FeatureStats.fit(tuple(names), raw[fit][:, columns])
        n = len(raw)
        evidence = Evidence(
            latent=np.zeros((n, 1), np.float32),
            probabilities=np.zeros((n, 0), np.float32),
            chi2=np.zeros(n),
            features=stats.normalise(raw[:, columns]),
            raw_features=raw.astype(np.float32),
            galactic=raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5,
            depth=raw[:, FEATURE_NAMES.index(DEPTH_FEATURE)],
        )
        detector = Detector.fit(
            evidence.take(fit), target[fit], evidence.take(val), target[val], config
        )
        part = evidence.take(scored)
        tails = detector.calibrated(
            detector.raw_scores(part), route(detector.components, part.galactic)
        )
        out = out.assign(**{f"{c}{suffix}": tails[c] for c in COMPONENTS})
    return out


def main() -> None:
    args = probe_arguments(__doc__, "runs/gp-feature-components/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    fold_ids = [int(f) for f in scores["fold"].unique()]
    new = pd.concat([fold_columns(objects, f, config.eval) for f in fold_ids], ignore_index=True)
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    assert not table[new.columns].isna().any().any(), "a scored object without new scores"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"components: {time.perf_counter() - start:.0f} s")
    for c in COMPONENTS:  # the recomputation reproduces the stored columns
        print(f"{c}: max |recomputed - stored| {np.abs(table[c] - table[c + '_again']).max():.2e}")

    folds = Folds(table)
    shipped = parse_fusion(VALIDATED_FUSION[config.data.protocol])
    gp = [f"{c}_gp" for c in COMPONENTS]
    swapped = {(f"{c}_gp" if c in COMPONENTS else c): w for c, w in shipped.items()}
    rows = {"shipped fusion": folds.fused(shipped)}
    rows |= {c: table[c].to_numpy() for c in [*COMPONENTS, *gp]}
    rows["shipped weights, the feature components on all features"] = folds.fused(swapped)
    # Every weight of the seven: `search` keeps the six best singles and everything in `also`.
    searched = [*shipped, *gp]
    tried = folds.search(searched, searched)
    best = tried[0]["weights"]
    rows[f"best found: {fusion_spec(best)}"] = folds.fused(best)
    table_rows(folds, rows)
    base = rows["shipped fusion"]
    for name in list(rows)[-2:]:
        print(f"{name}: {paired(folds, rows[name], base)}")
    print(f"total: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
