"""What five bagged `gp_classifier`s would cost at scoring (research, #10; speed only)

    python scripts/classifier_ensemble_speed.py RUN [--workdir DIR] [--rounds N]
    # RUN: an evaluated run (make prepare train evaluate)

`classifier_disagreement_probe.py` found five bagged classifiers better than the one shipped.
This measures, side by side in one process, on the run's train split (known objects only; no
score is looked at) repeated to 16,384 objects: the run's whole scoring (`Scorer.table`: the VAE
pass, the detector and the table), the shipped `gp_classifier`'s scores and the five models'
(fitted per kind on the train split as `classifier_disagreement_probe.py` fits them). The rate
with the ensemble is derived: the whole scoring's time, less the shipped classifier's, plus the
ensemble's.

Result (the default run of a fresh clone, 2026-12-05, 2 cores, three alternating rounds, 23 s in
all): the whole scoring 713-860 ms for 16,384 objects (19,102 objects/s, the median), the
`gp_classifier` 102-106 ms, the five models 511-524 ms (5.0x): with them 12,916 objects/s, 0.68x,
against the 20,000 target. `make bench`'s `bench_score.py --run` on the same day measured the
shipped scoring at 22,138-31,284 objects/s by batch size: with the five models' extra 409-418 ms
per 16,384 objects, 14,200-17,500 (derived), still below it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from classifier_disagreement_probe import ensemble_scorer

from plasticc_jax import runs
from plasticc_jax.dataset import load_split
from plasticc_jax.detector import route
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.scoring import Scorer

ROWS = 16_384


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--workdir", type=Path, help="project folder (default: the run's)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = runs.read_config(args.run)
    workdir = args.workdir or args.run.parent.parent
    train = load_split(workdir / config.data.dataset_dir, "train")
    known = np.isin(train.target, config.data.known_classes)
    arrays = train.take(np.resize(np.flatnonzero(known), ROWS))
    raw = np.asarray(arrays.features, np.float32)
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    scorer = Scorer.load(args.run)
    groups = route(scorer.detector.components, galactic)
    fit_raw = np.asarray(train.features[known], np.float32)
    fit_groups = route(
        scorer.detector.components, fit_raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    )
    shipped, ensembles, rows = {}, {}, {}
    for group, fitted in scorer.detector.components.items():
        rows[group] = raw[groups == group]
        shipped[group] = fitted["gp_classifier"]
        mine = fit_groups == group
        ensembles[group] = ensemble_scorer(fit_raw[mine], train.target[known][mine], config)

    def timed(work) -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    def one(model) -> None:
        for group, r in rows.items():
            model[group](r)

    shipped_score = {
        g: (lambda r, m=m: m.model.predict_proba(r[:, m.columns])) for g, m in shipped.items()
    }
    times = {"whole scoring": [], "gp_classifier": [], "five models": []}
    scorer.table(arrays, "train")  # compiled and warm
    for _ in range(args.rounds):
        times["whole scoring"].append(timed(lambda: scorer.table(arrays, "train")))
        times["gp_classifier"].append(timed(lambda: one(shipped_score)))
        times["five models"].append(timed(lambda: one(ensembles)))
    for name, values in times.items():
        print(f"{name}: {', '.join(f'{v * 1000:.0f}' for v in values)} ms for {ROWS:,} objects")
    whole, single, five = (np.median(v) for v in times.values())
    derived = ROWS / (whole - single + five)
    print(
        f"objects/s: shipped {ROWS / whole:,.0f}, with the five models {derived:,.0f} (the five "
        f"models {five / single:.1f}x the shipped classifier's time)"
    )


if __name__ == "__main__":
    main()
