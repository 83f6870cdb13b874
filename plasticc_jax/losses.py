"""The VAE's loss: small pure functions over arrays (jit-able, unit-tested one by one), and
`forward`, the one forward pass that training, validation and inference share.

Shapes: grids (batch, n_bands, n_times) in scaled-flux units; features (batch, n_features),
normalised; latents (batch, latent_dim). Per-object terms are returned as (batch,) arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from plasticc_jax.models import Reconstruction

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(x: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """Elementwise negative log density of N(mean, variance) at x (in nats)."""
    return 0.5 * (LOG_2PI + jnp.log(variance) + jnp.square(x - mean) / variance)


def masked_grid_nll(
    flux: jax.Array,
    flux_err: jax.Array,
    mask: jax.Array,
    mean: jax.Array,
    model_sigma: jax.Array,
) -> jax.Array:
    """Heteroscedastic Gaussian NLL of the observed grid cells, summed per object.

    Each observed cell has variance `flux_err**2 + model_sigma**2`. The measurement error alone
    is not enough: a cell averages the observations that fall in one time bin (a rising light
    curve changes within a bin), and no decoder fits every light curve exactly. With the
    measurement error alone, the few high signal-to-noise points (errors of a percent of the
    amplitude) would dominate the loss by orders of magnitude and training would chase them;
    the learned per-cell scatter (floored at `model.min_model_sigma`) caps every cell's weight.

    Unobserved cells contribute exactly zero, whatever their flux or error hold (even NaN):
    they are replaced before any arithmetic, so neither the value nor the gradient sees them.

    Args:
        flux, flux_err, mask: (batch, n_bands, n_times); mask True where observed.
        mean, model_sigma: (batch, n_bands, n_times) decoder output.

    Returns:
        (batch,) NLL in nats per object.
    """
    observed, x, variance = _observed_cells(flux, flux_err, mask, mean, model_sigma)
    nll = jnp.where(observed, gaussian_nll(x, mean, variance), 0.0)
    return nll.sum(axis=(1, 2))


def _observed_cells(
    flux: jax.Array,
    flux_err: jax.Array,
    mask: jax.Array,
    mean: jax.Array,
    model_sigma: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(observed, x, variance) of each cell: unobserved cells replaced before any arithmetic
    (x = mean, error 0), the variance `flux_err**2 + model_sigma**2`."""
    observed = mask.astype(bool)
    x = jnp.where(observed, flux, mean)
    err = jnp.where(observed, flux_err, 0.0)
    return observed, x, jnp.square(err) + jnp.square(model_sigma)


def reduced_chi2(
    flux: jax.Array,
    flux_err: jax.Array,
    mask: jax.Array,
    mean: jax.Array,
    model_sigma: jax.Array,
) -> jax.Array:
    """Mean over observed cells of `(flux - mean)**2 / (flux_err**2 + model_sigma**2)`, (batch,).

    The cells and variance are `masked_grid_nll`'s (`_observed_cells`: an unobserved cell's
    residual is 0; the model's sigma is floored above 0); an object without observed cells gets 0.
    """
    observed, x, variance = _observed_cells(flux, flux_err, mask, mean, model_sigma)
    z2 = jnp.square(x - mean) / variance
    return z2.sum(axis=(1, 2)) / jnp.maximum(observed.sum(axis=(1, 2)), 1)


