"""The one scoring path, shared by `evaluate` and `score`: VAE outputs, detector, score table.

`vae_outputs` runs the trained VAE once over gridded objects and returns what the detector needs
per object; `score_table` turns those outputs, with the objects' labels, into the table both
stages write, one row per object:

- `object_id`, `split`, `target`, `class_name`, `is_anomaly`: who the object is;
- `mu_0 ... mu_{L-1}`, `mean_logvar`, `recon_nll`, `n_observed`: the VAE's outputs;
- the detector's named score columns (`AnomalyDetector.score`; higher = more anomalous);
- `anomaly_score` (the detector's final score), `rank` (1 = most anomalous among the objects
  ranked together, ties in table order; `insert_rank`), `flagged` (above the run's threshold).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from plasticc_jax import plasticc
from plasticc_jax.dataset import LightCurveArrays

if TYPE_CHECKING:
    from plasticc_jax.anomaly import AnomalyDetector
    from plasticc_jax.encoder import TrainedVae

# What the detector needs from the VAE, per object.
OUTPUT_KEYS: tuple[str, ...] = ("mu", "logvar", "recon_nll", "n_observed", "kl", "chi2")
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


def vae_outputs(
    vae: TrainedVae,
    arrays: LightCurveArrays,
    batch_size: int | None = None,
    *,
    reconstruction: bool = False,
) -> dict[str, np.ndarray]:
    """One pass of the VAE over gridded objects: `TrainedVae.evaluate` plus `chi2`.

    Args:
        vae: the trained VAE; arrays: the gridded objects.
        batch_size: the largest batch compiled (None: the VAE's `max_batch`).
        reconstruction: also keep the decoded grid, `mean` and `sigma`.

    Returns:
        `mu`, `logvar` (n, L); `recon_nll`, `n_observed`, `kl`, `chi2` (`reduced_chi2`) (n,);
        with `reconstruction`, `mean` and `sigma` (n, n_bands, n_times).
    """
    out = vae.evaluate(arrays, batch_size, reconstruction=True)
    out["chi2"] = reduced_chi2(arrays, out["mean"], out["sigma"])
    keys = (*OUTPUT_KEYS, "mean", "sigma") if reconstruction else OUTPUT_KEYS
    return {key: out[key] for key in keys}


def finite_outputs(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: objects whose VAE outputs (`OUTPUT_KEYS`) are all finite. The detector cannot
    score the others (a NaN latent stops the forest), so they are rejected, not scored."""
    ok = np.ones(len(outputs["mu"]), bool)
    for key in OUTPUT_KEYS:
        values = np.asarray(outputs[key])
        ok &= np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    return ok


def object_labels(arrays: LightCurveArrays, split: str) -> dict[str, np.ndarray]:
    """Who the objects are, as `score_table` wants it: object_id, split, target, is_anomaly."""
    return {
        "object_id": arrays.object_id.astype(np.int64),
        "split": np.full(len(arrays), split),
        "target": arrays.target.astype(np.int64),
        "is_anomaly": arrays.is_anomaly.astype(bool),
    }


def score_table(objects: Mapping[str, np.ndarray], detector: AnomalyDetector) -> pd.DataFrame:
    """The score table without `rank` (see the module docstring for the columns).

    Args:
        objects: per-object arrays over n objects: `object_labels` and `vae_outputs`.
        detector: the fitted detector; its `score` gives the score columns.
    """
    scores = detector.score(objects)
    anomaly_score = scores[detector.score_column]
    mu = objects["mu"]
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
            **scores,
            "anomaly_score": anomaly_score,
            "flagged": detector.flag(anomaly_score),
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
