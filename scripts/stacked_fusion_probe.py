"""A learned fusion: a model of "held-out class or not" trained on the other folds (research, #10)

    python scripts/stacked_fusion_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped fusion is a weighted mean of the calibrated components, its weights the best of a
grid on the ten folds' mean AUROC (in sample: the same folds choose and measure them). The
candidate learns the fusion instead, from the folds themselves: every fold is a worked example of
a class the detector never saw (its held-out class, the positives) among the known val objects
(the negatives). A stacking model is trained on nine folds and scores the tenth, so each fold's
figure is out of sample. Its inputs are the fold's calibrated components, and with the context
the detector already routes by (the galactic flag) and calibrates the flag by (the depth,
`log10_peak_snr`), plus the host photo-z: a learned fusion can weigh a component differently for
faint or galactic objects, which one weighted mean cannot. Each training fold counts the same
(its positives half its weight, its negatives the other half). The held-out class of the scored
fold is dropped from the training folds' rows (there its objects are known negatives): no row
of the scored fold's class enters the model that scores it, nor any row of the objects it
scores (the objects are cut in two halves, each scored by models trained on the other). The
model's output is calibrated per fold and detector group against the fold's negatives, as the
shipped fusion's is.

Candidates (written before the run):
- `stack_linear`: logistic regression (L2, C = 1) on the calibrated components;
- `stack_linear_context`: the same with each component also multiplied by the galactic flag (a
  weight per kind), the depth (standardised) and the galactic flag;
- `stack_trees`: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier, 100
  iterations of depth 3, learning rate 0.1, at least 50 rows a leaf) on the components, the
  galactic flag, the depth and the host photo-z.

Adoption rule, written and committed before the run (docs/evaluation.md's): the best candidate
must beat the shipped fusion (0.8292, whose weights were chosen in sample) by more than twice the
standard error of the paired per-fold differences. Shipping it would also need `evaluate` to
read a validation, a change of the pipeline's order, so a pass is a lead to build, then to
measure again.

Result (default-rare run with `make validate`, 44 s on 2 cores): stack_linear 0.774
(-0.0550 ± 0.0222, 3/10 folds better), stack_linear_context 0.778 (-0.0510 ± 0.0217, 3/10),
stack_trees 0.822 (-0.0069 ± 0.0115, 6/10) against the shipped 0.8292. Not adopted.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from validation_probe import paired, probe_arguments, read_validation, table_rows

from plasticc_jax.calibration import DEPTH_FEATURE
from plasticc_jax.config import COMPONENT_NAMES
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES

CANDIDATES = ("stack_linear", "stack_linear_context", "stack_trees")
# The val known objects are the negatives of every fold, and a class's objects are another
# fold's positives: the objects are cut in halves, and a fold's objects of one half are scored
# by models that saw none of that half's objects in any fold.
HALVES = 2


def inputs(table: pd.DataFrame, components: list[str], candidate: str) -> np.ndarray:
    """The stacking model's inputs of every row of `table` for one candidate."""
    x = table[components].to_numpy(np.float64)
    galactic = table["galactic"].to_numpy(np.float64)[:, None]
    depth = table["depth"].to_numpy(np.float64)[:, None]
    if candidate == "stack_linear":
        return x
    if candidate == "stack_linear_context":
        return np.hstack([x, x * galactic, depth, galactic])
    return np.hstack([x, galactic, depth, table[["photoz"]].to_numpy(np.float64)])


def model(candidate: str):
    if candidate == "stack_trees":
        return HistGradientBoostingClassifier(
            max_iter=100, max_depth=3, learning_rate=0.1, min_samples_leaf=50, random_state=0
        )
    return LogisticRegression(C=1.0, max_iter=2000)


def fold_weights(table: pd.DataFrame) -> np.ndarray:
    """Each fold the same total weight, its positives half of it."""
    weight = np.zeros(len(table))
    for _, rows in table.groupby("fold").indices.items():
        positive = table["positive"].to_numpy(bool)[rows]
        weight[rows] = np.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum())
    return weight


def stacked(table: pd.DataFrame, components: list[str], candidate: str) -> np.ndarray:
    """Each fold's rows scored by the candidate trained on the other folds, without their rows
    of the fold's held-out class, nor of the objects scored (`HALVES`); the log-odds, not yet
    calibrated."""
    x = inputs(table, components, candidate)
    fold, target = table["fold"].to_numpy(), table["target"].to_numpy()
    y, weight = table["positive"].to_numpy(bool), fold_weights(table)
    ids = table["object_id"].to_numpy()
    unique = np.unique(ids)
    halves = np.random.default_rng(0).integers(HALVES, size=unique.size)[
        np.searchsorted(unique, ids)
    ]
    out = np.zeros(len(table))
    for held_out in np.unique(fold):
        for h in range(HALVES):
            train = (fold != held_out) & (target != held_out) & (halves != h)
            scaler = StandardScaler().fit(x[train])
            fitted = model(candidate).fit(
                scaler.transform(x[train]), y[train], sample_weight=weight[train]
            )
            rows = (fold == held_out) & (halves == h)
            out[rows] = fitted.decision_function(scaler.transform(x[rows]))
    return out


def main() -> None:
    args = probe_arguments(__doc__, "runs/probes/stacked_fusion.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    raw = np.stack(objects["raw"].to_numpy())
    context = pd.DataFrame(
        {
            "object_id": objects["object_id"].to_numpy(),
            "depth": raw[:, FEATURE_NAMES.index(DEPTH_FEATURE)],
            "photoz": raw[:, FEATURE_NAMES.index("hostgal_photoz")],
        }
    )
    table = scores.merge(context, on="object_id", how="left", validate="many_to_one")
    table["depth"] = table["depth"].fillna(table["depth"].median())
    components = [c for c in COMPONENT_NAMES if c in table.columns]
    missing = int(table[components].isna().to_numpy().sum())
    print(f"components {components}; NaN cells {missing}")
    folds = Folds(table)
    shipped = parse_fusion(config.eval.fusion)
    rows = {f"shipped fusion `{fusion_spec(shipped)}`": folds.fused(shipped)}
    for candidate in CANDIDATES:
        table[candidate] = stacked(table, components, candidate)
        rows[candidate] = folds.recalibrated(table[candidate].to_numpy())
    print(f"fitted in {time.perf_counter() - start:.0f} s\n")
    table_rows(folds, rows)
    base = rows[next(iter(rows))]
    print()
    for candidate in CANDIDATES:
        print(f"{candidate} - shipped: {paired(folds, rows[candidate], base)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)


if __name__ == "__main__":
    main()
