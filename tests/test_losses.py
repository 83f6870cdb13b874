"""The loss terms, checked against independent computations and under jax.jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from plasticc_jax import losses

SHAPE = (4, 6, 10)


def _grid(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "flux": rng.normal(size=SHAPE).astype(np.float32),
        "flux_err": rng.uniform(0.05, 0.5, SHAPE).astype(np.float32),
        "mask": rng.random(SHAPE) < 0.4,
        "mean": rng.normal(size=SHAPE).astype(np.float32),
        "sigma": rng.uniform(0.05, 0.3, SHAPE).astype(np.float32),
    }


def _grid_nll(g: dict[str, np.ndarray]) -> jax.Array:
    return jax.jit(losses.masked_grid_nll)(
        g["flux"], g["flux_err"], g["mask"], g["mean"], g["sigma"]
    )


def test_masked_grid_nll_matches_scipy_over_observed_cells():
    g = _grid()
    scale = np.sqrt(g["flux_err"].astype(np.float64) ** 2 + g["sigma"].astype(np.float64) ** 2)
    logpdf = stats.norm.logpdf(g["flux"], loc=g["mean"], scale=scale)
    expected = -np.where(g["mask"], logpdf, 0.0).sum(axis=(1, 2))
    np.testing.assert_allclose(_grid_nll(g), expected, rtol=1e-5)


def test_masked_cells_change_neither_the_loss_nor_its_gradient():
    g = _grid()
    hidden = ~g["mask"]
    shifted = dict(g, flux=np.where(hidden, g["flux"] + 100.0, g["flux"]).astype(np.float32))
    changed = dict(g)
    changed["flux"] = np.where(hidden, np.nan, g["flux"]).astype(np.float32)
    changed["flux_err"] = np.where(hidden, 0.0, g["flux_err"]).astype(np.float32)
    np.testing.assert_array_equal(_grid_nll(g), _grid_nll(shifted))
    np.testing.assert_array_equal(_grid_nll(g), _grid_nll(changed))

    def total(mean, grid):
        return losses.masked_grid_nll(
            grid["flux"], grid["flux_err"], grid["mask"], mean, grid["sigma"]
        ).sum()

    grad = jax.jit(jax.grad(total))(g["mean"], g)
    grad_changed = jax.jit(jax.grad(total))(g["mean"], changed)
    np.testing.assert_array_equal(grad, grad_changed)
    assert np.all(np.asarray(grad)[hidden] == 0.0)


def test_model_sigma_caps_the_weight_of_high_snr_cells():
    g = _grid()
    g["flux_err"] = np.full(SHAPE, 1e-4, np.float32)
    g["mask"] = np.ones(SHAPE, bool)
    without = dict(g, sigma=np.full(SHAPE, 1e-6, np.float32))
    floor = dict(g, sigma=np.full(SHAPE, 0.1, np.float32))
    # Without the scatter, cells at 1e-4 errors weigh 1e8 per unit residual squared.
    assert float(_grid_nll(without).min()) > 1000 * float(_grid_nll(floor).max())


def test_kl_matches_the_general_gaussian_kl():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(5, 3))
    logvar = rng.normal(scale=0.5, size=(5, 3))
    got = jax.jit(losses.kl_divergence)(jnp.asarray(mu), jnp.asarray(logvar))
    # KL(N(mu, S) || N(0, I)) for full covariance matrices, from the textbook formula.
    expected = []
    for m, lv in zip(mu, logvar, strict=True):
        cov = np.diag(np.exp(lv))
        k = len(m)
        expected.append(0.5 * (np.trace(cov) + m @ m - k - np.log(np.linalg.det(cov))))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(losses.kl_divergence(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0


def test_kl_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(2)
    mu, logvar = np.array([0.7, -1.2]), np.array([-0.5, 0.4])
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(400_000, 2))
    log_q = stats.norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(axis=1)
    log_p = stats.norm.logpdf(z).sum(axis=1)
    got = float(losses.kl_divergence(jnp.asarray(mu[None]), jnp.asarray(logvar[None]))[0])
    assert abs(got - np.mean(log_q - log_p)) < 0.01


def test_feature_nll_matches_scipy():
    rng = np.random.default_rng(3)
    x, mean = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    log_scale = rng.normal(scale=0.3, size=5)
    got = jax.jit(losses.feature_nll)(x, mean, log_scale)
    expected = -stats.norm.logpdf(x, mean, np.exp(log_scale)).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kl_weight_ramps_linearly_to_beta():
    weights = [float(losses.kl_weight(jnp.asarray(step), 10, 0.5, 2.0)) for step in (0, 9, 19, 100)]
    np.testing.assert_allclose(weights, [0.5 / 20, 0.5 * 10 / 20, 0.5, 0.5], rtol=1e-6)
    assert float(losses.kl_weight(jnp.asarray(0), 10, 0.5, 0.0)) == 0.5


def test_vae_loss_ignores_padding_rows_and_normalises_per_observed_value():
    rng = np.random.default_rng(4)
    terms = {
        "recon_nll": jnp.asarray(rng.normal(size=4), jnp.float32),
        "feature_nll": jnp.asarray(rng.normal(size=4), jnp.float32),
        "kl": jnp.asarray(rng.uniform(size=4), jnp.float32),
        "n_observed": jnp.asarray([10.0, 20.0, 5.0, 7.0]),
        "n_values": jnp.asarray([13.0, 23.0, 8.0, 10.0]),
    }
    weight = jnp.asarray([1.0, 1.0, 1.0, 0.0])
    loss, metrics = jax.jit(losses.vae_loss)(terms, weight, 0.5)
    t = {k: np.asarray(v)[:3] for k, v in terms.items()}
    expected = (t["recon_nll"] + t["feature_nll"] + 0.5 * t["kl"]).sum() / t["n_values"].sum()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["kl"], t["kl"].mean(), rtol=1e-6)
    poisoned = dict(terms, recon_nll=terms["recon_nll"].at[3].set(1e6))
    np.testing.assert_allclose(losses.vae_loss(poisoned, weight, 0.5)[0], loss, rtol=1e-6)