def feature_nll(features: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
    """Gaussian NLL of the normalised features with a learned per-feature scale.

    Args:
        features, mean: (batch, n_features); log_scale: (n_features,) log standard deviation.

    Returns:
        (batch,) NLL in nats per object.
    """
    variance = jnp.exp(2.0 * log_scale)
    return gaussian_nll(features, mean, variance).sum(axis=-1)


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, exp(logvar)) || N(0, I)) in closed form, summed over latent dimensions.

    Returns:
        (batch,) KL in nats per object.
    """
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


def kl_weight(
    step: jax.Array, steps_per_epoch: int, beta: float, warmup_epochs: float
) -> jax.Array:
    """beta, ramped linearly from 0 over the first `warmup_epochs` (0: beta from the start).

    The ramp lets the decoder learn to use z before the KL term pulls every posterior onto the
    prior (posterior collapse).
    """
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / warmup_steps)


def per_object_terms(
    batch: Mapping[str, jax.Array], mu: jax.Array, logvar: jax.Array, recon: Reconstruction
) -> dict[str, jax.Array]:
    """The three per-object terms of the negative ELBO, the counts of observed values and the
    reduced chi-square of the grid, (batch,).

    `n_observed` counts observed grid cells; `n_values` adds the features (always observed). The
    train step's loss reads `n_values`; `n_observed` and `chi2` are for scoring (XLA drops what
    a step never reads).
    """
    n_observed = batch["mask"].astype(jnp.float32).sum(axis=(1, 2))
    return {
        "recon_nll": masked_grid_nll(
            batch["flux"], batch["flux_err"], batch["mask"], recon.grid_mean, recon.grid_sigma
        ),
        "chi2": reduced_chi2(
            batch["flux"], batch["flux_err"], batch["mask"], recon.grid_mean, recon.grid_sigma
        ),
        "feature_nll": feature_nll(batch["features"], recon.feature_mean, recon.feature_log_scale),
        "kl": kl_divergence(mu, logvar),
        "n_observed": n_observed,
        "n_values": n_observed + batch["features"].shape[-1],
    }


def vae_loss(
    terms: dict[str, jax.Array], weight: jax.Array, beta: jax.Array | float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training loss: the negative ELBO per observed value.

    loss = sum_i w_i (recon_nll_i + feature_nll_i + beta * kl_i) / sum_i w_i (n_obs_i + n_feat)

    Dividing by the number of observed values in the batch (cells plus features), not by the
    number of objects, keeps the loss near one nat per value whatever the grid size or the
    cadence, so one learning rate suits the tiny, default and GPU presets; every object still
    counts in proportion to how much it was observed, as in the ELBO. `weight` is 0 for padding
    rows of a fixed-shape batch.

    Args:
        terms: `per_object_terms` output; weight: (batch,) 0 or 1.

    Returns:
        (scalar loss, metrics): metrics are weighted means per object (`recon_nll`,
        `feature_nll`, `kl`) plus `loss` and `beta`.
    """
    n_values = terms["n_values"]
    objects = jnp.maximum(weight.sum(), 1.0)
    total = terms["recon_nll"] + terms["feature_nll"] + beta * terms["kl"]
    loss = jnp.sum(weight * total) / jnp.maximum(jnp.sum(weight * n_values), 1.0)
    metrics = {
        "loss": loss,
        "recon_nll": jnp.sum(weight * terms["recon_nll"]) / objects,
        "feature_nll": jnp.sum(weight * terms["feature_nll"]) / objects,
        "kl": jnp.sum(weight * terms["kl"]) / objects,
        "beta": jnp.asarray(beta, jnp.float32),
    }
    return loss, metrics


def forward(
    graphdef: nnx.GraphDef,
    params: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The VAE's forward pass: encode, draw z (z = mu without a key), decode, and the loss terms.

    The one definition used by the train step's loss (with the step's key), by validation and by
    the inference API (`encoder.TrainedVae`, without a key).

    Args:
        graphdef, params: a `Vae` split with `nnx.split` (params as a pure dict or a state).
        batch: `flux`, `flux_err`, `mask` (batch, n_bands, n_times) and normalised `features`
            (batch, n_features); other entries (e.g. `weight`) are ignored.
        key: PRNG key for the reparameterisation noise; None decodes z = mu.

    Returns:
        `mu`, `logvar` (batch, latent_dim); the `per_object_terms` (batch,) each; `mean` and
        `sigma` (batch, n_bands, n_times), the decoded grid and the model's scatter per cell.
    """
    vae = nnx.merge(graphdef, params)
    mu, logvar, recon = vae(batch["flux"], batch["flux_err"], batch["mask"], batch["features"], key)
    terms = per_object_terms(batch, mu, logvar, recon)
    out = {"mu": mu, "logvar": logvar, **terms, "mean": recon.grid_mean, "sigma": recon.grid_sigma}
    if vae.encoder.classifier is not None:
        out["logits"] = vae.encoder.classify(mu)
    return out


def classification_loss(
    logits: jax.Array, label: jax.Array, label_weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Weighted softmax cross-entropy of the classification head, and its per-object values.

    Args:
        logits: (batch, n_classes); label: (batch,) int index into the known classes.
        label_weight: (batch,) the class-balancing weight of each object's class (0 for padding),
            so that every known class counts alike whatever its size.

    Returns:
        (the weighted mean in nats, the (batch,) cross-entropies).
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, label)
    return jnp.sum(label_weight * ce) / jnp.maximum(jnp.sum(label_weight), 1e-6), ce
