"""Early-detection preset (opt-in): the default preset with partial light curves, docs/early.md.

Every object is also prepared as it was 2, 5, 10, 20 and 50 days after its first detection
(`data.stages`, extra rows of its split, into `data/processed-early/` so that the default
preset's dataset is left alone); the VAE trains on them (`train.partial_curves`: each epoch shows
every train object once, at a stage drawn at random), the detector is fitted and calibrated on
each object's complete light curve and one partial one, and `evaluate` reports the test split's
AUROC and recall against days since the first detection (`metrics.json` `early`,
`scores_stages.parquet`, `reports/figures/early.png`). `score --as-of` and `replay` work with
any evaluated run; this one is trained for partial light curves.

Time anchor (`data.time_anchor`): `peak`, each light curve (complete or partial) gridded around
its most significant detection so far. Compared with `first_detection` by the leave-one-known-
class-out validation (`plasticc-jax validate --config early`, which scores the held-out known
class at every stage; no test data): the same at 10 days after the first detection (0.596 and
0.596), so the default was kept; again after a fix of the training on partial light curves
(docs/early.md), two seeds: 0.606 (`peak`) and 0.602, so it stays.

Fusion (`eval.fusion`, FUSION): the best found at 10 days by the leave-one-known-class-out
validation run again after the training fix (`fusion_search.StageFolds`): 0.6092, against 0.6091
for the weights shipped before it (noise; shipped by the rule "the best found").

Gaussian-process features (`data.gp_features`): off. Validated for this preset (no test data;
rule written before the run, docs/early.md): the best fusion found at 10 days with the
`gp_classifier` beside the shipped components, 0.6134, against the shipped 0.6093, +0.0042 ±
0.0032 (5 of 10 folds), short of the rule's two standard errors; so the preset does not pay for
them at every stage and every replay night, nor fits the `gp_classifier` (without them, the
`classifier` again).

Command: `make prepare train evaluate CONFIG=early`.
Runtime on 2 CPU cores, from a fresh clone with the venv and the data ready: about 1 min 40 s
(README). Expected result (measured on this release): on the `rare` test split, mean per-class
AUROC 0.494 / 0.507 / 0.583 / 0.700 / 0.787 at 2 / 5 / 10 / 20 / 50 days after the first
detection (kilonova 0.722 at 10 days), and 0.867 with the complete light curve. The targets are
missed (0.583 at 10 days against 0.80), and a night-by-night `replay` runs at about a third to a
half of the 20,000 objects/s target: which is why early detection is not the default
(docs/early.md).
"""

from plasticc_jax.config import COMPONENT_NAMES, Config, DataConfig, EvalConfig, TrainConfig

STAGES = (2.0, 5.0, 10.0, 20.0, 50.0)
FUSION = (
    "latent_knn:2",
    "feature_mahalanobis:1",
    "head_maxprob:1",
    "recon_chi2:2",
    "classifier:2",
)


def get_config() -> Config:
    return Config(
        name="early",
        # time_anchor: the default, kept by validation (see above); set here to say so.
        data=DataConfig(
            processed_dir="data/processed-early",
            stages=STAGES,
            time_anchor="peak",
            gp_features=False,  # validated: no gain at 10 days (above)
        ),
        train=TrainConfig(partial_curves=True),
        # The best fusion found by the validation at 10 days (above; the default preset's is
        # chosen on complete light curves).
        # Without the features the `gp_classifier` would be the `classifier` again: not fitted.
        eval=EvalConfig(
            fusion=FUSION,
            components=tuple(c for c in COMPONENT_NAMES if c != "gp_classifier"),
        ),
    )
