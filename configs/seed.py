"""Seed preset: the method this project started from, kept as a baseline to compare against.

A VAE without a classification head, and the original score: an Isolation Forest on the latent
means fused with the reconstruction chi-square, equal weights. Everything else (data, grid,
training, calibration, metrics) is the default preset's.

Command: `make prepare train evaluate CONFIG=seed`.
Runtime and result: see the measured table in docs/evaluation.md (section "The seed method").
"""

import dataclasses

from plasticc_jax.config import Config, EvalConfig, ModelConfig


def get_config() -> Config:
    return Config(
        name="seed",
        model=dataclasses.replace(ModelConfig(), classifier_head=False),
        eval=dataclasses.replace(
            EvalConfig(),
            components=("latent_forest", "recon_chi2"),
            fusion=("latent_forest:1", "recon_chi2:1"),
        ),
    )
