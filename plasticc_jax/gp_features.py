"""Gaussian-process light-curve features (`GP_NAMES`), for the `gp_classifier` component.

No I/O: a JAX kernel, jit-compiled for the CPU and vectorised over the objects of a chunk, fits
the processes (float32, as validated), and NumPy reads the features off their means.

PLAsTiCC's winning classifier (avocado, Boone 2019) describes a light curve by a Gaussian
process fitted jointly in time and wavelength and reads its features off the smooth model, which
exists in every band at every time, where features of the raw points (`plasticc_jax.features`)
are noisy for faint objects and undefined where a band has no point near the peak. Chosen by the
leave-one-known-class-out validation (docs/evaluation.md).

The process, per object:

- a Matern-3/2 kernel over (time, effective wavelength of the passband), wavelength length scale
  6,000 Angstrom (avocado's), amplitude 1, on the flux divided by the object's largest |flux|
  inside the window, the flux errors as noise;
- fitted on the points inside the grid's window (`window_before` days before the brightest
  detection to `window_after` after, both ends included, where the grid's last bin stops short
  of the end): the cost grows with the cube of the points, and an object with more than
  `MAX_POINTS` there keeps its highest signal-to-noise ones;
- the time length scale: the best of `LENGTH_SCALES` by marginal likelihood;
- its mean predicted in the six passbands on a one-day grid over the window, from which
  `read_features` reads the features: the time scale, the model's peak (its offset from the
  highest-S/N detection, the share of each band), the blue and red shares 10 days before and 20 and
  50 days after it, each band's flux 15 days after it over its flux at it, the rise and fall times
  to 50% and 20% of the peak (observer frame and divided by 1 + photo-z), the widths of the
  positive and negative parts, the number of peaks, and the residual chi-square per point.

Undefined features are NaN: fewer than `MIN_POINTS` points in the window, no positive peak, an
epoch outside the window. Objects are padded to a few sizes (a padded point: zero flux and a
variance of `PAD_VARIANCE`, which changes neither the mean nor the likelihood's choice beyond
rounding), so an object's features do not depend on the chunk it is gridded in.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from plasticc_jax import plasticc
from plasticc_jax.errors import UserError

# LSST passbands' effective wavelengths (Angstrom), u g r i z y, as avocado uses them.
WAVELENGTHS = np.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0])
WAVELENGTH_SCALE = 6000.0
LENGTH_SCALES = (5.0, 10.0, 20.0, 40.0, 80.0)
GRID_STEP_DAYS = 1.0
# The fits `DataConfig.gp_fit` names: (time scales tried, prediction grid step in days). "fast"
# tries one scale and predicts a quarter of the days (the fit and mean alone 4.4x faster,
# gridding 1.9x: `scripts/gp_fit_speed.py`); its epochs fall on the nearest grid day.
FITS: dict[str, tuple[tuple[float, ...], float]] = {
    "full": (LENGTH_SCALES, GRID_STEP_DAYS),
    "fast": ((20.0,), 4.0),
}
EPOCHS = (-10.0, 20.0, 50.0)  # days after the model's peak for the colour summaries
MIN_POINTS = 3
SIZES = (16, 32, 64, 128)  # objects are padded to the smallest that holds their points
MAX_POINTS = SIZES[-1]
PAD_VARIANCE = 1e12
# Objects per call, whatever their number (the last call padded with empty objects): one compiled
# shape per size, whose compiling (about a second each on 2 cores) was most of a small dataset's
# fitting time when calls grew with the chunk; larger calls fit no faster on the CPU.
CALL_OBJECTS = 16
# Calls dispatched before their results are read (a wave): the features are read once a wave.
WAVE_CALLS = 32
_BANDS = plasticc.PASSBANDS
# One wave of fits at a time in a process: chunks are gridded in threads, and two computations run
# at once on XLA's CPU client can wait on each other forever (seen on 2 cores).
_FIT_LOCK = threading.Lock()

GP_NAMES: tuple[str, ...] = (
    "gp_log10_length_scale",
    "gp_peak_offset",
    *(f"gp_peak_frac_{b}" for b in _BANDS),
    *(f"gp_blue_frac_{int(e):+d}" for e in EPOCHS),
    *(f"gp_red_frac_{int(e):+d}" for e in EPOCHS),
    *(f"gp_decline15_{b}" for b in _BANDS),
    "gp_rise_50",
    "gp_rise_20",
    "gp_fall_50",
    "gp_fall_20",
    "gp_rise_50_rest",
    "gp_rise_20_rest",
    "gp_fall_50_rest",
    "gp_fall_20_rest",
    "gp_positive_width",
    "gp_negative_width",
    "gp_n_peaks",
    "gp_chi2_per_point",
)


def _matern32(t1: jax.Array, w1: jax.Array, t2: jax.Array, w2: jax.Array, length) -> jax.Array:
    """Matern-3/2 kernel (amplitude 1) between (a,) and (b,) points (time, wavelength): (a, b)."""
    dt = (t1[:, None] - t2[None, :]) / length
    dw = (w1[:, None] - w2[None, :]) / WAVELENGTH_SCALE
    r = jnp.sqrt(3.0 * (dt * dt + dw * dw) + 1e-12)
    return (1.0 + r) * jnp.exp(-r)


@functools.cache
def batched_fit(
    window: tuple[float, float],
    lengths: tuple[float, ...] = LENGTH_SCALES,
    step: float = GRID_STEP_DAYS,
) -> Callable[..., tuple[jax.Array, ...]]:
    """A jitted function, vectorised over objects: (t, band, y, noise), each
    (objects, size) -> (the mean (objects, days, 6) on `grid_days(window, step)`, the chosen
    time scale among `lengths` (objects,), each point's squared residual over its variance
    (objects, size), 0 for padding)."""
    scales = jnp.array(lengths, jnp.float32)
    wavelengths = jnp.asarray(WAVELENGTHS, jnp.float32)
    days = jnp.asarray(grid_days(window, step), jnp.float32)
    grid_t, grid_w = jnp.repeat(days, 6), jnp.tile(wavelengths, days.size)

    def one(t, band, y, noise):
        w = wavelengths[band]

        def fit(length):
            chol = jnp.linalg.cholesky(_matern32(t, w, t, w, length) + jnp.diag(noise))
            alpha = jax.scipy.linalg.cho_solve((chol, True), y)
            return -0.5 * y @ alpha - jnp.log(jnp.diag(chol)).sum(), alpha

        log_like, alphas = jax.vmap(fit)(scales)
        # A scale whose Cholesky fails (NaN) is skipped; if all fail, the outputs are NaN.
        best = jnp.argmax(jnp.where(jnp.isnan(log_like), -jnp.inf, log_like))
        alpha = alphas[best]
        mean = _matern32(grid_t, grid_w, t, w, scales[best]) @ alpha
        # (K + N) alpha = y, so y - K alpha = N alpha: the residual needs no second product.
        # Summed outside, where the order of the sum does not depend on the call's shape.
        residuals = jnp.where(noise < PAD_VARIANCE, noise * alpha * alpha, 0.0)
        return mean.reshape(days.size, 6), scales[best], residuals

    return jax.jit(jax.vmap(one))


def grid_days(window: tuple[float, float], step: float = GRID_STEP_DAYS) -> np.ndarray:
    """The days (from t0) at which the process's mean is predicted."""
    return np.arange(-window[0], window[1] + step, step)


