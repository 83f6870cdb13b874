"""The one scoring path, shared by `evaluate` and `score`: model outputs, evidence, score table.

`model_outputs` runs the trained VAE once over gridded objects; `evidence` assembles what the
detector reads (`components.Evidence`); `score_table` turns the outputs and the detector's columns,
with the objects' labels, into the table both stages write, one row per object:

- `object_id`, `split`, `target`, `class_name`, `is_anomaly`: who the object is (labels are
  copied where the input has them; they never enter a score);
- `mu_0 ... mu_{L-1}`, `mean_logvar`, `recon_nll`, `n_observed`, `chi2_per_cell`: the VAE;
- `CONTEXT_COLUMNS`: a few of the object's features, for filtering and review;
- one calibrated column per detector component (`-log10` of its val known tail probability);
- `nearest_class`, `nearest_class_name`, `nearest_class_prob`: the most probable known class;
- `anomaly_score` (the detector's final score), `rank` (1 = most anomalous among the objects
  ranked together, ties in table order; `insert_rank`), `flagged` (above the run's threshold).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import special

from plasticc_jax import plasticc
from plasticc_jax.components import Evidence
from plasticc_jax.dataset import FeatureStats, LightCurveArrays
from plasticc_jax.gridding import FEATURE_NAMES

if TYPE_CHECKING:
    from plasticc_jax.detector import Detector
    from plasticc_jax.encoder import TrainedVae

# What the score table and the detector need from the VAE, per object.
OUTPUT_KEYS: tuple[str, ...] = (
    "mu",
    "logvar",
    "recon_nll",
    "n_observed",
    "kl",
    "chi2",
    "probabilities",
)
# Features copied into the score table (what an expert filters and reads first).
CONTEXT_COLUMNS: tuple[str, ...] = (
    "is_galactic",
    "hostgal_photoz",
    "peak_abs_mag",
    "log10_peak_snr",
    "rise_days",
    "fall_days",
)
# Why an object that was gridded could still not be scored (`score` rejects it with this).
NON_FINITE_OUTPUT = "non-finite VAE output (extreme input values)"
NAN_SCORE = "anomaly score is NaN"


def reduced_chi2(arrays: LightCurveArrays, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Mean over observed cells of `(flux - mean)**2 / (flux_err**2 + sigma**2)`, (n,).

    The variance is the VAE likelihood's (`losses.masked_grid_nll`); the decoder's sigma is
    floored above 0, so no cell divides by zero. Objects without observed cells get 0.
    """
    observed = arrays.mask.astype(bool)
    z2 = np.square(arrays.flux - mean) / (np.square(arrays.flux_err) + np.square(sigma))
    z2 = np.where(observed, z2, np.float32(0.0))
    return z2.sum(axis=(1, 2), dtype=np.float64) / np.maximum(observed.sum(axis=(1, 2)), 1)


def model_outputs(
    vae: TrainedVae,
    arrays: LightCurveArrays,
    batch_size: int | None = None,
    *,
    reconstruction: bool = False,
) -> dict[str, np.ndarray]:
    """One pass of the VAE over gridded objects.

    Args:
        vae: the trained VAE; arrays: the gridded objects.
        batch_size: the largest batch compiled (None: the VAE's `max_batch`).
        reconstruction: also keep the decoded grid, `mean` and `sigma`.

    Returns:
        `mu`, `logvar` (n, L); `recon_nll`, `n_observed`, `kl`, `chi2` (`reduced_chi2`) (n,);
        `probabilities` (n, C) of the head's known classes ((n, 0) without a head); `features`
        (n, F) the raw features; with `reconstruction`, `mean` and `sigma` (n, n_bands, n_times).
    """
    out = vae.evaluate(arrays, batch_size, reconstruction=True)
    out["chi2"] = reduced_chi2(arrays, out["mean"], out["sigma"])
    logits = out.pop("logits", np.zeros((len(arrays), 0), np.float32))
    out["probabilities"] = (special.softmax(logits, axis=1) if logits.shape[1] else logits).astype(
        np.float32
    )
    out["features"] = np.asarray(arrays.features, np.float32)
    keys = (*OUTPUT_KEYS, "features", *(("mean", "sigma") if reconstruction else ()))
    return {key: out[key] for key in keys}


