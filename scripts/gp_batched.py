"""The Gaussian-process features of `gp_features_probe.py`, batched (research, #10).

The probe fits one object at a time in NumPy (float64), about 300 objects/s. Here the same fit
runs in JAX, jit-compiled and vectorised over objects (float32), and the features are read off
the means of a whole batch at once in NumPy: what a build into the package's gridding would run.
Objects are padded to 32, 64 or 128 points inside the window (a padded point: zero flux and a
variance of 1e12, which changes neither the mean nor the choice of time scale beyond float32's
rounding); an object with more points than the largest size keeps its highest signal-to-noise
ones.

    batched_gp_features(mjd, passband, flux, flux_err, starts, peak_rows, redshift, window)

`gp_features_probe.py --batched` validates with it; `gp_fit_speed.py` times it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from plasticc_jax.gp_features import (
    GP_NAMES,
    LENGTH_SCALES,
    WAVELENGTH_SCALE,
    WAVELENGTHS,
    read_features,
)

SIZES = (32, 64, 128)
PAD_VARIANCE = 1e12


def _matern32(t1: jnp.ndarray, w1: jnp.ndarray, t2: jnp.ndarray, w2: jnp.ndarray, length):
    dt = (t1[:, None] - t2[None, :]) / length
    dw = (w1[:, None] - w2[None, :]) / WAVELENGTH_SCALE
    r = jnp.sqrt(3.0 * (dt * dt + dw * dw) + 1e-12)
    return (1.0 + r) * jnp.exp(-r)


@functools.cache
def batched_fit(lengths: tuple[float, ...], days: tuple[float, ...]):
    """A jitted function (one per setting, compiled once per batch shape): (t, band, y, noise),
    each (objects, n) -> (the mean (objects, len(days), 6), the chosen time scale (objects,),
    the residual per real point (objects,))."""
    scales = jnp.array(lengths)
    wavelengths = jnp.asarray(WAVELENGTHS)
    grid_t, grid_w = jnp.repeat(jnp.asarray(days), 6), jnp.tile(wavelengths, len(days))

    def one(t, band, y, noise):
        w = wavelengths[band]

        def fit(length):
            chol = jnp.linalg.cholesky(_matern32(t, w, t, w, length) + jnp.diag(noise))
            alpha = jax.scipy.linalg.cho_solve((chol, True), y)
            return -0.5 * y @ alpha - jnp.log(jnp.diag(chol)).sum(), alpha

        log_like, alphas = jax.vmap(fit)(scales)
        # A scale whose Cholesky fails (NaN) is skipped, as the NumPy fit skips it.
        best = jnp.argmax(jnp.where(jnp.isnan(log_like), -jnp.inf, log_like))
        alpha = alphas[best]
        mean = _matern32(grid_t, grid_w, t, w, scales[best]) @ alpha
        # (K + N) alpha = y, so y - K alpha = N alpha: the residual needs no second product.
        real = noise < PAD_VARIANCE
        chi2 = jnp.where(real, noise * alpha * alpha, 0.0).sum() / real.sum()
        return mean.reshape(len(days), 6), scales[best], chi2

    return jax.jit(jax.vmap(one))


def _pack(t, band, y, noise, counts, size, m):
    """Objects' points in `m` rows of `size` (padded; rows past those of `counts` all padding);
    t, band, y, noise flat, counts per object."""
    counts = np.r_[counts, np.zeros(m - counts.size, counts.dtype)]
    index = np.arange(size)[None, :] < counts[:, None]
    out_t, out_b = np.zeros((m, size), np.float32), np.zeros((m, size), np.int32)
    out_y = np.zeros((m, size), np.float32)
    out_n = np.full((m, size), PAD_VARIANCE, np.float32)
    out_t[index], out_b[index], out_y[index], out_n[index] = t, band, y, noise
    return [jnp.asarray(a) for a in (out_t, out_b, out_y, out_n)]


def batched_gp_features(
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    starts: np.ndarray,
    peak_rows: np.ndarray,
    redshift: np.ndarray,
    window: tuple[float, float],
    lengths: tuple[float, ...] = LENGTH_SCALES,
    step: float = 1.0,
    batch: int = 1024,
) -> np.ndarray:
    """(m, len(GP_NAMES)) for m objects' rows (grouped by object, sorted by time; `starts` their
    first rows, `peak_rows` their brightest detections), as `gp_features` gives them one by one."""
    m = starts.size
    o = np.repeat(np.arange(m), np.diff(np.r_[starts, mjd.size]))
    t0 = mjd[peak_rows]
    inside = (mjd >= t0[o] - window[0]) & (mjd <= t0[o] + window[1])
    scale = np.maximum.reduceat(np.where(inside, np.abs(flux), 0.0), starts)
    snr = np.abs(flux) / flux_err
    # Inside the window; beyond the largest size, the highest signal-to-noise points.
    order = np.lexsort((-snr, o))
    keep = inside[order]
    rank = np.zeros(mjd.size, np.int64)
    kept = order[keep]
    counts_all = np.bincount(o[kept], minlength=m)
    first = np.r_[0, np.cumsum(counts_all)[:-1]]
    rank[kept] = np.arange(kept.size) - np.repeat(first, counts_all)
    use = inside & (rank < SIZES[-1])
    use_rows = np.flatnonzero(use)  # grouped by object, time-sorted within
    counts = np.bincount(o[use_rows], minlength=m)
    days = np.arange(-window[0], window[1] + step, step)
    fit = batched_fit(tuple(lengths), tuple(days))
    out = np.full((m, len(GP_NAMES)), np.nan)
    object_of = o[use_rows]
    for size in SIZES:
        smaller = SIZES[SIZES.index(size) - 1] if size != SIZES[0] else 2
        chosen = np.flatnonzero((counts > smaller) & (counts <= size))
        for part in np.array_split(chosen, max(1, -(-chosen.size // batch))):
            if not part.size:
                continue
            rows = use_rows[np.isin(object_of, part)]
            s = np.repeat(scale[part], counts[part])
            t = mjd[rows] - np.repeat(t0[part], counts[part])
            y, noise = flux[rows] / s, (flux_err[rows] / s) ** 2
            # Every batch holds `batch` objects (the last padded): one compiled shape a size.
            packed = _pack(t, passband[rows], y, noise, counts[part], size, batch)
            mean, length, chi2 = (np.asarray(a, np.float64)[: part.size] for a in fit(*packed))
            out[part] = read_features(days, mean, length, chi2, redshift[part])
    return out