@dataclass
class FitCache:
    """Each object's features as last fitted, and what they were fitted on (`fitted_on`), for
    one set of fit settings. A replay re-scores an object every night it gets points, each time
    with all its points so far, and once those fall outside the window around its brightest
    detection, the window's points and so the features stay the same (an object's features
    depend on its own points alone): they are taken from here instead of fitted again.

    Attributes:
        ids: the objects (sorted).
        keys: (objects, 6) what each object's features were fitted on; NaN: not yet.
        values: (objects, len(GP_NAMES)) its features then.
    """

    ids: np.ndarray
    keys: np.ndarray
    values: np.ndarray

    @classmethod
    def for_objects(cls, ids: np.ndarray) -> FitCache:
        ids = np.unique(np.asarray(ids, np.int64))
        empty = np.full((ids.size, 6), np.nan)
        return cls(ids, empty, np.full((ids.size, len(GP_NAMES)), np.nan))


def fitted_on(
    mjd: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    starts: np.ndarray,
    peak_rows: np.ndarray,
    redshift: np.ndarray,
    window: tuple[float, float],
) -> np.ndarray:
    """(m, 6) what each object's features are computed from, in short: t0, the host photo-z,
    and the number of the window's points and the sums of their times, fluxes and errors. New
    points come later in time, so with t0 unchanged a new point is either in the window (the
    number changes) or not (the window's points, and so the features, are the same)."""
    counts = np.diff(np.r_[starts, mjd.size])
    o = np.repeat(np.arange(starts.size), counts)
    t0 = mjd[peak_rows]
    inside = ((mjd >= t0[o] - window[0]) & (mjd <= t0[o] + window[1])).astype(np.float64)
    m = starts.size
    sums = [
        np.bincount(o, inside * v, minlength=m) for v in (np.ones_like(mjd), mjd, flux, flux_err)
    ]
    return np.column_stack([t0, np.asarray(redshift, np.float64), *sums])


