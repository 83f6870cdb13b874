"""Default preset: the quick CPU run on the real PLAsTiCC training set, `rare` protocol.

Command: `make prepare train evaluate` (or `plasticc-jax train --config default`).
Runtime: a few minutes end to end on 2 CPU cores (see benchmarks/RESULTS.md for the measured time).
Expected result: see the metrics table in README.md (mean per-class AUROC of the fused score on
the held-out rare classes).
"""

from plasticc_jax.config import Config


def get_config() -> Config:
    return Config(name="default")
