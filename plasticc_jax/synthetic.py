"""Synthetic light curves in the PLAsTiCC file formats, for tests and benchmarks.

Not a physical simulation: each class gets a simple, distinct shape (a rise-and-decline transient
with class-dependent time scales and colour, a periodic variable, or a flat source with flares), so
the pipeline has structure to learn. Files are generated block by block, so arbitrarily large
inputs (the 20-million-row benchmark) take bounded memory.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import plasticc

# class -> (kind, time scale in days, colour slope per passband)
_SHAPES: dict[int, tuple[str, float, float]] = {
    6: ("transient", 15.0, 0.0),
    15: ("transient", 60.0, -0.15),
    16: ("periodic", 2.0, 0.0),
    42: ("transient", 50.0, 0.1),
    52: ("transient", 20.0, 0.15),
    53: ("periodic", 300.0, 0.3),
    62: ("transient", 20.0, 0.1),
    64: ("transient", 3.0, 0.3),
    65: ("flare", 1.0, -0.2),
    67: ("transient", 15.0, 0.2),
    88: ("periodic", 150.0, 0.05),
    90: ("transient", 25.0, 0.05),
    92: ("periodic", 0.6, 0.0),
    95: ("transient", 90.0, -0.05),
}


def _block(rng: np.random.Generator, object_ids: np.ndarray, targets: np.ndarray):
    """Metadata and light-curve rows (sorted by object, then MJD) for one block of objects."""
    n = len(object_ids)
    galactic = np.isin(targets, plasticc.GALACTIC_CLASSES)
    ddf = rng.random(n) < 0.25
    photoz = np.where(galactic, 0.0, rng.uniform(0.05, 1.5, n))
    meta = pd.DataFrame(
        {
            "object_id": object_ids,
            "ra": rng.uniform(0, 360, n),
            "decl": rng.uniform(-70, 5, n),
            "ddf": ddf.astype(int),
            "hostgal_specz": np.where(rng.random(n) < 0.1, photoz, np.nan),
            "hostgal_photoz": photoz,
            "hostgal_photoz_err": np.where(galactic, 0.0, 0.05 + 0.1 * rng.random(n)),
            "distmod": np.where(galactic, np.nan, 40.0 + 3.0 * photoz),
            "mwebv": rng.uniform(0.0, 0.3, n),
            "target": targets,
        }
    )
    n_obs = np.where(ddf, rng.integers(150, 350, n), rng.integers(50, 160, n))
    owner = np.repeat(np.arange(n), n_obs)
    mjd = rng.uniform(plasticc.MJD_MIN, plasticc.MJD_MAX, owner.size)
    order = np.lexsort((mjd, owner))
    owner, mjd = owner[order], mjd[order]
    band = rng.integers(0, plasticc.N_PASSBANDS, owner.size)

    kind = np.array([_SHAPES[int(t)][0] for t in targets])[owner]
    scale = np.array([_SHAPES[int(t)][1] for t in targets])[owner]
    colour = np.array([_SHAPES[int(t)][2] for t in targets])[owner]
    amplitude = (10 ** rng.uniform(1.5, 3.5, n))[owner] * (1 + colour * (band - 2.5))
    peak = rng.uniform(plasticc.MJD_MIN + 100, plasticc.MJD_MAX - 100, n)[owner]
    dt = mjd - peak
    transient = np.where(
        dt < 0, np.exp(-0.5 * (dt / (0.5 * scale)) ** 2), np.exp(-np.maximum(dt, 0.0) / scale)
    )
    phase = rng.uniform(0, 2 * np.pi, n)[owner]
    periodic = 0.5 * (1 + np.sin(2 * np.pi * mjd / scale + phase))
    flare = (rng.random(owner.size) < 0.05) * rng.exponential(1.0, owner.size)
    shape = np.select([kind == "transient", kind == "periodic"], [transient, periodic], flare)
    flux_err = (5.0 + 20.0 * rng.random(n))[owner] * (1 + 0.2 * rng.random(owner.size))
    flux = amplitude * shape + rng.normal(0.0, 1.0, owner.size) * flux_err
    lightcurves = pd.DataFrame(
        {
            "object_id": object_ids[owner],
            "mjd": mjd.round(4),
            "passband": band,
            "flux": flux.astype(np.float32),
            "flux_err": flux_err.astype(np.float32),
            "detected": (np.abs(flux) / flux_err > 5).astype(int),
        }
    )
    return meta, lightcurves


def write_synthetic(
    folder: Path,
    n_objects: int,
    *,
    fmt: str = "unblinded",
    classes: tuple[int, ...] = plasticc.TRAINING_CLASSES,
    seed: int = 0,
    block_objects: int = 20_000,
    first_object_id: int = 1,
) -> tuple[Path, Path]:
    """Write a metadata file and a light-curve file in the `unblinded` or `kaggle` format.

    The unblinded format uses `detected_bool`/`ddf_bool`, space-padded metadata, `-9` for missing
    values, gzip, and carries truth columns (`true_target`, `true_z`, `tflux_*`) that a model must
    never read. Returns (metadata path, light-curve path).
    """
    if fmt not in ("unblinded", "kaggle"):
        raise ValueError(f"unknown format {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if fmt == "unblinded":
        meta_path = folder / "plasticc_train_metadata.csv.gz"
        lc_path = folder / "plasticc_train_lightcurves.csv.gz"
        opener = gzip.open
    else:
        meta_path = folder / "training_set_metadata.csv"
        lc_path = folder / "training_set.csv"
        opener = open
    targets = rng.choice(np.asarray(classes), n_objects)
    with opener(meta_path, "wt") as meta_out, opener(lc_path, "wt") as lc_out:
        for start in range(0, n_objects, block_objects):
            ids = np.arange(start, min(start + block_objects, n_objects)) + first_object_id
            meta, lcs = _block(rng, ids, targets[start : start + len(ids)])
            header = start == 0
            if fmt == "unblinded":
                meta = meta.rename(columns={"ddf": "ddf_bool"}).fillna(plasticc.MISSING_VALUE)
                meta["true_target"] = meta["target"]
                meta["true_z"] = meta["hostgal_photoz"]
                meta["tflux_r"] = 100.0
                # Comma separated, fields space padded as in the real release.
                padded = meta.round(4).astype(str).apply(lambda col: col.str.rjust(10))
                padded.to_csv(meta_out, index=False, header=header)
                lcs = lcs.rename(columns={"detected": "detected_bool"})
            else:
                meta["gal_l"] = 0.0
                meta["gal_b"] = 0.0
                meta.to_csv(meta_out, index=False, header=header)
            lcs.to_csv(lc_out, index=False, header=header, float_format="%.6f")
    return meta_path, lc_path
