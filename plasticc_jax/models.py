"""The VAE in Flax NNX: an MLP encoder and decoder over the (passband x time) light-curve grid.

Shapes: `flux`, `flux_err`, `mask` are (batch, n_bands, n_times) with flux and its error in the
scaled-flux units of the prepared dataset (divided by each object's amplitude); `features` is
(batch, n_features), already normalised with the train-split `FeatureStats`.

Why an MLP and not 1-D convolutions: on this project's CPU target XLA's convolutions are several
times slower than PyTorch's, while dense layers are as fast or faster (benchmarks/bench_train.py
measures both). With 64 time bins the flattened grid is small, so dense layers see the whole
light curve at once at a modest cost.

The encoder (`LightCurveEncoder`) is a standalone module: research code loads it without the
decoder (`plasticc_jax.load_encoder`).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from plasticc_jax.config import COMPUTE_DTYPES, ModelConfig

# Bounds of the encoder's log-variance: keeps exp(logvar) finite in float32 (and bfloat16) and
# the KL term away from overflow early in training; real posteriors sit well inside them.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0


def compute_dtype(name: str) -> jnp.dtype:
    """`"float32"` or `"bfloat16"` (config.train.compute_dtype) as a JAX dtype."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, not {name!r}")
    return jnp.dtype(name)


def encoder_inputs(
    flux: jax.Array, flux_err: jax.Array, mask: jax.Array, features: jax.Array
) -> jax.Array:
    """Flatten one batch into the encoder's input vector.

    Unobserved cells are zero in every channel (and `jnp.where`, not a product, so that a NaN in
    a masked cell cannot leak in). The error enters as `log1p(flux_err)`: bounded for the small
    errors of bright objects and growing slowly for faint ones, unlike the raw error or 1/err.

    Returns:
        (batch, 3 * n_bands * n_times + n_features) float32.
    """
    batch = flux.shape[0]
    observed = mask.astype(bool)
    zero = jnp.zeros((), flux.dtype)
    grid = [
        jnp.where(observed, flux, zero),
        jnp.where(observed, jnp.log1p(jnp.abs(flux_err)), zero),
        observed.astype(flux.dtype),
    ]
    flat = [g.reshape(batch, -1) for g in grid]
    return jnp.concatenate([*flat, features.astype(flux.dtype)], axis=-1)


