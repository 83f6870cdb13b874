"""Shapes, dtypes and input handling of the Flax NNX VAE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from plasticc_jax.config import ModelConfig
from plasticc_jax.models import (
    LightCurveDecoder,
    LightCurveEncoder,
    Vae,
    compute_dtype,
    encoder_inputs,
)

N_BANDS, N_TIMES, N_FEATURES, BATCH = 6, 16, 5, 7
MODEL = ModelConfig(latent_dim=3, hidden=(32, 16), min_model_sigma=0.05)


def _batch(seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    shape = (BATCH, N_BANDS, N_TIMES)
    return {
        "flux": jnp.asarray(rng.normal(size=shape), jnp.float32),
        "flux_err": jnp.asarray(rng.uniform(0.01, 0.5, shape), jnp.float32),
        "mask": jnp.asarray(rng.random(shape) < 0.3),
        "features": jnp.asarray(rng.normal(size=(BATCH, N_FEATURES)), jnp.float32),
    }


def _args(batch: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
    return batch["flux"], batch["flux_err"], batch["mask"], batch["features"]


@nnx.jit
def _call(module: nnx.Module, *args: jax.Array | None):
    """A module applied under jit: one compiled program instead of one per eager operation."""
    return module(*args)


@pytest.fixture(scope="module")
def vae() -> Vae:
    return nnx.jit(lambda: Vae(N_BANDS, N_TIMES, N_FEATURES, MODEL, rngs=nnx.Rngs(0)))()


def test_vae_output_shapes_under_jit(vae):
    graphdef, params = nnx.split(vae)

    @jax.jit
    def forward(params, batch, key):
        return nnx.merge(graphdef, params)(*_args(batch), key)

    mu, logvar, recon = forward(params, _batch(), jax.random.key(1))
    assert mu.shape == logvar.shape == (BATCH, MODEL.latent_dim)
    assert recon.grid_mean.shape == recon.grid_sigma.shape == (BATCH, N_BANDS, N_TIMES)
    assert recon.feature_mean.shape == (BATCH, N_FEATURES)
    assert recon.feature_log_scale.shape == (N_FEATURES,)
    assert float(recon.grid_sigma.min()) > MODEL.min_model_sigma
    for value in (mu, logvar, recon.grid_mean, recon.grid_sigma):
        assert value.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(value)))


def test_sampling_uses_the_key_and_none_decodes_the_mean(vae):
    batch = _batch()
    mu, _, at_mean = _call(vae, *_args(batch), None)
    _, _, sample_a = _call(vae, *_args(batch), jax.random.key(1))
    _, _, sample_b = _call(vae, *_args(batch), jax.random.key(2))
    np.testing.assert_allclose(at_mean.grid_mean, _call(vae.decoder, mu).grid_mean, rtol=1e-6)
    assert not np.allclose(sample_a.grid_mean, sample_b.grid_mean)


def test_encoder_is_standalone_with_the_vae_encoder_layout(vae):
    encoder = nnx.eval_shape(
        lambda: LightCurveEncoder(N_BANDS, N_TIMES, N_FEATURES, MODEL, rngs=nnx.Rngs(0))
    )
    vae_encoder = nnx.to_pure_dict(nnx.state(vae)["encoder"])
    standalone = nnx.to_pure_dict(nnx.state(encoder))
    assert jax.tree.structure(vae_encoder) == jax.tree.structure(standalone)
    shapes = jax.tree.map(jnp.shape, vae_encoder) == jax.tree.map(jnp.shape, standalone)
    assert shapes
    # Loading the VAE's encoder parameters into the standalone module gives the same output.
    graphdef, _ = nnx.split(encoder)
    loaded = nnx.merge(graphdef, vae_encoder)
    batch = _batch()
    np.testing.assert_allclose(
        _call(loaded, *_args(batch))[0], _call(vae.encoder, *_args(batch))[0]
    )


def test_decoder_shapes_without_hidden_layers():
    model = ModelConfig(latent_dim=2, hidden=())
    decoder = nnx.jit(
        lambda: LightCurveDecoder(N_BANDS, N_TIMES, N_FEATURES, model, rngs=nnx.Rngs(0))
    )()
    out = _call(decoder, jnp.zeros((4, 2)))
    assert out.grid_mean.shape == (4, N_BANDS, N_TIMES)


def test_unobserved_cells_never_reach_the_encoder():
    batch = _batch()
    poisoned = dict(batch)
    hidden = ~batch["mask"]
    poisoned["flux"] = jnp.where(hidden, jnp.nan, batch["flux"])
    poisoned["flux_err"] = jnp.where(hidden, 1e30, batch["flux_err"])
    np.testing.assert_array_equal(encoder_inputs(*_args(batch)), encoder_inputs(*_args(poisoned)))
    assert encoder_inputs(*_args(batch)).shape == (BATCH, 3 * N_BANDS * N_TIMES + N_FEATURES)


def test_bfloat16_compute_keeps_float32_params_and_outputs(vae):
    half = nnx.jit(
        lambda: Vae(N_BANDS, N_TIMES, N_FEATURES, MODEL, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    )()
    params = nnx.to_pure_dict(nnx.state(half))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    # The matrix products are bfloat16 (found by a review: a model that ignored the dtype passed).
    layers = [*half.encoder.body.dense, *half.decoder.body.dense]
    assert layers and all(layer.dtype == jnp.bfloat16 for layer in layers)
    mu, _, recon = _call(half, *_args(_batch()), None)
    mu_ref, _, _ = _call(vae, *_args(_batch()), None)
    assert mu.dtype == recon.grid_mean.dtype == jnp.float32
    np.testing.assert_allclose(mu, mu_ref, atol=0.1)
    assert not np.array_equal(mu, mu_ref)  # the same parameters, computed at another precision


def test_compute_dtype_rejects_unknown_names():
    assert compute_dtype("bfloat16") == jnp.bfloat16
    with pytest.raises(ValueError, match="compute_dtype"):
        compute_dtype("float16")