def finite_outputs(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: objects whose VAE outputs (`OUTPUT_KEYS`) are all finite and whose features
    are finite or NaN (undefined; never infinite). The detector cannot score the others (a NaN
    latent stops the components), so they are rejected, not scored."""
    ok = np.ones(len(outputs["mu"]), bool)
    for key in OUTPUT_KEYS:
        values = np.asarray(outputs[key])
        ok &= np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if "features" in outputs:
        ok &= ~np.isinf(np.asarray(outputs["features"])).any(axis=1)
    return ok


def evidence(
    objects: Mapping[str, np.ndarray], stats: FeatureStats, head_classes: tuple[int, ...]
) -> Evidence:
    """What the detector reads, from `model_outputs` (over n objects) and the run's statistics."""
    features = np.asarray(objects["features"], np.float32)
    galactic = features[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    return Evidence(
        latent=np.asarray(objects["mu"], np.float32),
        probabilities=np.asarray(objects["probabilities"], np.float32),
        chi2=np.asarray(objects["chi2"], np.float64),
        features=stats.normalise(features),
        raw_features=features,
        galactic=galactic,
        head_classes=tuple(head_classes),
    )


def object_labels(arrays: LightCurveArrays, split: str) -> dict[str, np.ndarray]:
    """Who the objects are, as `score_table` wants it: object_id, split, target, is_anomaly."""
    return {
        "object_id": arrays.object_id.astype(np.int64),
        "split": np.full(len(arrays), split),
        "target": arrays.target.astype(np.int64),
        "is_anomaly": arrays.is_anomaly.astype(bool),
    }


def score_table(
    objects: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray], detector: Detector
) -> pd.DataFrame:
    """The score table without `rank` (see the module docstring for the columns).

    Args:
        objects: per-object arrays over n objects: `object_labels` and `model_outputs`.
        scores: the detector's columns for them (`Detector.score`, or `Detector.out_of_fold`).
        detector: the fitted detector (its components and threshold); a component missing from
            `scores` (`Detector.score(fused_only=True)`) has no column.
    """
    mu, features = objects["mu"], objects["features"]
    context = {name: features[:, FEATURE_NAMES.index(name)] for name in CONTEXT_COLUMNS}
    context["is_galactic"] = context["is_galactic"] > 0.5
    nearest = np.asarray(scores["nearest_class"], np.int64)
    return pd.DataFrame(
        {
            "object_id": objects["object_id"],
            "split": objects["split"],
            "target": objects["target"],
            "class_name": [plasticc.class_name(c) for c in objects["target"]],
            "is_anomaly": objects["is_anomaly"],
            **{f"mu_{j}": mu[:, j] for j in range(mu.shape[1])},
            "mean_logvar": objects["logvar"].mean(axis=1),
            "recon_nll": objects["recon_nll"],
            "n_observed": objects["n_observed"].astype(np.int64),
            "chi2_per_cell": objects["chi2"],
            **context,
            **{name: scores[name] for name in detector.names if name in scores},
            "nearest_class": nearest,
            "nearest_class_name": [plasticc.class_name(c) if c >= 0 else "" for c in nearest],
            "nearest_class_prob": scores["nearest_class_prob"],
            "anomaly_score": scores["anomaly_score"],
            "flagged": detector.flag(scores["anomaly_score"]),
        }
    )


def ranks(scores: np.ndarray) -> np.ndarray:
    """(n,) int64: 1 for the highest score; equal scores keep their order."""
    rank = np.empty(len(scores), np.int64)
    rank[np.argsort(-np.asarray(scores), kind="stable")] = np.arange(1, len(scores) + 1)
    return rank


def rank_position(columns: list[str]) -> int:
    """Where `rank` goes in the table: right after `anomaly_score`."""
    return columns.index("anomaly_score") + 1


def insert_rank(table: pd.DataFrame) -> pd.DataFrame:
    """Insert `rank`, within each split, into a `score_table` (in place; also returned)."""
    split, scores = table["split"].to_numpy(), table["anomaly_score"].to_numpy()
    rank = np.empty(len(table), np.int64)
    for name in pd.unique(split):
        rows = np.flatnonzero(split == name)
        rank[rows] = ranks(scores[rows])
    table.insert(rank_position(list(table.columns)), "rank", rank)
    return table
