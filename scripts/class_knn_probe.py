"""Latent kNN distances measured class by class (research, #10)

    python scripts/class_knn_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The shipped `latent_knn` is the mean distance to the 10 nearest fitting objects of any known
class, so an object near a large, dense class (SN Ia, 40% of the extragalactic objects) looks
more typical than one as near a small, spread-out class (SN Iax, TDE), and the val objects of
the small classes fill the tail its calibration is made on. The candidates ask instead "is the
object typical of some known class?", one class at a time, in the fold VAE's latent space:

- `class_knn`: for each known class, the mean distance to its 10 nearest fitting objects of that
  class divided by the median of the same distance among the class's own fitting objects (each
  leaving itself out); the score is the smallest ratio over the classes;
- `class_knn_raw`: the same without dividing (the distance to the nearest class, by kNN).

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` fits and calibrates
`latent_knn` (which this script recomputes from the fold's VAE and checks against the stored
column). Each fold's latent means come from that fold's own VAE.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with a
candidate (in `latent_knn`'s place or beside it) must beat the shipped fusion by more than twice
the standard error of the paired per-fold differences.

Result (the fresh validation of scripts/vae_settings_probe.py's shipped row; 27 s on 2 cores;
`latent_knn` recomputed exactly): alone `class_knn` 0.728 and `class_knn_raw` 0.740 against
`latent_knn`'s 0.740; in its place the best fusions found 0.813 (-0.0012 ± 0.0016) and 0.814
(-0.0001 ± 0.0001); beside it the search gives either weight 0. Not adopted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from latent_classifier_probe import fold_latent_loader
from sklearn.neighbors import NearestNeighbors
from validation_probe import paired, probe_arguments, read_validation, table_rows, with_fold_columns

from plasticc_jax.calibration import Reference
from plasticc_jax.config import Config
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES

K = 10
CANDIDATES = ("class_knn", "class_knn_raw")


def mean_knn(
    reference: np.ndarray, query: np.ndarray, k: int, skip_self: bool = False
) -> np.ndarray:
    """Mean distance of each query row to its k nearest reference rows (the first left out when
    the query is the reference itself)."""
    k = min(k, len(reference) - int(skip_self))
    distance, _ = NearestNeighbors().fit(reference).kneighbors(query, n_neighbors=k + skip_self)
    return distance[:, int(skip_self) :].mean(axis=1)


def class_scorer(
    latent: np.ndarray, labels: np.ndarray
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The candidates (and `latent_knn` again) fitted on one kind's fitting objects: a scorer of
    latent rows giving each one's scores by name."""
    classes = np.unique(labels)
    members = [latent[labels == c] for c in classes]
    scale = np.array([np.median(mean_knn(m, m, K, skip_self=True)) for m in members])

    def scores(rows: np.ndarray) -> dict[str, np.ndarray]:
        distances = np.stack([mean_knn(m, rows, K) for m in members], axis=1)  # (rows, classes)
        return {
            "latent_knn_again": mean_knn(latent, rows, K),
            "class_knn": (distances / scale).min(axis=1),
            "class_knn_raw": distances.min(axis=1),
        }

    return scores


# A scorer fitted on one kind's fitting latents and classes: latent rows -> scores by name.
Scorer = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], dict[str, np.ndarray]]]


def fold_columns(
    objects: pd.DataFrame,
    latents: np.ndarray,
    held_out: int,
    scorer: Scorer = class_scorer,
    names: tuple[str, ...] = ("latent_knn_again", *CANDIDATES),
) -> pd.DataFrame:
    """The scores `names` of `scorer` for one fold's scored objects, fitted per kind on the
    train split's other known classes and calibrated on the val split's other known objects."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    latents = latents.astype(np.float32)  # as the detector holds them
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    columns = {name: np.zeros(len(objects)) for name in names}
    for g in (True, False):
        fit = fit_all & (galactic == g)
        if not fit.any():
            continue
        score = scorer(latents[fit], target[fit])
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        references, scored_rows = score(latents[val]), score(latents[rows])
        for name in names:
            columns[name][rows] = Reference.fit(references[name]).tail_score(scored_rows[name])
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    for name, column in columns.items():
        out[name] = column[scored]
    return out


def report(table: pd.DataFrame, config: Config, candidates: tuple[str, ...], shipped: str) -> None:
    """Each candidate alone, in the `shipped` component's place and beside it (best fusions
    found), against the shipped fusion, with the paired per-fold differences."""
    folds = Folds(table)
    fusion = parse_fusion(config.eval.fusion)
    base = folds.fused(fusion)
    rows = {"shipped fusion": base, f"{shipped} (shipped)": table[shipped].to_numpy()}
    compared = {}
    for name in candidates:
        rows[f"{name} alone"] = table[name].to_numpy()
        replaced = {(name if k == shipped else k): w for k, w in fusion.items()}
        if shipped not in fusion:  # a component the fusion does not weigh: beside it only
            replaced = {**fusion, name: 1.0}
        best_replaced = folds.search(list(replaced), also=replaced)[0]["weights"]
        best_beside = folds.search([*fusion, name], also=fusion)[0]["weights"]
        compared[f"{name} in {shipped}'s place, best found `{fusion_spec(best_replaced)}`"] = (
            folds.fused(best_replaced)
        )
        compared[f"{name} beside, best found `{fusion_spec(best_beside)}`"] = folds.fused(
            best_beside
        )
    table_rows(folds, {**rows, **compared})
    print("\npaired per-fold differences against the shipped fusion:")
    for name, values in compared.items():
        print(f"- {name}: {paired(folds, values, base)}")


def main() -> None:
    args = probe_arguments(__doc__, "runs/class-knn/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    latents_of = fold_latent_loader(args.run, args.workdir, config)
    make = lambda fold: fold_columns(objects, latents_of(fold), fold)  # noqa: E731
    table = with_fold_columns(scores, make, args.out)
    again = np.abs(table["latent_knn_again"] - table["latent_knn"]).max()
    print(f"latent_knn recomputed: max |again - stored| {again:.2e}")
    print(f"({time.perf_counter() - start:.0f} s)")
    report(table, config, CANDIDATES, "latent_knn")


if __name__ == "__main__":
    main()
