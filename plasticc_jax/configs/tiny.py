"""Tiny preset for tests and smoke runs: a coarse grid, a small network, two epochs.

Command: `plasticc-jax prepare --config tiny` (then train, evaluate) on any data; the tests run
it on 400 synthetic objects (`plasticc_jax.synthetic`, seed 0). Its dataset goes to the default
preset's folder (`data/processed/<protocol>`), replacing that one (with a warning): `make
prepare` restores it, or give `--set data.processed_dir=data/processed-tiny` to keep both.
Runtime on 2 CPU cores: 38 s for the three stages on those 400 objects (most of it compiling
and drawing the figures; measured with other jobs on the machine, load average about 4).
Expected result: none worth a number: it checks that the pipeline runs, not that it finds
anything (on the synthetic objects the fused mean per-class AUROC is 0.53, chance level).
"""

from plasticc_jax.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="tiny",
        data=DataConfig(
            n_time_bins=16,
            window_before=32.0,
            window_after=96.0,
            workers=1,
            chunk_rows=20_000,
            shard_objects=128,
        ),
        model=ModelConfig(latent_dim=4, hidden=(32,)),
        train=TrainConfig(batch_size=32, max_epochs=2, patience=2, kl_warmup_epochs=1.0),
        eval=EvalConfig(
            n_estimators=50,
            classifier_iterations=10,
            knn_neighbours=5,
            cross_fit_folds=2,
            n_draws=5,
            n_bootstrap=50,
            umap=False,
            batch_size=64,
        ),
    )
