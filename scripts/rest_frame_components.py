"""Would a detector component on rest-frame physical features help? (research check, issue #10)

    python scripts/rest_frame_components.py RUN [--out FILE]   # RUN: a run with `make validate`

The luminosity-timescale "phase space" in which astronomers find superluminous supernovae,
kilonovae and tidal disruptions: peak absolute magnitude, timescales divided by 1 + photo-z (time
dilation), colours at peak and later. The package's distance components use all the features,
where luminosity is one column of 141. Here, components on that small subspace only:

- `rest_knn`: mean distance to the k nearest fitting objects (robust-scaled features);
- `rest_mahalanobis`: distance to the nearest known-class centre, shared Ledoit-Wolf covariance;
- `rest_gauss`: class-conditional Gaussians with each class's own Ledoit-Wolf covariance,
  score min over classes of (squared Mahalanobis distance + log det covariance);

each on `core` (absolute magnitude and the five timescales), `full` (core plus colours) and
`epochs` (core with the peak window and the six epoch flux ratios recomputed from the raw light
curves in rest-frame days, `physics_in_rest_frame`).
Galactic objects have no distance: their photo-z is 0 (the timescales stay observer-frame) and the
absolute magnitude, NaN on every galactic object, is dropped from that kind's fit. Other NaNs
(a colour without a band) become the fitting objects' median (neutral). The `_xg` variants score
extragalactic objects only (galactic ones get the neutral 0). Second check: the five rest-frame
timescales appended to the feature set, the package's feature components (`classifier`,
`feature_mahalanobis`, `feature_knn`) refitted with the package's `Detector` on both sets.

Reads `RUN/validation/scores.parquet` and `validation.json` (the fold scores, known classes only,
and the config they were made with) and the train and val splits of the run's prepared dataset
(never the test split). Each
fold's rows are made as `validate._fold_scores` makes them: fitted per kind on the train split's
other known classes, calibrated (`calibration.Reference`) on the val split's other known objects
of the same kind, scored on the val split and the held-out class. Writes the table with the new
columns to `--out` (default `runs/rest-frame/scores.parquet`) and prints the per-fold AUROCs of
each new component, of the shipped fusion, and of the best fusion found by `Folds.search` over
the shipped fusion's components plus each new one. About 12 minutes on 2 quiet CPU cores.

Result (default-rare run, docs/evaluation.md): no gain; not adopted.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors
from validation_probe import probe_arguments, read_validation, table_rows

from plasticc_jax import features
from plasticc_jax.calibration import DEPTH_FEATURE, Reference
from plasticc_jax.components import Evidence
from plasticc_jax.config import EvalConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.detector import Detector, parse_fusion, route
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES, reference_rows

TIMESCALES = ("rise_days", "fall_days", "half_max_rise_days", "half_max_fall_days", "detected_days")
COLOURS = tuple(f"colour_peak_{c}" for c in ("gr", "ri", "iz")) + tuple(
    f"colour_late_{c}" for c in ("gr", "ri", "iz")
)
SUBSPACES = {"core": ("peak_abs_mag", *TIMESCALES), "full": ("peak_abs_mag", *TIMESCALES, *COLOURS)}


def rest_frame(raw: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(n, len(names)) rest-frame features from raw features: timescales / (1 + photo-z), as
    log10(1 + days)."""
    z = np.nan_to_num(raw[:, FEATURE_NAMES.index("hostgal_photoz")], nan=0.0)
    columns = []
    for name in names:
        x = raw[:, FEATURE_NAMES.index(name)].astype(np.float64)
        if name in TIMESCALES:
            x = np.log10(1.0 + np.maximum(x, 0.0) / (1.0 + z))
        columns.append(x)
    return np.column_stack(columns)


class Space:
    """Robust scaling fitted on the fitting objects: columns all-NaN there are dropped, NaN ->
    the median (0 after scaling)."""

    def __init__(self, x: np.ndarray) -> None:
        self.keep = np.flatnonzero(np.isfinite(x).any(axis=0))
        x = x[:, self.keep]
        self.median = np.nanmedian(x, axis=0)
        q25, q75 = np.nanpercentile(x, [25, 75], axis=0)
        self.scale = np.maximum((q75 - q25) / 1.349, 1e-6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x[:, self.keep] - self.median) / self.scale
        return np.clip(np.nan_to_num(z, nan=0.0), -20.0, 20.0)


