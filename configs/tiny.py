"""Tiny preset for tests and smoke runs: a coarse grid, a small network, two epochs.

Command: `plasticc-jax prepare --config tiny` etc. on any data (tests use synthetic files).
Runtime: seconds. Expected result: none; it checks that the pipeline runs, not that it is good.
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
        eval=EvalConfig(n_estimators=50, n_draws=5, umap=False, batch_size=64),
    )
