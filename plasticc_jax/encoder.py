"""The research API: load a trained encoder (or the whole VAE) from a run directory.

    from plasticc_jax import load_encoder
    encoder = load_encoder("runs/default-rare")
    mu, logvar = encoder(batch)          # LightCurveArrays or a dict of arrays -> numpy (n, L)
    table = encoder.encode_table(lightcurves_df, metadata_df)   # raw PLAsTiCC-style tables

A run directory alone is enough: `config.json` says how the model was built and how light curves
were gridded, `stats.json` holds the feature normalisation, and the best checkpoint (by val loss)
holds the weights. `load_encoder` reads the encoder's parameters only, never the decoder's.

Calls are jit-compiled; inputs are cut into chunks of at most `max_batch` objects and the last
chunk is padded to a power of two (at least 64), so a session compiles a handful of shapes,
not one per input size. Inference runs in float32 whatever `train.compute_dtype` was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
from flax import nnx

from plasticc_jax import config as config_lib
from plasticc_jax import losses, plasticc
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config
from plasticc_jax.dataset import FeatureStats, LightCurveArrays, read_stats
from plasticc_jax.errors import UserError
from plasticc_jax.models import LightCurveEncoder, Vae

log = logging.getLogger(__name__)

ArraysLike = LightCurveArrays | Mapping[str, np.ndarray]
MIN_PADDED_BATCH = 64


class EncodedTable(NamedTuple):
    """`Encoder.encode_table` output: one row per encoded object.

    object_id: (n,) int64; mu, logvar: (n, latent_dim) float32; rejected: DataFrame with columns
    object_id, reason for the input objects that could not be gridded (too few observations).
    """

    object_id: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray
    rejected: pd.DataFrame


def _padded_size(n: int, max_batch: int) -> int:
    size = MIN_PADDED_BATCH
    while size < n:
        size *= 2
    return min(size, max(max_batch, n))


def _chunks(n: int, max_batch: int) -> Iterator[tuple[slice, int]]:
    """(rows, padded size) for each chunk of at most `max_batch` rows."""
    for start in range(0, n, max_batch):
        stop = min(n, start + max_batch)
        yield slice(start, stop), _padded_size(stop - start, max_batch)


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    if len(values) == size:
        return values
    pad = np.zeros((size - len(values), *values.shape[1:]), values.dtype)
    return np.concatenate([values, pad])


class _RunFiles(NamedTuple):
    config: Config
    stats: FeatureStats
    n_bands: int
    n_times: int
    n_features: int


def _read_run(run_dir: Path) -> _RunFiles:
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise UserError(
            f"{run_dir} is not a run directory (no config.json): train one with `make train` "
            "or pass the folder that `plasticc-jax train` wrote (runs/<name>-<protocol>)"
        )
    config = config_lib.read_config(config_path)
    stats = read_stats(run_dir)
    return _RunFiles(config, stats, plasticc.N_PASSBANDS, config.data.n_time_bins, len(stats.names))


def _restore_best(run_dir: Path, templates: dict[str, Any]) -> tuple[dict[str, Any], int]:
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        raise UserError(f"{run_dir} holds no checkpoints/: run `make train` first")
    with CheckpointStore(directory, read_only=True) as store:
        epoch = store.best_epoch()
        if epoch is None:
            raise UserError(f"{directory} holds no finished checkpoint: run `make train` first")
        return store.restore(epoch, templates), epoch


def _abstract_params(module_fn: Callable[[], nnx.Module]) -> tuple[nnx.GraphDef, dict]:
    graphdef, state = nnx.split(nnx.eval_shape(module_fn))
    return graphdef, nnx.to_pure_dict(state)


class Encoder:
    """The trained encoder q(z | light curve): latent mean and log-variance per object.

    Attributes:
        config: the run's resolved config (`config.data` says how light curves are gridded).
        stats: the feature normalisation statistics of the training data.
        params: the encoder's parameters (pure dict of arrays, `nnx.to_pure_dict` layout).
        latent_dim: L.
        max_batch: the largest batch compiled; bigger inputs are cut into chunks.
    """

    def __init__(
        self,
        config: Config,
        stats: FeatureStats,
        graphdef: nnx.GraphDef,
        params: dict,
        *,
        max_batch: int = 4096,
    ):
        self.config = config
        self.stats = stats
        self.params = params
        self.latent_dim = config.model.latent_dim
        self.max_batch = max_batch
        self.n_bands = plasticc.N_PASSBANDS
        self.n_times = config.data.n_time_bins
        self._graphdef = graphdef

        def encode(params: dict, inputs: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
            module = nnx.merge(graphdef, params)
            return module(inputs["flux"], inputs["flux_err"], inputs["mask"], inputs["features"])

        self._encode = jax.jit(encode)

    @property
    def module(self) -> LightCurveEncoder:
        """The encoder as an `nnx.Module` (e.g. to take gradients through it)."""
        return nnx.merge(self._graphdef, self.params)

    def inputs(self, batch: ArraysLike) -> dict[str, np.ndarray]:
        """Validate a batch and normalise its raw features: the model's host-side inputs.

        Args:
            batch: `LightCurveArrays`, or a mapping with `flux`, `flux_err`, `mask`
                (n, n_bands, n_times) in the scaled-flux units of prepare, and raw `features`
                (n, n_features) in the order of `stats.names`.
        """
        get = batch.__getitem__ if isinstance(batch, Mapping) else batch.__getattribute__
        try:
            flux, flux_err, mask, features = (
                np.asarray(get(name)) for name in ("flux", "flux_err", "mask", "features")
            )
        except (KeyError, AttributeError) as error:
            raise UserError(
                f"encoder input lacks {error}: pass LightCurveArrays or a dict with flux, "
                "flux_err, mask, features"
            ) from None
        grid = (self.n_bands, self.n_times)
        for name, values in (("flux", flux), ("flux_err", flux_err), ("mask", mask)):
            if values.ndim != 3 or values.shape[1:] != grid:
                raise UserError(
                    f"encoder input {name} has shape {values.shape}; this run expects "
                    f"(n, {grid[0]}, {grid[1]})"
                )
        n_features = len(self.stats.names)
        if features.ndim != 2 or features.shape != (len(flux), n_features):
            raise UserError(
                f"encoder input features has shape {features.shape}; this run expects "
                f"({len(flux)}, {n_features}) in the order {list(self.stats.names)}"
            )
        return {
            "flux": flux.astype(np.float32, copy=False),
            "flux_err": flux_err.astype(np.float32, copy=False),
            "mask": mask.astype(bool, copy=False),
            "features": self.stats.normalise(features),
        }

    def __call__(self, batch: ArraysLike) -> tuple[np.ndarray, np.ndarray]:
        """Latent mean and log-variance.

        Args:
            batch: see `inputs`.

        Returns:
            (mu, logvar): numpy float32, each (n, latent_dim).
        """
        inputs = self.inputs(batch)
        n = len(inputs["flux"])
        mu = np.empty((n, self.latent_dim), np.float32)
        logvar = np.empty((n, self.latent_dim), np.float32)
        for rows, size in _chunks(n, self.max_batch):
            chunk = {name: _pad(values[rows], size) for name, values in inputs.items()}
            out_mu, out_logvar = self._encode(self.params, chunk)
            count = rows.stop - rows.start
            mu[rows] = np.asarray(out_mu)[:count]
            logvar[rows] = np.asarray(out_logvar)[:count]
        return mu, logvar

    def encode_table(
        self, lightcurves: pd.DataFrame, metadata: pd.DataFrame, anomaly_classes: tuple = ()
    ) -> EncodedTable:
        """Encode raw light-curve and metadata tables, gridded exactly as prepare does.

        Args:
            lightcurves: one row per observation (object_id, mjd, passband, flux, flux_err,
                detected; PLAsTiCC column names such as detected_bool are accepted).
            metadata: one row per object (object_id, ra, decl, ddf, hostgal_photoz, ...).
            anomaly_classes: passed to the gridding, only to fill `is_anomaly` (unused here).

        Returns:
            `EncodedTable` (object ids in the order of the gridded output).
        """
        from plasticc_jax.input_pipeline import grid_lightcurves

        arrays, rejected = grid_lightcurves(
            lightcurves, metadata, self.config.data, anomaly_classes=anomaly_classes
        )
        mu, logvar = self(arrays)
        return EncodedTable(np.asarray(arrays.object_id, np.int64), mu, logvar, rejected)


class TrainedVae:
    """The whole trained VAE (encoder and decoder) for evaluation and reconstruction.

    Attributes:
        config, stats: as for `Encoder`; encoder: the `Encoder` (sharing the parameters);
        params: all parameters ({"encoder": ..., "decoder": ...}); epoch: the checkpoint's epoch.
    """

    def __init__(
        self,
        config: Config,
        stats: FeatureStats,
        graphdef: nnx.GraphDef,
        params: dict,
        encoder: Encoder,
        epoch: int,
    ):
        self.config = config
        self.stats = stats
        self.params = params
        self.encoder = encoder
        self.epoch = epoch

        def evaluate(params: dict, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
            vae = nnx.merge(graphdef, params)
            mu, logvar, recon = vae(
                inputs["flux"], inputs["flux_err"], inputs["mask"], inputs["features"], None
            )
            terms = losses.per_object_terms(inputs, mu, logvar, recon)
            return {
                "mu": mu,
                "logvar": logvar,
                "recon_nll": terms["recon_nll"],
                "feature_nll": terms["feature_nll"],
                "n_observed": terms["n_observed"],
                "kl": terms["kl"],
                "mean": recon.grid_mean,
                "sigma": recon.grid_sigma,
            }

        self._evaluate = jax.jit(evaluate)

    def _run(self, arrays: ArraysLike, batch_size: int, keys: tuple[str, ...]) -> dict:
        inputs = self.encoder.inputs(arrays)
        n = len(inputs["flux"])
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        for rows, size in _chunks(n, batch_size):
            chunk = {name: _pad(values[rows], size) for name, values in inputs.items()}
            out = self._evaluate(self.params, chunk)
            count = rows.stop - rows.start
            for key in keys:
                parts[key].append(np.asarray(out[key])[:count])
        return {
            key: np.concatenate(values) if values else np.zeros((0,), np.float32)
            for key, values in parts.items()
        }

    def evaluate(
        self, arrays: ArraysLike, batch_size: int = 4096, *, reconstruction: bool = False
    ) -> dict[str, np.ndarray]:
        """Per-object latent statistics and loss terms, decoding z = mu (deterministic).

        Args:
            arrays: see `Encoder.inputs`.
            batch_size: the largest batch compiled.
            reconstruction: also return the decoded grid (`mean`, `sigma`, as `reconstruct`),
                from the same pass.

        Returns:
            `mu`, `logvar` (n, L); `recon_nll` (n,) the masked heteroscedastic Gaussian NLL
            summed over observed cells (nats); `n_observed` (n,) observed cells; `kl` (n,)
            KL(q(z|x) || N(0, I)) in nats; `feature_nll` (n,) NLL of the normalised features;
            with `reconstruction`, `mean` and `sigma` (n, n_bands, n_times).
        """
        keys = ("mu", "logvar", "recon_nll", "n_observed", "kl", "feature_nll")
        if reconstruction:
            keys += ("mean", "sigma")
        return self._run(arrays, batch_size, keys)

    def reconstruct(
        self, arrays: ArraysLike, batch_size: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """The decoded light curves at z = mu.

        Returns:
            (mean, sigma), each (n, n_bands, n_times) in the scaled-flux units of the grid;
            sigma is the model's own scatter per cell (add flux_err in quadrature for the
            predictive spread of an observation).
        """
        out = self._run(arrays, batch_size, ("mean", "sigma"))
        return out["mean"], out["sigma"]


def load_encoder(run_dir: str | Path, *, max_batch: int = 4096) -> Encoder:
    """Load the encoder of a run's best checkpoint (the decoder is not read).

    Args:
        run_dir: a run directory written by `train` (runs/<name>-<protocol>).
        max_batch: the largest batch to compile (bigger inputs are chunked).
    """
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    graphdef, template = _abstract_params(
        lambda: LightCurveEncoder(
            run.n_bands, run.n_times, run.n_features, run.config.model, rngs=nnx.Rngs(0)
        )
    )
    restored, epoch = _restore_best(run_dir, {"encoder": template})
    log.debug("loaded the encoder of %s, epoch %d", run_dir, epoch)
    return Encoder(run.config, run.stats, graphdef, restored["encoder"], max_batch=max_batch)


def load_vae(run_dir: str | Path, *, max_batch: int = 4096) -> TrainedVae:
    """Load the whole VAE (encoder and decoder) of a run's best checkpoint."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    graphdef, template = _abstract_params(
        lambda: Vae(run.n_bands, run.n_times, run.n_features, run.config.model, rngs=nnx.Rngs(0))
    )
    restored, epoch = _restore_best(run_dir, dict(template))
    params = {"encoder": restored["encoder"], "decoder": restored["decoder"]}
    encoder_graphdef, _ = _abstract_params(
        lambda: LightCurveEncoder(
            run.n_bands, run.n_times, run.n_features, run.config.model, rngs=nnx.Rngs(0)
        )
    )
    encoder = Encoder(
        run.config, run.stats, encoder_graphdef, params["encoder"], max_batch=max_batch
    )
    return TrainedVae(run.config, run.stats, graphdef, params, encoder, epoch)


__all__ = ["EncodedTable", "Encoder", "TrainedVae", "load_encoder", "load_vae"]
