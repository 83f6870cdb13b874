"""Feature distances that see beyond the known objects' range (research, #10)

    python scripts/feature_tails_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The detector's feature components (`feature_mahalanobis`, `feature_knn`, `feature_forest`) read
the features as the network does (`FeatureStats`: each through its train-split quantiles and the
normal's inverse CDF, clipped at 5 standard deviations), so a value beyond every train object's
(a peak luminosity no known class reaches, a decline faster than any) scores as the most extreme
train object does, however far beyond it lies: the very evidence an anomaly detector wants is cut
off. The candidate keeps the map inside the train range and continues it linearly beyond:
z = z(edge) + (x - edge) / s, with s the feature's robust standard deviation on that side,
(q99 - q50) / 2.326 above and (q50 - q1) / 2.326 below, capped at +-`CAP`; the same
components are fitted on it per fold and kind as `validate` fits the shipped ones (which this
script recomputes and checks against the stored columns). The network's input is unchanged.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with the
candidates must beat the shipped fusion (`config.VALIDATED_FUSION["rare"]`) by more than twice the
standard error of the paired per-fold differences. The search: every weight 0-3 of the shipped
fusion's components and the three candidates (seven components, as `validate`'s own search).

Result (the validation of docs/evaluation.md, 101 s on 2 cores; the shipped components recomputed
exactly): alone 0.701, 0.705 and 0.659 against 0.702, 0.706 and 0.659 (most cells unchanged: few
held-out objects lie beyond the train range; EB 0.991 -> 0.984); with the shipped weights -0.0007
± 0.0010; the best fusion found is the shipped one: not adopted.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
from scipy import special
from validation_probe import paired, probe_arguments, read_validation, table_rows

from plasticc_jax.calibration import DEPTH_FEATURE
from plasticc_jax.components import Evidence
from plasticc_jax.config import VALIDATED_FUSION, EvalConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.detector import Detector, parse_fusion, route
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES

COMPONENTS = ("feature_mahalanobis", "feature_knn", "feature_forest")
CAP = 50.0
Z99 = float(special.ndtri(0.99))


def with_tails(stats: FeatureStats, raw: np.ndarray) -> np.ndarray:
    """`stats.normalise(raw)`, continued linearly beyond each feature's train range."""
    z = stats.normalise(raw).astype(np.float64)
    q = stats.quantiles  # (features, 101): the 0th, 1st, ..., 100th percentiles
    for j in np.flatnonzero(~np.isnan(q).any(axis=1)):
        x = raw[:, j]
        low, high = q[j, 0], q[j, -1]
        up = max(q[j, 99] - q[j, 50], 1e-12) / Z99
        down = max(q[j, 50] - q[j, 1], 1e-12) / Z99
        above, below = x > high, x < low
        z_high = float(stats.normalise(np.full((1, raw.shape[1]), high))[0, j])
        z_low = float(stats.normalise(np.full((1, raw.shape[1]), low))[0, j])
        z[above, j] = z_high + (x[above] - high) / up
        z[below, j] = z_low - (low - x[below]) / down
    return np.clip(z, -CAP, CAP).astype(np.float32)


def fold_columns(objects: pd.DataFrame, held_out: int, config: EvalConfig) -> pd.DataFrame:
    """The feature components of one fold's scored objects, on the shipped normalisation
    (`_again`) and on the one with tails (`_tails`)."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    fit = np.flatnonzero((split == "train") & (target != held_out))
    val = np.flatnonzero((split == "val") & (target != held_out))
    scored = np.flatnonzero((split == "val") | (target == held_out))
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    config = dataclasses.replace(config, components=COMPONENTS, fusion=(f"{COMPONENTS[0]}:1",))
    columns = [FEATURE_NAMES.index(n) for n in MODEL_FEATURE_NAMES]
    model_raw = raw[:, columns]
    stats = FeatureStats.fit(MODEL_FEATURE_NAMES, model_raw[fit])
    n = len(raw)
    for suffix, features in (
        ("_again", stats.normalise(model_raw)),
        ("_tails", with_tails(stats, model_raw)),
    ):
        evidence = Evidence(
            latent=np.zeros((n, 1), np.float32),
            probabilities=np.zeros((n, 0), np.float32),
            chi2=np.zeros(n),
            features=features,
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
    args = probe_arguments(__doc__, "runs/feature-tails/scores.parquet")
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
    candidates = [f"{c}_tails" for c in COMPONENTS]
    swapped = {(f"{c}_tails" if c in COMPONENTS else c): w for c, w in shipped.items()}
    rows = {"shipped fusion": folds.fused(shipped)}
    rows |= {c: table[c].to_numpy() for c in [*COMPONENTS, *candidates]}
    rows["shipped weights, the feature components with tails"] = folds.fused(swapped)
    searched = [*shipped, *candidates]
    best = folds.search(searched, searched)[0]["weights"]
    rows[f"best found: {fusion_spec(best)}"] = folds.fused(best)
    table_rows(folds, rows)
    for name in list(rows)[-2:]:
        print(f"{name}: {paired(folds, rows[name], rows['shipped fusion'])}")
    print(f"total: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
