"""Default preset: the quick CPU run on the real PLAsTiCC training set, `rare` protocol.

Command: `make prepare train evaluate` (each stage: `plasticc-jax <stage> --config default`).
Runtime on 2 CPU cores, with the venv built and the data in data/raw: 2 min 2 s for the three
stages (prepare 14 s, train 51 s for 40 epochs, evaluate 47 s with the UMAP; measured with other
jobs on the machine, load average about 3).
Expected result (measured; the same seed gives the same numbers on the same machine): 40 epochs,
best val loss -0.1772 at epoch 33; on the test split (1,480 known objects, 458 anomalies) the
fused score reaches a mean per-class AUROC of 0.735 (AUROC 0.696, AP 0.419; per class:
microlens 0.826, Mira 0.970, kilonova 0.485, SLSN-I 0.660). README.md and docs/evaluation.md
give every method's numbers.
With partial light curves (data.stages, train.partial_curves; docs/early.md), measured once on
a busy 2-core machine (load 6-9): train 22 epochs (best at 14) in 10 min, evaluate 34 min; mean
per-class AUROC 0.559 within 10 days of the first detection, 0.754 at 50 days, 0.863 complete.
"""

from plasticc_jax.config import Config


def get_config() -> Config:
    return Config(name="default")
