"""Distances in the encoder's hidden layers, and the head's energy (research, #10)

    python scripts/hidden_layer_probe.py RUN [--workdir DIR] [--out FILE]
    # RUN: with `make validate`

The shipped `latent_mahalanobis` measures an object's distance to the nearest known-class
centre in the VAE's 16-dimensional latent means (Lee et al. 2018, with one covariance shared by
the classes). Lee et al. found the distance in the network's earlier layers to find what the
last one misses, near out-of-distribution classes above all, as the supernova subtypes are here:
the latent space is squeezed for reconstruction and the head, the hidden layers keep more of the
light curve. Candidates, each from the fold's own VAE (trained without the held-out class):

- `hidden1_mahalanobis`, `hidden2_mahalanobis`: the same distance (shared Ledoit-Wolf
  covariance, nearest class centre) on the encoder's first and second hidden layer (the default
  network: 512 and 256 units, after LayerNorm and GELU);
- `hidden_mahalanobis`: the two layers' squared distances, each divided by its median among the
  fitting objects, summed (Lee et al. weigh layers with a regression on out-of-distribution
  examples, which this protocol does not have: equal weights);
- `head_energy`: minus the log-sum-exp of the classification head's logits (Liu et al. 2020),
  the free energy that the shipped `head_maxprob` (1 - the largest softmax probability) discards.

Each is fitted per fold and kind on the train split's other known classes and calibrated on the
val split's other known objects of the same kind, as `validate` does
(`class_knn_probe.fold_columns`); the shipped `latent_mahalanobis` is recomputed the same way and
checked against the stored column.

Adoption rule, as docs/evaluation.md's, written before the run: the best fusion found with a
candidate (in `latent_mahalanobis`' place or beside the shipped fusion) must beat the shipped
fusion by more than twice the standard error of the paired per-fold differences.

Result (a fresh clone's `make prepare train evaluate validate`, 2026-12-05, the shipped fusion's
0.829; 4.6 min on 2 cores shared with other work; `latent_mahalanobis` recomputed to 2e-5, the
jitted pass's float32 rounding): alone, `hidden1_mahalanobis` 0.654, `hidden2_mahalanobis` 0.729,
`hidden_mahalanobis` 0.705 and `head_energy` 0.716 against `latent_mahalanobis`' 0.751 (the hidden
layers gain on EB, M-dwarf, SN Ibc and SN Ia, lose on TDE, SN Iax, AGN and RR Lyrae). In
`latent_mahalanobis`' place the best fusions found fall, -0.0021 ± 0.0046 (`head_energy`) to
-0.0073 ± 0.0035 (`hidden1_mahalanobis`); beside it the search gives each weight 0. Not adopted:
the layers before the latent space separate the known classes less well, not better.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from class_covariance_probe import squared_distance
from class_knn_probe import fold_columns, report
from flax import nnx
from sklearn.covariance import LedoitWolf
from validation_probe import probe_arguments, read_validation, with_fold_columns

from plasticc_jax.dataset import iter_split
from plasticc_jax.encoder import load_vae
from plasticc_jax.models import encoder_inputs

CANDIDATES = ("hidden1_mahalanobis", "hidden2_mahalanobis", "hidden_mahalanobis", "head_energy")


def fold_views(fold_dir: Path, dataset_dir: Path, known: list[int]) -> dict[str, np.ndarray]:
    """The fold VAE's hidden layers, latent means and head logits of the train and val splits'
    known objects, in `validation_probe.load_known`'s order."""
    vae = load_vae(fold_dir)
    module = vae.encoder.module

    @jax.jit
    def views(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        x = encoder_inputs(batch["flux"], batch["flux_err"], batch["mask"], batch["features"])
        hidden = []
        for dense, norm in zip(module.body.dense, module.body.norm, strict=True):
            x = nnx.gelu(norm(dense(x)))
            hidden.append(x.astype(jnp.float32))
        mu = module.mu(hidden[-1])
        return {"hidden1": hidden[0], "hidden2": hidden[1], "mu": mu, "logits": module.classify(mu)}

    parts: dict[str, list[np.ndarray]] = {}
    for split in ("train", "val"):  # never the test split
        for shard in iter_split(dataset_dir, split):
            shard = shard.take(np.flatnonzero(np.isin(shard.target, known)))
            inputs = vae.encoder.inputs(shard)
            for start in range(0, len(shard), 2048):
                batch = {k: v[start : start + 2048] for k, v in inputs.items()}
                for name, value in views(batch).items():
                    parts.setdefault(name, []).append(np.asarray(value, np.float64))
    return {name: np.concatenate(value) for name, value in parts.items()}


def nearest_centre(x: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Squared Mahalanobis distance to the nearest class centre, one shared covariance."""
    classes = np.unique(labels)
    centres = np.stack([x[labels == c].mean(axis=0) for c in classes])
    residuals = x - centres[np.searchsorted(classes, labels)]
    precision = np.linalg.pinv(LedoitWolf().fit(residuals).covariance_)
    return lambda rows: np.stack([squared_distance(rows, m, precision) for m in centres]).min(0)


def scorer(widths: tuple[int, int, int]) -> Callable:
    """A `class_knn_probe` scorer of rows laid out as [hidden1 | hidden2 | mu | energy]."""
    a, b, c = np.cumsum(widths)

    def fit(x: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        x = np.asarray(x, np.float64)
        layers = [nearest_centre(x[:, lo:hi], labels) for lo, hi in ((0, a), (a, b), (b, c))]
        medians = [np.median(layer(x[:, lo:hi])) for layer, (lo, hi) in zip(
            layers[:2], ((0, a), (a, b)), strict=True)]  # fmt: skip

        def scores(rows: np.ndarray) -> dict[str, np.ndarray]:
            rows = np.asarray(rows, np.float64)
            d1, d2, d_mu = (
                layer(rows[:, lo:hi])
                for layer, (lo, hi) in zip(layers, ((0, a), (a, b), (b, c)), strict=True)
            )
            return {
                "latent_mahalanobis_again": np.sqrt(np.maximum(d_mu, 0.0)),
                "hidden1_mahalanobis": d1,
                "hidden2_mahalanobis": d2,
                "hidden_mahalanobis": d1 / medians[0] + d2 / medians[1],
                "head_energy": rows[:, c],
            }

        return scores

    return fit


def main() -> None:
    args = probe_arguments(__doc__, "runs/hidden-layer/scores.parquet")
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    if len(config.model.hidden) != 2:
        raise SystemExit(f"the probe reads two hidden layers; this run has {config.model.hidden}")
    dataset_dir = (args.workdir or args.run.parent.parent) / config.data.dataset_dir
    known = list(config.data.known_classes)

    def make(fold: int):
        views = fold_views(args.run / "validation" / f"fold-{fold}", dataset_dir, known)
        logits = views["logits"]
        top = logits.max(axis=1, keepdims=True)
        energy = -(top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
        rows = np.hstack([views["hidden1"], views["hidden2"], views["mu"], energy[:, None]])
        widths = (views["hidden1"].shape[1], views["hidden2"].shape[1], views["mu"].shape[1])
        return fold_columns(
            objects, rows, fold, scorer(widths), ("latent_mahalanobis_again", *CANDIDATES)
        )

    table = with_fold_columns(scores, make, args.out)
    again = np.abs(table["latent_mahalanobis_again"] - table["latent_mahalanobis"]).max()
    print(f"latent_mahalanobis recomputed: max |again - stored| {again:.2e}")
    print(f"({time.perf_counter() - start:.0f} s)")
    report(table, config, CANDIDATES, "latent_mahalanobis")


if __name__ == "__main__":
    main()
