"""Would a neural-network classifier of the features help the detector? (research check, #10)

    python scripts/network_classifier_probe.py RUN [--out FILE]   # RUN: a run with `make validate`

The validation says the gradient-boosted `classifier` is underfitted (400 boosting iterations
instead of 50 validate +0.009, at 6x its prediction time). A small multilayer perceptron on the
quantile-normalised features costs about 0.05 MFLOP an object (the VAE pass is 2.8), so capacity
would be nearly free at scoring time. Candidates, each scored by 1 - its largest class
probability, as the shipped classifier is:

- `mlp`: scikit-learn's `MLPClassifier` (two hidden layers of 256 and 128, ReLU, Adam, L2 1e-3,
  early stopping on 10% of the fitting rows), the classes balanced by repeating rows as the
  shipped classifier does;
- `mlp_ensemble`: the mean probabilities of five such networks from different seeds (a deep
  ensemble, Lakshminarayanan et al. 2017: better calibrated away from the training data);
- `logistic`: a multinomial logistic regression (the linear baseline).

Per fold, per kind (galactic or not), fitted on the train split's other known classes and
calibrated on the val split's other known objects of the same kind, scored on the val split and
the held-out class, exactly as `validate` does for the package's components (reads the run's
`validation/scores.parquet`, and the train and val splits of its dataset; never the test split).
Prints each candidate alone, added to the shipped fusion, in place of the shipped classifier, and
the best fusion found by `Folds.search` with it; the adoption rule is docs/evaluation.md's (a
candidate replaces the shipped configuration only if its best fusion beats the shipped one by
more than twice the standard error of the paired per-fold differences).

Result (default-rare run, docs/evaluation.md): alone 0.575-0.606 against the trees' 0.736; the
best fusion with any of them 0.814, as without: not adopted.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from validation_probe import paired, probe_arguments, read_validation, table_rows

from plasticc_jax.calibration import Reference
from plasticc_jax.components import balanced_rows
from plasticc_jax.config import EvalConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES

CANDIDATES = ("mlp", "mlp_ensemble", "logistic")
ENSEMBLE = 5


def _mlp(seed: int) -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=(256, 128),
        alpha=1e-3,
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=200,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=seed,
    )


def probabilities(kind: str, x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n, classes) probabilities of `x` by the candidate `kind` fitted on balanced rows."""
    if np.unique(y_fit).size < 2:
        return np.ones((len(x), 1))
    rows = balanced_rows(y_fit)
    if kind == "logistic":
        models = [LogisticRegression(C=1.0, max_iter=2000)]
    else:
        models = [_mlp(seed) for seed in range(ENSEMBLE if kind == "mlp_ensemble" else 1)]
    return np.mean([m.fit(x_fit[rows], y_fit[rows]).predict_proba(x) for m in models], axis=0)


def fold_columns(objects: pd.DataFrame, held_out: int) -> pd.DataFrame:
    """The candidates' calibrated scores of one fold's scored objects."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    # As train does: the feature statistics of the fold's training objects.
    x = FeatureStats.fit(FEATURE_NAMES, raw[fit_all]).normalise(raw)
    scored = (split == "val") | (target == held_out)
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    for kind in CANDIDATES:
        column = np.zeros(len(objects))
        for g in (True, False):
            fit = fit_all & (galactic == g)
            val = (split == "val") & (target != held_out) & (galactic == g)
            rows = scored & (galactic == g)
            both = val | rows
            raw_score = np.zeros(len(objects))
            p = probabilities(kind, x[fit], target[fit], x[both])
            raw_score[both] = 1.0 - p.max(axis=1)
            column[rows] = Reference.fit(raw_score[val]).tail_score(raw_score[rows])
        out[kind] = column[scored]
    return out


def main() -> None:
    args = probe_arguments(__doc__, "runs/network-classifier/scores.parquet")
    start = time.perf_counter()
    _, scores, objects = read_validation(args.run, args.workdir)
    fold_ids = [int(f) for f in scores["fold"].unique()]
    new = pd.concat([fold_columns(objects, f) for f in fold_ids], ignore_index=True)
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    assert not table[list(CANDIDATES)].isna().any().any(), "a scored object without new scores"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"candidates fitted in {time.perf_counter() - start:.0f} s")

    folds = Folds(table)
    shipped = parse_fusion(EvalConfig().fusion)
    base = folds.fused(shipped)
    best_shipped = folds.search(list(shipped), also=shipped)[0]["weights"]
    rows = {
        "shipped fusion": base,
        f"best found, shipped components: `{fusion_spec(best_shipped)}`": folds.fused(best_shipped),
        "classifier alone (shipped)": table["classifier"].to_numpy(),
    }
    differences = {}
    for c in CANDIDATES:
        rows[f"{c} alone"] = table[c].to_numpy()
        replaced = {(c if k == "classifier" else k): w for k, w in shipped.items()}
        rows[f"shipped weights, {c} in place of the classifier"] = folds.fused(replaced)
        best = folds.search([*shipped, c], also=shipped)[0]["weights"]
        name = f"best found with {c}: `{fusion_spec(best)}`"
        rows[name] = folds.fused(best)
        differences[name] = paired(folds, rows[name], base)
    print(f"\nnetwork classifiers ({time.perf_counter() - start:.0f} s):\n")
    table_rows(folds, rows)
    print("\npaired per-fold differences against the shipped fusion:")
    for name, text in differences.items():
        print(f"- {name}: {text}")


if __name__ == "__main__":
    main()
