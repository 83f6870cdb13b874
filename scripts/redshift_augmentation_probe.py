"""Would avocado's redshift augmentation help the detector's classifier? (research check, #10)

    python scripts/redshift_augmentation_probe.py RUN [--out FILE]   # RUN: with `make validate`

The winning PLAsTiCC classifier (avocado, Boone 2019) trained its gradient-boosted trees on copies
of each extragalactic training object moved to a higher redshift. Here, a simpler version without
its Gaussian-process model across wavelengths (no K-correction: each passband keeps its own
observer-frame light curve): each extragalactic object of the train split gets `COPIES` copies at a
redshift z' drawn uniformly in [z, min(2z + 0.2, 3)], where z is its host's photometric redshift:

- time dilated about t0 (its brightest detection, as gridding chooses it): the copy is the
  original light curve stretched by (1 + z') / (1 + z) in time, linearly interpolated per passband
  and read at the original observation times (the survey's cadence stays real);
- dimmed by the difference in distance modulus (flat LambdaCDM, H0 70, Omega_m 0.3, anchored to
  the object's own `distmod`), the measurement errors kept (sky noise) and noise added so that the
  scatter about the dimmed curve is again the error; detected where |flux| / error >= 5;
- its metadata moved with it: `hostgal_photoz` z', its error scaled by (1 + z') / (1 + z),
  `distmod` the new one.

The copies go through the package's own gridding and features (`gridding.grid_chunk`, as
`prepare`); a copy the gridding rejects (too few observations) is dropped.

Per fold, per kind, exactly as `validate` fits the `classifier` component (the package's
`components.Classifier`, its settings from the validated run): fitted on the train split's other
known classes, with or without their copies, calibrated on the val split's other known objects of
the same kind, scored on the val split and the held-out class. The recomputation without copies
reproduces the stored `classifier` column (printed). Only train and val splits are read, never
the test split. The adoption rule is docs/evaluation.md's: the candidate replaces the shipped
configuration only if its best fusion beats the shipped one by more than twice the standard error
of the paired per-fold differences.

Result (default-rare run, docs/evaluation.md; 76 s on 2 cores): the recomputed features and
classifier reproduce the stored ones exactly; with the copies the classifier alone falls 0.736 ->
0.717, in its place the fusion 0.814 -> 0.810, beside it at best 0.816 (+0.0014 ± 0.0009, 5/10
folds): not adopted.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import integrate
from validation_probe import (
    compare_with_classifier,
    evidence,
    probe_arguments,
    read_validation,
    with_fold_columns,
)

from plasticc_jax import gridding
from plasticc_jax.calibration import Reference
from plasticc_jax.components import Classifier
from plasticc_jax.config import Config
from plasticc_jax.gridding import FEATURE_NAMES, META_VALUES, Chunk
from plasticc_jax.lightcurve_rows import Rows

COPIES = 2
MAX_Z = 3.0
DETECTION_SNR = 5.0
SEED = 0


def distance_modulus(z: np.ndarray) -> np.ndarray:
    """mu(z) in a flat LambdaCDM universe (H0 = 70 km/s/Mpc, Omega_m = 0.3)."""
    c_over_h0 = 299_792.458 / 70.0  # Mpc

    def comoving(zi: float) -> float:
        return integrate.quad(lambda x: 1.0 / np.sqrt(0.3 * (1 + x) ** 3 + 0.7), 0.0, zi)[0]

    grid = np.linspace(0.0, MAX_Z + 0.1, 600)
    dc = np.array([comoving(zi) for zi in grid])
    dl = (1 + z) * c_over_h0 * np.interp(z, grid, dc)
    return 5.0 * np.log10(np.maximum(dl, 1e-9) * 1e6 / 10.0)


def read_train_rows(
    objects: pd.DataFrame, raw_dir: Path, extragalactic_only: bool = True
) -> tuple[Rows, np.ndarray, np.ndarray, np.ndarray]:
    """(rows sorted by object and time, starts, meta (m, META_VALUES), object ids) of the train
    split's (extragalactic) known objects, from the raw files `prepare` read."""
    raw = np.stack(objects["raw"].to_numpy())
    kind = raw[:, FEATURE_NAMES.index("is_galactic")] < 0.5 if extragalactic_only else True
    ids = np.sort(objects["object_id"].to_numpy()[(objects["split"] == "train").to_numpy() & kind])
    rows = pd.read_csv(raw_dir / "plasticc_train_lightcurves.csv.gz")
    rows = rows[rows["object_id"].isin(ids)].sort_values(["object_id", "mjd"], kind="stable")
    meta = pd.read_csv(raw_dir / "plasticc_train_metadata.csv.gz").set_index("object_id").loc[ids]
    meta = meta.rename(columns={"ddf_bool": "ddf"})
    found, starts = np.unique(rows["object_id"].to_numpy(), return_index=True)
    assert np.array_equal(found, ids), "train objects without light curves"
    out = Rows(
        rows["object_id"].to_numpy(np.int64),
        rows["mjd"].to_numpy(np.float64),
        rows["passband"].to_numpy(np.int64),
        rows["flux"].to_numpy(np.float64),
        rows["flux_err"].to_numpy(np.float64),
        rows["detected_bool"].to_numpy().astype(bool),
        0,
    )
    return out, starts.astype(np.int64), meta[list(META_VALUES)].to_numpy(np.float32), ids