class MLP(nnx.Module):
    """Dense -> LayerNorm -> GELU for each width in `widths`."""

    def __init__(
        self, in_features: int, widths: tuple[int, ...], *, dtype: jnp.dtype, rngs: nnx.Rngs
    ) -> None:
        sizes = (in_features, *widths)
        self.dense = nnx.List(
            [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.norm = nnx.List([nnx.LayerNorm(b, dtype=dtype, rngs=rngs) for b in widths])

    def __call__(self, x: jax.Array) -> jax.Array:
        for dense, norm in zip(self.dense, self.norm, strict=True):
            x = nnx.gelu(norm(dense(x)))
        return x


class LightCurveEncoder(nnx.Module):
    """q(z | light curve, features): a diagonal Gaussian over the latent space, and (with
    `n_classes`) a classification head p(known class | z = mu).

    The head is a linear softmax on the latent mean: trained with the VAE objective, it pulls the
    known classes apart in the latent space, so that distances there measure what the known classes
    have in common (AstroMCAD's "classifier latent"), while the reconstruction keeps the latent
    faithful to the light curve.
    """

    def __init__(
        self,
        n_bands: int,
        n_times: int,
        n_features: int,
        model: ModelConfig,
        *,
        n_classes: int = 0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.n_bands, self.n_times, self.n_features = n_bands, n_times, n_features
        in_features = 3 * n_bands * n_times + n_features
        self.body = MLP(in_features, tuple(model.hidden), dtype=dtype, rngs=rngs)
        width = model.hidden[-1] if model.hidden else in_features
        self.mu = nnx.Linear(width, model.latent_dim, rngs=rngs)
        # A zero kernel gives logvar = 0 (the prior's variance) for every input at step 0, so
        # early samples of z are neither collapsed nor wildly spread.
        self.logvar = nnx.Linear(
            width, model.latent_dim, kernel_init=nnx.initializers.zeros, rngs=rngs
        )
        self.n_classes = n_classes
        self.classifier = nnx.Linear(model.latent_dim, n_classes, rngs=rngs) if n_classes else None

    def __call__(
        self, flux: jax.Array, flux_err: jax.Array, mask: jax.Array, features: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Returns (mu, logvar), each (batch, latent_dim) float32."""
        h = self.body(encoder_inputs(flux, flux_err, mask, features)).astype(jnp.float32)
        mu = self.mu(h)
        logvar = jnp.clip(self.logvar(h), LOGVAR_MIN, LOGVAR_MAX)
        return mu, logvar

    def classify(self, mu: jax.Array) -> jax.Array:
        """Class logits (batch, n_classes) of latent means (batch, latent_dim); needs the head."""
        assert self.classifier is not None, "this encoder has no classification head"
        return self.classifier(mu)


class Reconstruction(NamedTuple):
    """Decoder output, float32.

    grid_mean: (batch, n_bands, n_times) predicted scaled flux.
    grid_sigma: (batch, n_bands, n_times) the model's own scatter per cell (> min_model_sigma).
    feature_mean: (batch, n_features) predicted normalised features.
    feature_log_scale: (n_features,) learned log standard deviation of each feature.
    """

    grid_mean: jax.Array
    grid_sigma: jax.Array
    feature_mean: jax.Array
    feature_log_scale: jax.Array


class LightCurveDecoder(nnx.Module):
    """p(light curve, features | z): Gaussian over every grid cell and every feature."""

    def __init__(
        self,
        n_bands: int,
        n_times: int,
        n_features: int,
        model: ModelConfig,
        *,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.n_bands, self.n_times, self.n_features = n_bands, n_times, n_features
        self.min_model_sigma = float(model.min_model_sigma)
        widths = tuple(reversed(model.hidden))
        self.body = MLP(model.latent_dim, widths, dtype=dtype, rngs=rngs)
        width = widths[-1] if widths else model.latent_dim
        cells = n_bands * n_times
        self.grid_mean = nnx.Linear(width, cells, rngs=rngs)
        self.grid_sigma = nnx.Linear(width, cells, rngs=rngs)
        self.feature_mean = nnx.Linear(width, n_features, rngs=rngs)
        self.feature_log_scale = nnx.Param(jnp.zeros((n_features,), jnp.float32))

    def __call__(self, z: jax.Array) -> Reconstruction:
        h = self.body(z).astype(jnp.float32)
        shape = (z.shape[0], self.n_bands, self.n_times)
        sigma = jax.nn.softplus(self.grid_sigma(h)) + self.min_model_sigma
        return Reconstruction(
            grid_mean=self.grid_mean(h).reshape(shape),
            grid_sigma=sigma.reshape(shape),
            feature_mean=self.feature_mean(h),
            feature_log_scale=self.feature_log_scale[...],
        )


class Vae(nnx.Module):
    """Encoder + decoder. `__call__` samples z with the reparameterisation trick."""

    def __init__(
        self,
        n_bands: int,
        n_times: int,
        n_features: int,
        model: ModelConfig,
        *,
        n_classes: int = 0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.encoder = LightCurveEncoder(
            n_bands, n_times, n_features, model, n_classes=n_classes, dtype=dtype, rngs=rngs
        )
        self.decoder = LightCurveDecoder(
            n_bands, n_times, n_features, model, dtype=dtype, rngs=rngs
        )

    def __call__(
        self,
        flux: jax.Array,
        flux_err: jax.Array,
        mask: jax.Array,
        features: jax.Array,
        key: jax.Array | None,
    ) -> tuple[jax.Array, jax.Array, Reconstruction]:
        """Encode, draw z ~ q(z|x) (or z = mu when `key` is None), decode.

        Returns:
            (mu, logvar, reconstruction); mu and logvar (batch, latent_dim).
        """
        mu, logvar = self.encoder(flux, flux_err, mask, features)
        z = mu
        if key is not None:
            z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
        return mu, logvar, self.decoder(z)
