"""Supervised tree proximity as a feature distance (research, #10)

    python scripts/tree_proximity_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The shipped feature distances (`feature_mahalanobis`, `feature_knn`) weigh every
quantile-normalised feature alike, so the features that tell the supernova subtypes apart (the
validation's weakest folds) are drowned by the many that do not: alone they score those folds
0.42-0.61. A random forest trained to tell the known classes apart measures closeness only along
the features that separate them (Breiman's proximity: the share of trees in which two objects
end in the same leaf). An object of a known class keeps landing beside the same known objects;
one of a new class lands beside different ones in different trees. Candidates, on all 173 raw
features (NaN where undefined: the trees route it), a forest of 300 fully grown trees
(`max_features` sqrt, balanced class weights, fixed seed) per fold and kind:

- `proximity_knn`: 1 - the mean proximity to the 10 nearest fitting objects;
- `proximity_class`: Breiman's outlyingness toward the forest's most probable class, the
  inverse of the sum of squared proximities to that class's fitting objects, divided by the
  median of the same among the class's own fitting objects (so a large class does not look
  tighter than a small one).

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` fits and calibrates
`feature_mahalanobis`; the shipped `feature_knn` is recomputed and checked against the stored
column.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with a
candidate (in `feature_mahalanobis`' place or beside it) must beat the shipped fusion by more
than twice the standard error of the paired per-fold differences.

Result (a fresh clone's `make prepare train evaluate validate`, 2026-12-05; 54 s on 2 cores;
`feature_knn` recomputed exactly): alone `proximity_knn` 0.709 and `proximity_class` 0.663
against `feature_mahalanobis`' 0.702 and `feature_knn`'s 0.706, better where the feature
distances fail (SN Ibc 0.700 against 0.484, SN Iax 0.660 against 0.439, SN Ia 0.693 against
0.432) and worse where they succeed (TDE 0.462, AGN 0.716, RR Lyrae 0.649): the forest learns
what the `gp_classifier` learns. In `feature_mahalanobis`' place the best fusions found 0.821
(-0.0085 ± 0.0101 and -0.0086 ± 0.0098); beside it the search gives either weight 0. Not
adopted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from class_knn_probe import K, fold_columns, mean_knn, report
from scipy import sparse
from sklearn.ensemble import RandomForestClassifier
from validation_probe import probe_arguments, read_validation, with_fold_columns

from plasticc_jax.dataset import FeatureStats
from plasticc_jax.gridding import MODEL_FEATURE_NAMES

CANDIDATES = ("proximity_knn", "proximity_class")
TREES = 300


def leaf_matrix(forest: RandomForestClassifier, x: np.ndarray) -> sparse.csr_matrix:
    """(rows, all leaves) one-hot of the leaf each row reaches in each tree."""
    leaves = forest.apply(x)  # (rows, trees) node index per tree
    offsets = np.cumsum([0] + [t.tree_.node_count for t in forest.estimators_])
    columns = (leaves + offsets[:-1]).ravel()
    rows = np.repeat(np.arange(len(x)), leaves.shape[1])
    shape = (len(x), offsets[-1])
    return sparse.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)), shape=shape)


def proximity_scorer(
    raw: np.ndarray, labels: np.ndarray, normalise: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The candidates (and `feature_knn` again) fitted on one kind's fitting objects: a scorer
    of raw feature rows giving each one's scores by name."""
    forest = RandomForestClassifier(
        n_estimators=TREES, class_weight="balanced", random_state=0, n_jobs=2
    ).fit(raw, labels)
    fitted = leaf_matrix(forest, raw).T.tocsc()
    classes = forest.classes_
    member = [labels == c for c in classes]
    own = (leaf_matrix(forest, raw) @ fitted).toarray() / TREES
    np.fill_diagonal(own, 0.0)
    scale = np.array(
        [np.median(1.0 / np.maximum((own[m][:, m] ** 2).sum(axis=1), 1e-12)) for m in member]
    )
    reference = normalise(raw)

    def scores(rows: np.ndarray) -> dict[str, np.ndarray]:
        proximity = (leaf_matrix(forest, rows) @ fitted).toarray() / TREES  # (rows, fitting)
        nearest = -np.sort(-proximity, axis=1)[:, :K]
        guess = forest.predict_proba(rows).argmax(axis=1)
        outlying = np.empty(len(rows))
        for k, m in enumerate(member):
            mine = guess == k
            squared = (proximity[np.ix_(mine, m)] ** 2).sum(axis=1)
            outlying[mine] = 1.0 / np.maximum(squared, 1e-12) / scale[k]
        return {
            "feature_knn_again": mean_knn(reference, normalise(rows), K),
            "proximity_knn": 1.0 - nearest.mean(axis=1),
            "proximity_class": outlying,
        }

    return scores


def main() -> None:
    args = probe_arguments(__doc__, "runs/tree-proximity/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    raw = np.stack(objects["raw"].to_numpy())
    network = slice(0, len(MODEL_FEATURE_NAMES))

    def make(fold: int):
        fit = (objects["split"].to_numpy() == "train") & (objects["target"].to_numpy() != fold)
        stats = FeatureStats.fit(MODEL_FEATURE_NAMES, raw[fit][:, network])

        def scorer(x: np.ndarray, labels: np.ndarray):
            return proximity_scorer(x, labels, lambda r: stats.normalise(r[:, network]))

        return fold_columns(objects, raw, fold, scorer, ("feature_knn_again", *CANDIDATES))

    table = with_fold_columns(scores, make, args.out)
    again = np.abs(table["feature_knn_again"] - table["feature_knn"]).max()
    print(f"feature_knn recomputed: max |again - stored| {again:.2e}")
    print(f"({time.perf_counter() - start:.0f} s)")
    report(table, config, CANDIDATES, "feature_mahalanobis")


if __name__ == "__main__":
    main()