def gp_features(
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    starts: np.ndarray,
    peak_rows: np.ndarray,
    redshift: np.ndarray,
    window: tuple[float, float],
    *,
    lengths: tuple[float, ...] = LENGTH_SCALES,
    step: float = GRID_STEP_DAYS,
    cache: FitCache | None = None,
    object_ids: np.ndarray | None = None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """`GP_NAMES` of m objects (see the module docstring).

    Args:
        mjd (days), passband (0-5), flux, flux_err (FLUXCAL): (n,) rows grouped by object and
            sorted by time within it.
        starts: (m,) first row of each object; peak_rows: (m,) its highest-S/N detection (t0).
        redshift: (m,) host photo-z (0 for galactic objects; NaN: the rest-frame times NaN).
        window: days before and after t0 whose points are fitted and predicted.
        lengths, step: the time scales tried and the prediction grid's step in days (`FITS`,
            as `data.gp_fit` names them; the defaults: "full").
        cache: features fitted before with these settings, of `object_ids` (m,), which must
            be among its objects: an object fitted on the same points is not fitted again, and
            the others' features are kept there.
        stop: once set, the fit stops at its next call (`FitStopped`): the caller of a fit
            in another thread was interrupted (`gridding`).

    Returns:
        (m, len(GP_NAMES)) float64, NaN where undefined.

    Raises:
        FitStopped: `stop` was set (the cache unchanged).
    """
    if cache is None:
        return _fit_features(
            mjd, passband, flux, flux_err, starts, peak_rows, redshift, window, lengths, step, stop
        )
    if object_ids is None:
        raise ValueError("gp_features: a cache needs the objects' ids (object_ids)")
    keys = fitted_on(mjd, flux, flux_err, starts, peak_rows, redshift, window)
    pos = np.searchsorted(cache.ids, object_ids)
    if not np.array_equal(cache.ids[np.minimum(pos, cache.ids.size - 1)], object_ids):
        raise ValueError("gp_features: an object is not among the cache's")
    same = (cache.keys[pos] == keys) | (np.isnan(cache.keys[pos]) & np.isnan(keys))
    hit = same.all(axis=1) & ~np.isnan(cache.keys[pos, 2])
    out = cache.values[pos]
    miss = np.flatnonzero(~hit)
    if miss.size:
        counts = np.diff(np.r_[starts, mjd.size])
        rows = np.repeat(~hit, counts)
        sub_starts = np.r_[0, np.cumsum(counts[miss])[:-1]].astype(np.int64)
        out[miss] = _fit_features(
            mjd[rows],
            passband[rows],
            flux[rows],
            flux_err[rows],
            sub_starts,
            peak_rows[miss] - starts[miss] + sub_starts,
            redshift[miss],
            window,
            lengths,
            step,
            stop,
        )
        cache.keys[pos[miss]], cache.values[pos[miss]] = keys[miss], out[miss]
    return out


def _fit_features(
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    starts: np.ndarray,
    peak_rows: np.ndarray,
    redshift: np.ndarray,
    window: tuple[float, float],
    lengths: tuple[float, ...],
    step: float,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """`gp_features` without a cache: every object fitted."""
    m = starts.size
    out = np.full((m, len(GP_NAMES)), np.nan)
    if not m:
        return out
    counts_all = np.diff(np.r_[starts, mjd.size])
    o = np.repeat(np.arange(m), counts_all)
    t0 = mjd[peak_rows]
    inside = (mjd >= t0[o] - window[0]) & (mjd <= t0[o] + window[1])
    # Inside the window; beyond MAX_POINTS, the highest signal-to-noise ones (kept in time order).
    order = np.lexsort((-np.abs(flux) / flux_err, ~inside, o))
    rank = np.empty(mjd.size, np.int64)
    rank[order] = np.arange(mjd.size) - np.repeat(starts, counts_all)
    used = np.flatnonzero(inside & (rank < MAX_POINTS))
    # In one order whatever the input's order of points at the same time (the fit's rounding
    # depends on it).
    used = used[np.lexsort((flux[used], passband[used], mjd[used], o[used]))]
    counts = np.bincount(o[used], minlength=m)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    scale = np.zeros(m)
    np.maximum.at(scale, o[used], np.abs(flux[used]))
    fit = batched_fit((float(window[0]), float(window[1])), tuple(lengths), float(step))
    days = grid_days(window, step)
    calls = []  # (padded size, the call's objects)
    lower = MIN_POINTS - 1
    for size in SIZES:
        chosen = np.flatnonzero((counts > lower) & (counts <= size))
        lower = size
        # Each object's result is the same whatever else is in its call (checked by the tests).
        calls += [(size, chosen[i : i + CALL_OBJECTS]) for i in range(0, chosen.size, CALL_OBJECTS)]

    def padded(size: int, part: np.ndarray) -> tuple[np.ndarray, ...]:
        """A call's (t, band, y, noise), (CALL_OBJECTS, size) each: its objects' points from
        their t0, scaled by their largest |flux|; empty objects and points padded."""
        n = counts[part]
        slot = np.arange(size)[None, :] < n[:, None]
        rows = used[(first[part][:, None] + np.arange(size)[None, :])[slot]]
        t = np.zeros((CALL_OBJECTS, size), np.float32)
        band = np.zeros((CALL_OBJECTS, size), np.int32)
        y = np.zeros((CALL_OBJECTS, size), np.float32)
        noise = np.full((CALL_OBJECTS, size), PAD_VARIANCE, np.float32)
        s = np.repeat(scale[part], n)
        real = np.zeros((CALL_OBJECTS, size), bool)
        real[: part.size] = slot
        t[real] = mjd[rows] - np.repeat(t0[part], n)
        band[real] = passband[rows]
        # A variance beyond float32 is inf, an object of zero fluxes NaN: features NaN, no
        # warning (a review found NumPy's printed).
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            y[real] = flux[rows] / s
            noise[real] = (flux_err[rows] / s) ** 2
        return t, band, y, noise

    for w in range(0, len(calls), WAVE_CALLS):
        wave = calls[w : w + WAVE_CALLS]
        # On the CPU whatever the default device: a dataset's features do not depend on the
        # machine that prepared it. JAX computes a call while the next is padded (dispatch does
        # not wait for it), and the features are read once a wave, not once a call.
        with _FIT_LOCK:
            pending = []
            for call in wave:
                if stop is not None and stop.is_set():
                    raise FitStopped
                pending.append(fit(*jax.device_put(padded(*call), _cpu())))
            results = [
                [np.asarray(a)[: part.size] for a in outputs]
                for (_, part), outputs in zip(wave, pending, strict=True)
            ]
        part = np.concatenate([part for _, part in wave])
        mean = np.concatenate([r[0] for r in results]).astype(np.float64)
        length = np.concatenate([r[1] for r in results]).astype(np.float64)
        # Summed per call, where the order of the sum does not depend on the call's shape.
        residuals = np.concatenate([r[2].sum(axis=1, dtype=np.float64) for r in results])
        chi2 = residuals / counts[part]
        out[part] = read_features(days, mean, length, chi2, redshift[part])
    return out


class FitStopped(Exception):
    """A fit stopped before its end (`gp_features`' `stop`)."""


def _cpu() -> jax.Device:
    """JAX's CPU device.

    Raises:
        UserError: JAX was told to start other platforms only (`JAX_PLATFORMS=cuda`; the
            command line adds `cpu` to it, `doctor.keep_cpu_platform`).
    """
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        platforms = os.environ.get("JAX_PLATFORMS", "")
        raise UserError(
            f"the Gaussian-process features are fitted on the CPU, which JAX_PLATFORMS={platforms} "
            f"leaves out: set JAX_PLATFORMS={platforms},cpu (the first stays the default)"
        ) from None


def read_features(
    days: np.ndarray, mean: np.ndarray, length: np.ndarray, chi2: np.ndarray, redshift: np.ndarray
) -> np.ndarray:
    """`GP_NAMES` of m objects from their smooth models `mean` (m, len(days), 6) on a regular
    time grid (days from the highest-S/N detection), their time scales `length` and residuals
    `chi2` per point (m,); rows without a positive peak are NaN."""
    m, g = mean.shape[:2]
    step = days[1] - days[0]
    rows = np.arange(m)
    total = np.nan_to_num(mean.sum(axis=2), nan=-np.inf)
    peak = total.argmax(axis=1)
    height = total[rows, peak]
    absolute = np.abs(mean).sum(axis=2) + 1e-12
    nan = np.full(m, np.nan)

    def at(day: float) -> tuple[np.ndarray, np.ndarray]:
        i = peak + round(float(day / step))
        ok = (i >= 0) & (i < g)
        return np.clip(i, 0, g - 1), ok

    columns = [np.log10(length), days[peak]]
    columns += list((mean[rows, peak] / absolute[rows, peak][:, None]).T)
    for bands in ((0, 1), (3, 4, 5)):
        for day in EPOCHS:
            i, ok = at(day)
            frac = mean[rows, i][:, list(bands)].sum(axis=1) / absolute[rows, i]
            columns.append(np.where(ok, frac, nan))
    i15, ok15 = at(15.0)
    band_peak = mean[rows, peak]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean[rows, i15] / band_peak
    columns += list(np.where(ok15[:, None] & (band_peak > 0), ratio, np.nan).T)
    position = np.arange(g)[None, :]
    times = []
    for before in (True, False):
        for level in (0.5, 0.2):
            below = total < level * height[:, None]
            side = (position <= peak[:, None]) if before else (position >= peak[:, None])
            hit = below & side
            # The nearest crossing to the peak: the last before it, the first after it.
            first = (g - 1 - hit[:, ::-1].argmax(axis=1)) if before else hit.argmax(axis=1)
            times.append(np.where(hit.any(axis=1), np.abs(days[first] - days[peak]), np.nan))
    rest = np.where(np.isfinite(redshift), 1.0 + np.maximum(redshift, 0.0), np.nan)
    columns += times + [t / rest for t in times]
    with np.errstate(divide="ignore", invalid="ignore"):
        columns.append(np.clip(total, 0, None).sum(axis=1) * step / height)
        columns.append(np.clip(-total, 0, None).sum(axis=1) * step / height)
    inner = total[:, 1:-1]
    maxima = (inner > total[:, :-2]) & (inner >= total[:, 2:])
    columns.append((maxima & (inner > 0.3 * height[:, None])).sum(axis=1).astype(np.float64))
    columns.append(chi2)
    out = np.stack(columns, axis=1).astype(np.float64)
    out[~(height > 0)] = np.nan
    return out
