"""One-vs-rest trees instead of a softmax over the known classes (research, #10)

    python scripts/ovr_classifier_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The `gp_classifier` scores an object by 1 - its largest class probability, and its probabilities
are a softmax over the known classes: they sum to one, so an object unlike every known class is
still given to one of them with confidence when the others are less likely still (the softmax's
over-confidence away from the data, the reason open-set recognition uses one-vs-rest outputs
instead: Shu et al. 2017, "DOC: Deep Open Classification"). The candidate asks each known class
separately: one binary gradient-boosted model per class ("this class" against the other known
classes), and the score is 1 - the largest of their probabilities, which can be low for every
class at once. Same rows (classes balanced as the `gp_classifier`'s), features (all 173, the
Gaussian-process ones included), settings (50 iterations, learning rate 0.1, 15 leaves, the seed)
and so the same number of trees to fit and to predict (a multi-class model fits one tree per
class per iteration). Fitted per fold and kind on the train split's other known classes and
calibrated on the val split's other known objects of the kind, as `validate` does it; the
`gp_classifier` is recomputed the same way and checked against the stored column.

Adoption rule, written and committed before the run (docs/evaluation.md's): the best fusion
found with the candidate in the `gp_classifier`'s place, or beside it, must beat the shipped
fusion by more than twice the standard error of the paired per-fold differences; beside it (twice
the trees to predict) only if scoring then stays at 20,000 objects/s or more, measured before any
test-split evaluation.

Result (default-rare run with `make validate`; 5.3 min on 2 cores shared with an audit, 55 s
when run again alone; the `gp_classifier` recomputed exactly, max difference 0): alone 0.745
against the `gp_classifier`'s 0.766 (AGN 0.659 -> 0.561, TDE 0.678 -> 0.625; SN Iax 0.732 ->
0.744); in its place, with the shipped weights and the best found alike, 0.822 against 0.829
(-0.0071 ± 0.0044, 1/10 folds better); beside it, best
found `gp_classifier:2,latent_mahalanobis:1,ovr_classifier:1,feature_mahalanobis:1,recon_chi2:1`
0.830 (+0.0007 ± 0.0016, 3/10). Not adopted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from validation_probe import evidence, paired, probe_arguments, read_validation, table_rows

from plasticc_jax.calibration import Reference
from plasticc_jax.components import GpClassifier, balanced_rows, boosted_trees
from plasticc_jax.config import Config
from plasticc_jax.detector import parse_fusion
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES

CANDIDATE = "ovr_classifier"


def one_vs_rest(x: np.ndarray, y: np.ndarray, columns: np.ndarray, config: Config):
    """A scorer of raw feature rows: 1 - the largest of the per-class binary probabilities."""
    rows = balanced_rows(y)
    models = [
        boosted_trees(config.eval.classifier_iterations, config.eval.seed).fit(
            x[np.ix_(rows, columns)], y[rows] == c
        )
        for c in np.unique(y)
    ]

    def score(raw: np.ndarray) -> np.ndarray:
        p = np.column_stack([m.predict_proba(raw[:, columns])[:, 1] for m in models])
        return 1.0 - p.max(axis=1)

    return score


# A candidate in the `gp_classifier`'s place: (fitting rows' raw features, their classes, the
# shipped component's feature columns, config) -> a scorer of raw feature rows.
Candidate = Callable[
    [np.ndarray, np.ndarray, np.ndarray, Config], Callable[[np.ndarray], np.ndarray]
]


def fold_columns(
    objects: pd.DataFrame, held_out: int, config: Config, candidates: dict[str, Candidate]
) -> pd.DataFrame:
    """`gp_classifier_again` and each candidate's calibrated score for one fold's scored objects
    (see the module)."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    columns = {name: np.zeros(len(objects)) for name in ("gp_classifier_again", *candidates)}
    for g in (True, False):
        fit = fit_all & (galactic == g)
        if not fit.any():
            continue
        shipped = GpClassifier(config.eval).fit(evidence(raw[fit]), target[fit])
        scorers = {"gp_classifier_again": lambda r, m=shipped: m.score(evidence(r))}
        for name, make in candidates.items():
            if np.unique(target[fit]).size < 2:
                scorers[name] = lambda r: np.zeros(len(r))
            else:
                scorers[name] = make(raw[fit], target[fit], shipped.columns, config)
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        for name, score in scorers.items():
            columns[name][rows] = Reference.fit(score(raw[val])).tail_score(score(raw[rows]))
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    for name, column in columns.items():
        out[name] = column[scored]
    return out


def probe_gp_classifier(doc: str, out: str, candidates: dict[str, Candidate]) -> None:
    """The command of a probe of candidates in the `gp_classifier`'s place: each fitted in every
    fold (`fold_columns`), then its fold table and paired differences against the shipped fusion,
    in the component's place and beside it."""
    args = probe_arguments(doc, out)
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    fold_ids = [int(f) for f in scores["fold"].unique()]
    new = pd.concat(
        [fold_columns(objects, f, config, candidates) for f in fold_ids], ignore_index=True
    )
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    again = float(np.abs(table["gp_classifier_again"] - table["gp_classifier"]).max())
    print(f"gp_classifier recomputed: max |again - stored| {again:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"fitted in {time.perf_counter() - start:.0f} s")
    folds = Folds(table)
    shipped = parse_fusion(config.eval.fusion)
    base = folds.fused(shipped)
    # The classifier the fusion weighs (`sn`'s weighs the first one) is the one replaced.
    place = "gp_classifier" if "gp_classifier" in shipped else "classifier"
    for name in candidates:
        replaced = {(name if k == place else k): w for k, w in shipped.items()}
        best_replaced = folds.search(list(replaced), also=replaced)[0]["weights"]
        best_beside = folds.search([*shipped, name], also=shipped)[0]["weights"]
        rows = {
            f"shipped fusion `{fusion_spec(shipped)}`": base,
            "gp_classifier alone": table["gp_classifier"].to_numpy(),
            "classifier alone": table["classifier"].to_numpy(),
            f"{name} alone": table[name].to_numpy(),
            f"shipped weights, {name} in the {place}'s place": folds.fused(replaced),
            f"best found in its place: `{fusion_spec(best_replaced)}`": folds.fused(best_replaced),
            f"best found beside it: `{fusion_spec(best_beside)}`": folds.fused(best_beside),
        }
        print(f"\n### {name}\n")
        table_rows(folds, rows)
        print("\npaired per-fold differences against the shipped fusion:")
        for row in list(rows)[4:]:
            print(f"- {row}: {paired(folds, rows[row], base)}")
    print(f"({time.perf_counter() - start:.0f} s)")


def main() -> None:
    probe_gp_classifier(__doc__, "runs/ovr-classifier/scores.parquet", {CANDIDATE: one_vs_rest})


if __name__ == "__main__":
    main()