def fit_score(kind: str, fit: np.ndarray, labels: np.ndarray, score: np.ndarray, k: int):
    """Raw scores of `score` rows for the component `kind`, fitted on `fit` rows."""
    space = Space(fit)
    a, b = space(fit), space(score)
    if kind == "knn":
        index = NearestNeighbors().fit(a)
        distance, _ = index.kneighbors(b, n_neighbors=min(k, len(a)))
        return distance.mean(axis=1)
    classes = np.unique(labels)
    if kind == "mahalanobis":
        centres = np.stack([a[labels == c].mean(axis=0) for c in classes])
        residual = a - centres[np.searchsorted(classes, labels)]
        precision = np.linalg.pinv(LedoitWolf().fit(residual).covariance_)
        d = b[:, None, :] - centres[None]
        return np.sqrt(np.einsum("ncd,de,nce->nc", d, precision, d).min(axis=1))
    out = np.full((len(b), classes.size), np.inf)
    for i, c in enumerate(classes):
        lw = LedoitWolf().fit(a[labels == c])
        d = b - lw.location_
        _, logdet = np.linalg.slogdet(lw.covariance_)
        out[:, i] = np.einsum("nd,de,ne->n", d, lw.precision_, d) + logdet
    return out.min(axis=1)


REST_PHYSICS = (
    "peak_abs_mag",
    *TIMESCALES,
    *(f"flux_ratio_{name}" for *_, name in features.EPOCHS),
)


def physics_in_rest_frame(objects: pd.DataFrame, raw_dir: Path) -> np.ndarray:
    """(n, len(REST_PHYSICS)): `features.physics_features` recomputed from the raw light curves
    (light-curve rows only: no metadata file is read) with each object's times dilated to its
    rest frame about t0, t0 + (mjd - t0) / (1 + photo-z): the epochs, the peak window and the
    timescales are in rest-frame days. Rows in the order of `objects`."""
    rows = pd.read_csv(raw_dir / "plasticc_train_lightcurves.csv.gz")
    rows = rows[rows["object_id"].isin(objects["object_id"])]
    rows = rows.sort_values(["object_id", "mjd"], kind="stable")
    ids, starts, counts = np.unique(
        rows["object_id"].to_numpy(), return_index=True, return_counts=True
    )
    o = np.repeat(np.arange(ids.size), counts)
    mjd, pb = rows["mjd"].to_numpy(np.float64), rows["passband"].to_numpy(np.int64)
    flux, err = rows["flux"].to_numpy(np.float64), rows["flux_err"].to_numpy(np.float64)
    det = rows["detected_bool"].to_numpy().astype(bool)
    raw = np.stack(objects.set_index("object_id").loc[ids, "raw"].to_numpy())
    z = np.nan_to_num(raw[:, FEATURE_NAMES.index("hostgal_photoz")], nan=0.0)
    distmod = raw[:, FEATURE_NAMES.index("distmod")].astype(np.float64)
    peak_row = reference_rows(o, starts, flux / err, det)  # t0 as gridding chooses it
    t0 = mjd[peak_row]
    rest = t0[o] + (mjd - t0[o]) / (1.0 + z[o])
    values = features.physics_features(o, rest, pb, flux, err, det, starts, peak_row, distmod)
    values = values[:, [features.PHYSICS_NAMES.index(n) for n in REST_PHYSICS]]
    for j, name in enumerate(REST_PHYSICS):  # as `rest_frame`: log10(1 + days)
        if name in TIMESCALES:
            values[:, j] = np.log10(1.0 + np.maximum(values[:, j], 0.0))
    return pd.DataFrame(values, index=ids).loc[objects["object_id"].to_numpy()].to_numpy()


