"""How fast could the Gaussian-process features be computed at gridding time? (research, #10)

    python scripts/gp_fit_speed.py [--objects 4096] [--rounds 3] [--lightcurves FILE]

`gp_features_probe.py` found the Gaussian-process features worth +0.0115 ± 0.0041 on the
leave-one-known-class-out validation (shipped fusion weights), with a per-object NumPy fit.
This times the batched fit (first a prototype in `scripts/gp_batched.py`, now the package's
`plasticc_jax/gp_features.py`: jit, vmap over objects, float32 on the CPU):
first the fit and the mean alone on synthetic points, per padded size (32, 64, 128 points) and
for the training set's mix of sizes (points inside the window: 35% at most 32, 41% 33-64, 24%
65-127), as validated (five time scales, a one-day grid) and cheaper (one 20-day scale, a
four-day grid); best of `--rounds`. With `--lightcurves` (the training light curves, as `make
prepare` fetched them), then, side by side on those objects, each the best of `--rounds`: the
package's gridding (`gridding.grid_chunk`, what `prepare`, `score` from files and each `replay`
night run; since the features were built in, it includes them), the batched features end to end
(window, padding, fit, features: `gp_features.gp_features`), and the probe's per-object NumPy fit
on the first 1,000 objects, with how far the batched features are from the NumPy ones there;
and the package's gridding with `data.gp_fit` full and fast and without the features, side by
side.
Result (2 quiet cores, one run, with the prototype, before the features were built in):
docs/evaluation.md and `gp_features_probe.py`. With the package, on a slower day of the same
machine (one run, 2 cores, `data.gp_fit` added): the fit and mean alone 1,425 objects/s as
validated, 6,245 with the cheaper fit (4.4x); the package's gridding of the 7,848 training
objects side by side 885 objects/s with `gp_fit=full`, 1,716 with `fast` (1.94x), 5,973 without
the features.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from gp_features_probe import GP_NAMES, LENGTH_SCALES, gp_features

from plasticc_jax import gridding
from plasticc_jax.config import DataConfig
from plasticc_jax.gp_features import batched_fit
from plasticc_jax.gp_features import gp_features as batched_gp_features
from plasticc_jax.lightcurve_rows import read_files

MIX = {32: 0.35, 64: 0.41, 128: 0.24}
VARIANTS = {
    "as validated (5 time scales, 1-day grid)": (LENGTH_SCALES, 1.0),
    "cheaper (1 time scale, 4-day grid)": ((20.0,), 4.0),
}


def _best(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic(n_objects: int, n: int, rng: np.random.Generator) -> list[jnp.ndarray]:
    """Points of a smooth transient; the last quarter of each object's points padding."""
    t = np.sort(rng.uniform(-64, 192, (n_objects, n)), axis=1)
    band = rng.integers(0, 6, (n_objects, n))
    y = np.exp(-0.5 * (t / 30.0) ** 2) + rng.normal(0, 0.05, t.shape)
    noise = np.full(t.shape, 0.05**2)
    y[:, (3 * n) // 4 :], noise[:, (3 * n) // 4 :] = 0.0, 1e12
    return [jnp.asarray(t, jnp.float32), jnp.asarray(band, jnp.int32)] + [
        jnp.asarray(a, jnp.float32) for a in (y, noise)
    ]


def fit_alone(n_objects: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    inputs = {n: synthetic(n_objects, n, rng) for n in MIX}
    for name, (lengths, step) in VARIANTS.items():
        fit = batched_fit((64.0, 192.0), lengths, step)
        rates = {}
        for n, batch in inputs.items():
            fit(*batch)[0].block_until_ready()  # compile
            rates[n] = n_objects / _best(
                lambda f=fit, b=batch: f(*b)[0].block_until_ready(), rounds
            )
        mix = 1.0 / sum(share / rates[n] for n, share in MIX.items())
        sizes = ", ".join(f"{n} points {r:,.0f}/s" for n, r in rates.items())
        print(f"fit and mean, {name}: {sizes}; the training set's mix {mix:,.0f} objects/s")


def on_light_curves(path: Path, rounds: int) -> None:
    rows = read_files([path])
    rows = rows.take(np.lexsort((rows.mjd, rows.object_id)))
    _, starts = np.unique(rows.object_id, return_index=True)
    m = starts.size
    meta = np.full((m, len(gridding.META_VALUES)), np.nan, np.float32)
    chunk = gridding.Chunk(rows, starts, meta, np.zeros(m))
    spec = gridding.GridSpec.from_config(DataConfig())
    window = (spec.window_before, spec.window_after)
    o = np.repeat(np.arange(m), np.diff(np.r_[starts, len(rows)]))
    peak = gridding.reference_rows(o, starts, rows.flux / rows.flux_err, rows.detected)
    redshift = np.full(m, 0.1)
    arrays = (rows.mjd, rows.passband, rows.flux, rows.flux_err, starts, peak, redshift, window)
    batched = batched_gp_features(*arrays)  # compiles every size
    grid_s = _best(lambda: gridding.grid_chunk(chunk, spec), rounds)
    batched_s = _best(lambda: batched_gp_features(*arrays), rounds)
    ends = np.r_[starts[1:], len(rows)]
    first = 1000

    def numpy_fit() -> np.ndarray:
        return np.stack(
            [
                gp_features(
                    *(a[starts[i] : ends[i]] for a in rows_of),
                    rows.mjd[peak[i]],
                    0.1,
                    window,
                )
                for i in range(first)
            ]
        )

    # The package's gridding with each `data.gp_fit`, and without the features, side by side:
    # the rounds alternate, each the best of its own.
    specs = {
        "full": spec,
        "fast": dataclasses.replace(spec, gp_fit="fast"),
        "no GP features": dataclasses.replace(spec, gp_features=False),
    }
    for each in specs.values():
        gridding.grid_chunk(chunk, each)  # compiles
    seconds: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(rounds):
        for name, each in specs.items():
            seconds[name].append(_best(lambda e=each: gridding.grid_chunk(chunk, e), 1))
    rates = {name: m / min(s) for name, s in seconds.items()}
    print(
        "gridding side by side: "
        + ", ".join(f"{name} {rate:,.0f} objects/s" for name, rate in rates.items())
        + f"; fast {rates['fast'] / rates['full']:.2f}x full"
    )

    rows_of = (rows.mjd, rows.passband, rows.flux, rows.flux_err)
    numpy_s = _best(numpy_fit, rounds)
    reference = numpy_fit()
    grid_rate, batched_rate = m / grid_s, m / batched_s
    print(
        f"{m} objects: gridding with features {grid_rate:,.0f} objects/s; the batched GP "
        f"features end to end {batched_rate:,.0f}/s ({batched_rate / grid_rate:.3f}x the "
        f"gridding's rate: both together {1 / (1 / grid_rate + 1 / batched_rate):,.0f}/s); the "
        f"NumPy fit {first / numpy_s:,.0f}/s (first {first} objects)"
    )
    near = batched[:first]
    same_nan = (np.isnan(near) == np.isnan(reference)).all(axis=0)
    both = np.isfinite(near) & np.isfinite(reference)
    scale = np.maximum(np.abs(reference), 1e-3)
    worst = np.where(both, np.abs(near - reference) / scale, 0.0)
    print(
        f"batched against NumPy on the first {first}: the time scale chosen alike for "
        f"{np.isclose(near[:, 0], reference[:, 0]).mean():.1%} of them; NaN alike in "
        f"{same_nan.sum()}/{len(GP_NAMES)} features; relative difference over defined values "
        f"median {np.median(worst[both]):.1e}, 99th percentile {np.percentile(worst[both], 99):.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lightcurves", type=Path, default=None)
    args = parser.parse_args()
    fit_alone(args.objects, args.rounds)
    if args.lightcurves:
        on_light_curves(args.lightcurves, args.rounds)


if __name__ == "__main__":
    main()
