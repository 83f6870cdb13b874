"""Default preset: the quick CPU run on the real PLAsTiCC training set, `rare` protocol.

Command: `make prepare train evaluate` (each stage: `plasticc-jax <stage> --config default`).
Runtime on 2 CPU cores, from a fresh clone with the venv built: 1 min 50 s for the three stages
on a quiet hour of this release's machine (download from a local copy and prepare 10 s, train
27 s, evaluate 69 s); 2 min 9 s on a slow day (download 9 s, prepare with the Gaussian-process
features 10 s, train 37 s, evaluate 73 s); about 1 min 15 s before those features on a
fast day (download and prepare 8 s, train 28 s, evaluate 38 s), 2 min 12 s on the earlier
releases' machine, whose cores are half as fast (download and prepare 10 s, train 46 s,
evaluate 1 min 16 s; load average 1-2, JAX's compilation cache empty). With other jobs on the
machine (load 7-9) it took 6 min 22 s before evaluate's UMAP and cross-fitting ran side by side.
Expected result (measured; the same seed gives the same numbers on the same machine): on the
test split (1,480 known objects, 458 anomalies) the detector reaches a mean per-class AUROC of
0.858 (AUROC 0.803, AP 0.626; per class: microlens 0.946, Mira 0.998, kilonova 0.898, SLSN-I
0.591); its fusion (`eval.fusion`, from `config.VALIDATED_FUSION`) is the cheapest within a
standard error of the best of `make validate` (leave-one-known-class-out: 0.8292 against
0.8295; the cost rule, docs/evaluation.md; the best found gave 0.870 on the test split).
`PROTOCOL=sn` takes `sn`'s own validated fusion: 0.776 on its test split. README.md and
docs/evaluation.md give every method's numbers.
Early detection (partial light curves in training and evaluation) is opt-in: the `early`
preset (configs/early.py, docs/early.md); `score --as-of` and `replay` work with this run too.
"""

from plasticc_jax.config import Config


def get_config() -> Config:
    return Config(name="default")
