"""Would the classifier's class probabilities help the review's active model? (research, #15)

    python scripts/review_probability_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The supernova-subtype folds are where the active loop gains least (docs/review.md): a held-out
subtype is called a neighbouring known class with some confidence, and the shipped policy's
features (the VAE latent means and the detector's scores) hold only the largest probability. The
candidates add every known class's probability as a feature group, so that answers can teach the
forest "called SN Ia at 0.6 is what I am looking for". Per fold and kind, the gradient-boosted
classifier is refitted exactly as the fold's detector fits its `classifier` component (the train
split's objects of the other known classes; the shipped score recomputed from it is checked
against the stored one), and its probabilities of the fold's scored objects (the val split's other
known objects and the held-out class) become columns `p_<class>` (0 for the other kind's classes
and for the held-out one). They join the validation pool of `plasticc-jax review --simulate
--validation`, and each candidate runs the simulated expert on the same pools and draws. Only
train and val splits are read, never the test split. Adoption rule as the earlier policy probes'
(docs/review.md): the best candidate by anomalies among the first 50 shown must beat the shipped
policy by more than twice the standard error of the paired per-fold differences.

Result (default-rare run, docs/review.md; 5.5 min on 2 cores): latents + scores + probabilities
27.65 in the first 50 against the shipped 27.25 (+0.40 ± 1.04), scores + probabilities 25.27:
not adopted.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from review_feature_probe import probe_arguments, simulate_groups
from validation_probe import evidence, read_validation

from plasticc_jax.calibration import Reference
from plasticc_jax.components import Classifier
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.plasticc import class_name
from plasticc_jax.review import active, validation


def fold_probabilities(objects: pd.DataFrame, held_out: int, config: Config) -> pd.DataFrame:
    """One fold's scored objects: `p_<class>` of every known class, and `classifier_again`."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    known = np.unique(target)
    p = np.zeros((len(objects), known.size))
    again = np.zeros(len(objects))
    for g in (True, False):
        fit = fit_all & (galactic == g)
        model = Classifier(config.eval).fit(evidence(raw[fit]), target[fit])
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        p_val, p_rows = (model.probabilities(evidence(raw[part])) for part in (val, rows))
        p[np.ix_(rows, np.searchsorted(known, model.classes))] = p_rows
        again[rows] = Reference.fit(1.0 - p_val.max(axis=1)).tail_score(1.0 - p_rows.max(axis=1))
    out = pd.DataFrame(p[scored], columns=[f"p_{c}" for c in known])
    out.insert(0, "object_id", objects["object_id"].to_numpy()[scored])
    out.insert(0, "fold", held_out)
    out["classifier_again"] = again[scored]
    return out


def main() -> None:
    args = probe_arguments(__doc__, "review_probability_probe.json")
    start = time.perf_counter()
    workdir = args.workdir or args.run.parent.parent
    config, _, objects = read_validation(args.run, workdir)
    pool = validation.validation_pool(args.run, workdir)
    folds = [int(f) for f in pool["fold"].unique()]
    probabilities = pd.concat([fold_probabilities(objects, f, config) for f in folds])
    table = pool.merge(probabilities, on=["fold", "object_id"], how="left", validate="one_to_one")
    again = np.abs(table["classifier_again"] - table["classifier"]).max()
    print(f"classifier recomputed: max |again - stored| {again:.2e}", flush=True)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    scores = [c for c in shipped if c not in active.latent_columns(shipped)]
    p_columns = [c for c in table.columns if c.startswith("p_")]
    groups = {
        "shipped (latents + scores)": shipped,
        "latents + scores + class probabilities": shipped + p_columns,
        "scores + class probabilities": scores + p_columns,
    }
    report = simulate_groups(table, groups, args.draws)
    names = ", ".join(class_name(int(c[2:])) for c in p_columns)
    print(f"({time.perf_counter() - start:.0f} s; probabilities of {names})")
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
