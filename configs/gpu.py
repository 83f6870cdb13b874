"""GPU preset: the full 200-epoch training, latent 64, batch 256 (the seed pipeline).

Command: `make prepare train evaluate CONFIG=gpu` (in the container: `make docker-prepare
docker-train docker-evaluate CONFIG=gpu`).
Runtime: not measured end to end: the 2-core machine the other presets were measured on has no
GPU (and on its CPU this preset would take hours). On one H100 the recorded figure is 20 epochs
of this preset in 24 s wall (docs/docker.md, benchmarks/results/gpu.json), so the 200 epochs
take a few minutes, less if early stopping (patience 20) ends them.
Expected result: not measured (no GPU here); no number is claimed for it.
"""

import dataclasses

from plasticc_jax.config import Config, ModelConfig, TrainConfig


def get_config() -> Config:
    return Config(
        name="gpu",
        model=ModelConfig(latent_dim=64, hidden=(1024, 512, 256)),
        train=dataclasses.replace(TrainConfig(), batch_size=256, max_epochs=200, patience=20),
    )
