"""Seed preset: the method this project started from, kept as a baseline to compare against.

A VAE without a classification head, and the original score: an Isolation Forest on the latent
means fused with the reconstruction chi-square, equal weights. Everything else (data, grid,
training, calibration, metrics) is the default preset's.

Command: `make prepare train evaluate CONFIG=seed`.
Runtime on 2 CPU cores of this release's machine (after `make prepare`, nothing else running):
`make train evaluate CONFIG=seed` 53 s (train 24 s, 40 epochs; evaluate 20 s).
Expected result (measured): on the `rare` test split a mean per-class AUROC of 0.826 (microlens
0.859, Mira 0.989, kilonova 0.793, SLSN-I 0.663; 0.825 in a later fresh run), against 0.858 for
the default preset (0.870 with an earlier release's fusion); the previous release's seed method,
before the physics features, measured 0.735 (docs/evaluation.md).
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