def fold_columns(
    objects: pd.DataFrame, spaces: dict[str, np.ndarray], held_out: int, k: int
) -> pd.DataFrame:
    """The new components' calibrated scores of one fold's scored objects, on each space
    ((n, d) features aligned with `objects`)."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    scored = (split == "val") | (target == held_out)
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    for space, x in spaces.items():
        for kind in ("knn", "mahalanobis", "gauss"):
            column = np.zeros(len(objects))
            for g in (True, False):
                fit = (split == "train") & (target != held_out) & (galactic == g)
                val = (split == "val") & (target != held_out) & (galactic == g)
                rows = scored & (galactic == g)
                both = val | rows
                raw_score = np.zeros(len(objects))
                raw_score[both] = fit_score(kind, x[fit], target[fit], x[both], k)
                reference = Reference.fit(raw_score[val])
                column[rows] = reference.tail_score(raw_score[rows])
            out[f"rest_{kind}_{space}"] = column[scored]
    return out


FEATURE_COMPONENTS = ("classifier", "feature_mahalanobis", "feature_knn")


def feature_columns(
    objects: pd.DataFrame, held_out: int, config: EvalConfig, extra: bool
) -> pd.DataFrame:
    """The package's feature components of one fold (`Detector`, as `validate._fold_scores`),
    on the 141 features and, with `extra`, the five rest-frame timescales appended."""
    raw = np.stack(objects["raw"].to_numpy())
    if extra:
        raw = np.hstack([raw, rest_frame(raw, TIMESCALES)])
    names = (*FEATURE_NAMES, *(f"rest_{n}" for n in TIMESCALES))[: raw.shape[1]]
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    fit = np.flatnonzero((split == "train") & (target != held_out))
    val = np.flatnonzero((split == "val") & (target != held_out))
    scored = np.flatnonzero((split == "val") | (target == held_out))
    stats = FeatureStats.fit(names, raw[fit])  # as train does: the fold's training objects
    n = len(raw)
    evidence = Evidence(
        latent=np.zeros((n, 1), np.float32),
        probabilities=np.zeros((n, 0), np.float32),
        chi2=np.zeros(n),
        features=stats.normalise(raw),
        raw_features=raw.astype(np.float32),
        galactic=raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5,
        depth=raw[:, FEATURE_NAMES.index(DEPTH_FEATURE)],
    )
    config = dataclasses.replace(config, components=FEATURE_COMPONENTS, fusion=("classifier:1",))
    detector = Detector.fit(
        evidence.take(fit), target[fit], evidence.take(val), target[val], config
    )
    part = evidence.take(scored)
    tails = detector.calibrated(
        detector.raw_scores(part), route(detector.components, part.galactic)
    )
    suffix = "_rest" if extra else "_again"
    return pd.DataFrame(
        {
            "fold": held_out,
            "object_id": objects["object_id"].to_numpy()[scored],
            **{f"{c}{suffix}": tails[c] for c in FEATURE_COMPONENTS},
        }
    )


def main() -> None:
    args = probe_arguments(__doc__, "runs/rest-frame/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    workdir = args.workdir or args.run.parent.parent
    fold_ids = [int(f) for f in scores["fold"].unique()]
    raw = np.stack(objects["raw"].to_numpy())
    spaces = {name: rest_frame(raw, names) for name, names in SUBSPACES.items()}
    spaces["epochs"] = physics_in_rest_frame(objects, workdir / config.data.raw_dir)
    table = scores
    for make in (
        lambda f: fold_columns(objects, spaces, f, config.eval.knn_neighbours),
        lambda f: feature_columns(objects, f, config.eval, extra=False),
        lambda f: feature_columns(objects, f, config.eval, extra=True),
    ):
        new = pd.concat([make(f) for f in fold_ids], ignore_index=True)
        table = table.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    assert not table.isna().any().any(), "a scored object without new scores"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"components: {time.perf_counter() - start:.0f} s")
    for c in FEATURE_COMPONENTS:  # the recomputation reproduces the stored columns
        print(f"{c}: max |recomputed - stored| {np.abs(table[c] - table[c + '_again']).max():.2e}")

    # The baseline is the shipped weights on the recomputed feature components (printed above:
    # they reproduce the stored columns when the validation was made by the same code).
    for c in [c for c in table.columns if c.startswith("rest_")]:
        # Extragalactic only: galactic objects get the neutral 0 (a constant of one kind changes
        # nothing in that kind's recalibrated fusion).
        table[f"{c}_xg"] = np.where(table["galactic"], 0.0, table[c])
    folds = Folds(table)
    shipped = parse_fusion(EvalConfig().fusion)
    again = {f"{c}_again" if c in FEATURE_COMPONENTS else c: w for c, w in shipped.items()}
    rows = {
        "fused (shipped, stored scores)": folds.fused(shipped),
        "fused (shipped, recomputed feature components)": folds.fused(again),
    }
    for c in [c for c in table.columns if c.startswith("rest_")]:
        if not c.endswith("_xg"):  # alone; a kind's constant makes the _xg variants meaningless
            rows[f"{c} alone"] = table[c].to_numpy()
        rows[f"shipped + {c}:1"] = folds.fused({**again, c: 1.0 / 8.0})  # beside the shipped 8
        best = folds.search([*again, c], also=again)[0]
        rows[f"best with {c}: `{fusion_spec(best['weights'])}`"] = folds.fused(best["weights"])
    print(f"\nrest-frame components ({time.perf_counter() - start:.0f} s):\n")
    table_rows(folds, rows)

    renamed = {f"{c}_rest" if c in FEATURE_COMPONENTS else c: w for c, w in shipped.items()}
    rows = {
        f"{c}{s}": table[f"{c}{s}"].to_numpy()
        for c in FEATURE_COMPONENTS
        for s in ("_again", "_rest")
    }
    rows["fused (shipped, recomputed feature components)"] = folds.fused(again)
    rows["shipped weights, rest-frame timescales added"] = folds.fused(renamed)
    best = folds.search(list(renamed), also=renamed)[0]
    rows[f"best found with them: `{fusion_spec(best['weights'])}`"] = folds.fused(best["weights"])
    print(f"\nfeatures with rest-frame timescales ({time.perf_counter() - start:.0f} s):\n")
    table_rows(folds, rows)


if __name__ == "__main__":
    main()
