"""GPU preset: the full 200-epoch training, latent 64, batch 256 (the seed pipeline).

Command: `make train CONFIG=gpu` (or inside the container: `make docker-train CONFIG=gpu`).
Runtime: minutes on one H100-class GPU; far longer on a CPU.
Expected result: at least the default preset's metrics; early stopping may end it before 200.
"""

import dataclasses

from plasticc_jax.config import Config, ModelConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="gpu",
        model=ModelConfig(latent_dim=64, hidden=(1024, 512, 256)),
        train=dataclasses.replace(TrainConfig(), batch_size=256, max_epochs=200, patience=20),
    )
