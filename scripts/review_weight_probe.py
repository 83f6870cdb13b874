"""Would the review's active model gain from splitting on the scores more often? (research, #15)

    python scripts/review_weight_probe.py RUN [--workdir DIR] [--draws 4] [--out FILE]
    # RUN: with `make validate`; DIR: its project folder (default RUN/../..)

The shipped policy (`active.POLICY`: coniferest's AADForest on the VAE latent means and the
detector's scores) grows isolation trees whose every split draws one feature at random: the 16
latent means outnumber the detector's score columns, so most splits are on the latents, which
alone find few anomalies (docs/review.md: 9.8 in the first 50 on the validation, against 23.1 for
the scores alone and 27.4 for both). The candidates tilt the draw toward the scores without
dropping the latents: each score column repeated twice or three times (a tree then splits on the
scores two or three times as often), or the latents reduced to their first 8 principal
components (fitted on each pool, no label). Pools, draws and simulated expert as
`scripts/review_feature_probe.py` (the validation folds of `plasticc-jax review --simulate
--validation`: 5% of each fold's pool from the held-out class, never the test split).

Adoption rule, written before the run (as the earlier policy probes of docs/review.md): the best
candidate by anomalies among the first 50 shown must beat the shipped policy by more than twice
the standard error of the paired per-fold differences.

Result (default-rare run from a fresh clone, `make validate` then this script; 2.6 min on 2
cores): the shipped policy 27.25 in the first 50 (as in the light-curve feature probe, the same
pools and draws); scores twice 26.38 (-0.88 ± 0.51), three times 26.57 (-0.68 ± 0.60), 8 latent
components with the scores 26.70 (-0.55 ± 0.58). Every candidate is lower: not adopted. The
forest's share of splits on the latents is not what limits the loop.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from review_feature_probe import probe_arguments, simulate_groups

from plasticc_jax.review import active, validation


def with_latent_components(table: pd.DataFrame, latents: list[str], n: int) -> pd.DataFrame:
    """The pool with the first `n` principal components of its latent means (`pc_<i>`), fitted
    per fold (each fold's pool is its own; no label is used)."""
    out = table.copy()
    for i in range(n):
        out[f"pc_{i}"] = 0.0
    for _, rows in table.groupby("fold").groups.items():
        x = table.loc[rows, latents].to_numpy(np.float64)
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        out.loc[rows, [f"pc_{i}" for i in range(n)]] = x @ vt[:n].T
    return out


def main() -> None:
    args = probe_arguments(__doc__, "review_weight_probe.json")
    workdir = args.workdir or args.run.parent.parent
    table = validation.validation_pool(args.run, workdir)
    shipped = active.feature_columns(table, args.run / "models", active.POLICY)
    latents = active.latent_columns(shipped)
    scores = [c for c in shipped if c not in latents]
    table = with_latent_components(table, latents, 8)
    print(f"{len(latents)} latent means, {len(scores)} score columns: {', '.join(scores)}")
    groups = {
        "shipped (latents + scores)": shipped,
        "latents + scores x2": latents + scores * 2,
        "latents + scores x3": latents + scores * 3,
        "8 latent components + scores": [f"pc_{i}" for i in range(8)] + scores,
    }
    report = simulate_groups(table, groups, args.draws)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