def stretched_flux(rows: Rows, starts: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """(n,) each object's light curve stretched in time by `stretch` (m,) about t0 (its
    brightest detection, as gridding chooses it), linearly interpolated per passband and read at
    the original observation times (the survey's cadence stays real)."""
    m = starts.size
    counts = np.diff(np.r_[starts, len(rows)])
    o = np.repeat(np.arange(m), counts)
    t0 = rows.mjd[gridding.reference_rows(o, starts, rows.flux / rows.flux_err, rows.detected)]
    source_time = t0[o] + (rows.mjd - t0[o]) / stretch[o]
    flux = np.empty(len(rows))
    for i in range(m):
        block = slice(starts[i], starts[i] + counts[i])
        for band in np.unique(rows.passband[block]):
            at = np.flatnonzero(rows.passband[block] == band) + starts[i]
            flux[at] = np.interp(source_time[at], rows.mjd[at], rows.flux[at])
    return flux


def augment(
    rows: Rows, starts: np.ndarray, meta: np.ndarray, rng: np.random.Generator
) -> tuple[Rows, np.ndarray]:
    """One redshifted copy of every object (see the module's docstring)."""
    o = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, len(rows)]))
    z = meta[:, META_VALUES.index("hostgal_photoz")].astype(np.float64)
    z_new = rng.uniform(z, np.minimum(2 * z + 0.2, MAX_Z))
    stretch = (1 + z_new) / (1 + z)
    scale = 10 ** (-0.4 * (distance_modulus(z_new) - distance_modulus(z)))
    flux = stretched_flux(rows, starts, stretch)
    err = rows.flux_err
    flux = scale[o] * flux + rng.normal(0.0, 1.0, len(rows)) * err * np.sqrt(1 - scale[o] ** 2)
    new_rows = Rows(
        rows.object_id, rows.mjd, rows.passband, flux, err, np.abs(flux) / err >= DETECTION_SNR, 0
    )
    new_meta = meta.copy()
    new_meta[:, META_VALUES.index("hostgal_photoz")] = z_new
    new_meta[:, META_VALUES.index("hostgal_photoz_err")] *= stretch
    distmod = META_VALUES.index("distmod")
    new_meta[:, distmod] = meta[:, distmod] + distance_modulus(z_new) - distance_modulus(z)
    return new_rows, new_meta


def features_of(rows: Rows, starts: np.ndarray, meta: np.ndarray, config: Config) -> pd.DataFrame:
    """object_id and raw features of the objects that gridding accepts."""
    chunk = Chunk(rows, starts, meta, np.full(starts.size, -1, np.int64))
    arrays = gridding.grid_chunk(chunk, gridding.GridSpec.from_config(config.data)).arrays
    return pd.DataFrame(
        {"object_id": arrays.object_id, "raw": list(np.asarray(arrays.features, np.float64))}
    )


def fold_columns(
    objects: pd.DataFrame, copies: pd.DataFrame, held_out: int, config: Config
) -> pd.DataFrame:
    """The classifier's calibrated score of one fold's scored objects, fitted without and with
    the copies (`classifier_again`, `classifier_aug`)."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    copies = copies[copies["target"] != held_out]
    copy_raw = np.stack(copies["raw"].to_numpy())
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    for name, with_copies in (("classifier_again", False), ("classifier_aug", True)):
        column = np.zeros(len(objects))
        for g in (True, False):
            fit = fit_all & (galactic == g)
            x, y = raw[fit], target[fit]
            if with_copies and not g:
                x, y = (
                    np.concatenate([x, copy_raw]),
                    np.concatenate([y, copies["target"].to_numpy()]),
                )
            model = Classifier(config.eval).fit(evidence(x), y)
            val = (split == "val") & (target != held_out) & (galactic == g)
            rows = scored & (galactic == g)
            reference = Reference.fit(model.score(evidence(raw[val])))
            column[rows] = reference.tail_score(model.score(evidence(raw[rows])))
        out[name] = column[scored]
    return out


def main() -> None:
    args = probe_arguments(__doc__, "runs/redshift-augmentation/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    workdir = args.workdir or args.run.parent.parent
    rows, starts, meta, ids = read_train_rows(objects, workdir / config.data.raw_dir)
    # The package's gridding of the original rows gives back the stored features.
    again = features_of(rows, starts, meta, config).set_index("object_id")
    stored = objects.set_index("object_id").loc[again.index, "raw"]
    a, b = np.stack(again["raw"].to_numpy()), np.stack(stored.to_numpy())
    print(
        f"features of the original rows: max |recomputed - stored| {np.nanmax(np.abs(a - b)):.2e}, "
        f"NaN where stored NaN: {np.array_equal(np.isnan(a), np.isnan(b))}"
    )
    rng = np.random.default_rng(SEED)
    labels = objects.set_index("object_id")["target"]
    parts = []
    for _ in range(COPIES):
        new_rows, new_meta = augment(rows, starts, meta, rng)
        part = features_of(new_rows, starts, new_meta, config)
        part["target"] = labels.loc[part["object_id"]].to_numpy()
        parts.append(part)
    copies = pd.concat(parts, ignore_index=True)
    print(
        f"{len(copies):,} copies of {ids.size:,} train extragalactic objects "
        f"({time.perf_counter() - start:.0f} s)"
    )

    table = with_fold_columns(scores, lambda f: fold_columns(objects, copies, f, config), args.out)

    print(f"\nredshift augmentation ({time.perf_counter() - start:.0f} s):\n")
    compare_with_classifier(table, config, "classifier_aug", "the classifier with copies")


if __name__ == "__main__":
    main()
