"""How fast could the Gaussian-process features be fitted at scoring time? (research, #10)

    python scripts/gp_fit_speed.py [--objects 4096] [--rounds 3] [--lightcurves FILE]

`gp_features_probe.py` found the Gaussian-process features worth +0.0135 ± 0.0060 on the
leave-one-known-class-out validation, with a per-object NumPy fit. This times the same fit
batched in JAX (jit, vmap over objects, float32 on the CPU): Matern-3/2 over (time, wavelength),
the time length scale the best of five by marginal likelihood, the mean predicted in six bands
on a one-day grid over the 256-day window (`as validated`), and a cheaper variant (one length
scale, 20 days, a four-day grid). Objects are padded to 32, 64 or 128 points (padding: a point
of huge variance, which changes neither the mean nor the choice of length scale);
the mix of sizes is the training set's (points inside the window: 35% at most 32, 41% 33-64, 24%
65-127). Synthetic points; only the fit and the mean are timed (not reading the features off
it, cutting the window or padding: optimistic). Prints objects/s per size and for the mix,
best of `--rounds`. Result (2 quiet cores, one run): docs/evaluation.md and
`gp_features_probe.py`. With `--lightcurves` (the training light curves, as `make prepare`
fetched them), first, side by side on those objects: the package's gridding with its features
(`gridding.grid_chunk`, what `prepare`, `score` from files and each `replay` night run) against
the probe's per-object NumPy fit (`gp_features_probe.gp_features`, on the first 1,000 objects).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

WAVELENGTHS = jnp.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0])
MIX = {32: 0.35, 64: 0.41, 128: 0.24}
VARIANTS = {
    "as validated (5 length scales, 1-day grid)": ((5.0, 10.0, 20.0, 40.0, 80.0), 1.0),
    "cheaper (1 length scale, 4-day grid)": ((20.0,), 4.0),
}


def _matern32(t1, w1, t2, w2, length):
    dt = (t1[:, None] - t2[None, :]) / length
    dw = (w1[:, None] - w2[None, :]) / 6000.0
    r = jnp.sqrt(3.0 * (dt * dt + dw * dw) + 1e-12)
    return (1.0 + r) * jnp.exp(-r)


def batched_fit(lengths: tuple[float, ...], step: float):
    """A jitted function: (t, band, y, noise) each (objects, n) -> (objects, days, 6) mean."""
    scales = jnp.array(lengths)
    days = jnp.arange(-64.0, 192.0 + step, step)
    grid_t, grid_w = jnp.repeat(days, 6), jnp.tile(WAVELENGTHS, days.size)

    def one(t, band, y, noise):
        w = WAVELENGTHS[band]

        def fit(length):
            chol = jnp.linalg.cholesky(_matern32(t, w, t, w, length) + jnp.diag(noise))
            alpha = jax.scipy.linalg.cho_solve((chol, True), y)
            return -0.5 * y @ alpha - jnp.log(jnp.diag(chol)).sum(), alpha

        log_like, alphas = jax.vmap(fit)(scales)
        best = jnp.argmax(log_like)
        mean = _matern32(grid_t, grid_w, t, w, scales[best]) @ alphas[best]
        return mean.reshape(days.size, 6)

    return jax.jit(jax.vmap(one))


def synthetic(n_objects: int, n: int, rng: np.random.Generator) -> list[jnp.ndarray]:
    t = np.sort(rng.uniform(-64, 192, (n_objects, n)), axis=1)
    band = rng.integers(0, 6, (n_objects, n))
    y = np.exp(-0.5 * (t / 30.0) ** 2) + rng.normal(0, 0.05, t.shape)
    noise = np.full(t.shape, 0.05**2)
    noise[:, (3 * n) // 4 :] = 1e12  # a quarter of each batch is padding
    return [
        jnp.asarray(a, jnp.float32 if a.dtype.kind == "f" else jnp.int32)
        for a in (t, band, y, noise)
    ]


def gridding_against_numpy_fit(path: Path, rounds: int) -> None:
    """Objects/s of the package's gridding and of the probe's NumPy fit, on real light curves."""
    sys.path.insert(0, str(Path(__file__).parent))
    from gp_features_probe import gp_features

    from plasticc_jax import gridding
    from plasticc_jax.config import DataConfig
    from plasticc_jax.lightcurve_rows import read_files

    rows = read_files([path])
    rows = rows.take(np.lexsort((rows.mjd, rows.object_id)))
    _, starts = np.unique(rows.object_id, return_index=True)
    m = starts.size
    chunk = gridding.Chunk(
        rows, starts, np.full((m, len(gridding.META_VALUES)), np.nan, np.float32), np.zeros(m)
    )
    spec = gridding.GridSpec.from_config(DataConfig())
    grid = min(_timed(lambda: gridding.grid_chunk(chunk, spec)) for _ in range(rounds))
    o = np.repeat(np.arange(m), np.diff(np.r_[starts, len(rows)]))
    peak = gridding.reference_rows(o, starts, rows.flux / rows.flux_err, rows.detected)
    ends = np.r_[starts[1:], len(rows)]

    def fit() -> None:
        for i in range(1000):
            cut = slice(starts[i], ends[i])
            args = (rows.mjd[cut], rows.passband[cut], rows.flux[cut], rows.flux_err[cut])
            gp_features(*args, rows.mjd[peak[i]], 0.1, (spec.window_before, spec.window_after))

    numpy_fit = min(_timed(fit) for _ in range(rounds))
    print(
        f"gridding with features {m / grid:,.0f} objects/s ({m} objects); the NumPy fit "
        f"{1000 / numpy_fit:,.0f} objects/s (1,000 objects): "
        f"{(1000 / numpy_fit) / (m / grid):.3f}x the gridding's rate"
    )


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lightcurves", type=Path, default=None)
    args = parser.parse_args()
    if args.lightcurves:
        gridding_against_numpy_fit(args.lightcurves, args.rounds)
    rng = np.random.default_rng(0)
    inputs = {n: synthetic(args.objects, n, rng) for n in MIX}
    for name, (lengths, step) in VARIANTS.items():
        fit = batched_fit(lengths, step)
        rates = {}
        for n, batch in inputs.items():
            fit(*batch).block_until_ready()  # compile
            best = np.inf
            for _ in range(args.rounds):
                start = time.perf_counter()
                fit(*batch).block_until_ready()
                best = min(best, time.perf_counter() - start)
            rates[n] = args.objects / best
        mix = 1.0 / sum(share / rates[n] for n, share in MIX.items())
        sizes = ", ".join(f"{n} points {r:,.0f}/s" for n, r in rates.items())
        print(f"{name}: {sizes}; the training set's mix {mix:,.0f} objects/s")


if __name__ == "__main__":
    main()
