"""The research API: load a trained encoder (or the whole VAE) from a run directory.

    from plasticc_jax import load_encoder
    encoder = load_encoder("runs/default-rare")
    mu, logvar = encoder(batch)          # LightCurveArrays or a dict of arrays -> numpy (n, L)
    table = encoder.encode_table(lightcurves_df, metadata_df)   # raw PLAsTiCC-style tables

A run directory alone is enough: `config.json` says how the model was built and how light curves
were gridded, `stats.json` holds the feature normalisation, and the best checkpoint (by val loss)
holds the weights. `load_encoder` reads the encoder's parameters only, never the decoder's.

Calls are jit-compiled; inputs go through `batches.model_inputs` and `batches.padded_batches`
(batches of at most `max_batch` objects, the last padded to a power of two, at least 64), so a
session compiles a handful of shapes, not one per input size. The VAE's pass is
`losses.forward`, the one the training step uses. Inference runs in float32 whatever
`train.compute_dtype` was.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
from flax import nnx

from plasticc_jax import batches, losses, plasticc, runs, streaming
from plasticc_jax.batches import ArraysLike
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config
from plasticc_jax.dataset import FeatureStats, read_stats
from plasticc_jax.errors import TRAIN_FIRST, UserError
from plasticc_jax.models import LightCurveEncoder, Vae

log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]
BatchFn = Callable[[dict, dict[str, np.ndarray]], dict[str, jax.Array]]


class EncodedTable(NamedTuple):
    """`Encoder.encode_table` output: one row per encoded object.

    object_id: (n,) int64; mu, logvar: (n, latent_dim) float32; rejected: DataFrame with columns
    object_id, reason, source for the input objects that could not be gridded (too few
    observations, unusable values, no metadata, ...: `gridding.REASONS`).
    """

    object_id: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray
    rejected: pd.DataFrame


def _run_batched(
    fn: BatchFn, params: dict, inputs: dict[str, np.ndarray], batch_size: int, keys: tuple[str, ...]
) -> Outputs:
    """Apply a jit-compiled `fn(params, batch) -> {name: (rows, ...)}` to padded batches of
    `inputs`; the real rows of each wanted output, stitched together (numpy)."""
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    # Tight: a replay night or a file's last objects are not padded to twice their number.
    for batch, n_real in batches.padded_batches(inputs, batch_size, tight=True):
        out = fn(params, batch)
        for key in keys:
            parts[key].append(np.asarray(out[key])[:n_real])
    if parts[keys[0]]:
        return {key: np.concatenate(values) for key, values in parts.items()}
    # No rows: empty outputs of the right shapes, without running the model.
    one = {name: np.zeros((1, *v.shape[1:]), v.dtype) for name, v in inputs.items()}
    shapes = jax.eval_shape(fn, params, {**one, "weight": np.zeros(1, np.float32)})
    return {key: np.zeros((0, *shapes[key].shape[1:]), shapes[key].dtype) for key in keys}


def _positive_rows(name: str, value: object) -> int:
    """A batch size given by the caller, checked: a whole number of objects, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UserError(f"{name}={value!r}: give a positive whole number of objects")
    return int(value)


class _RunFiles(NamedTuple):
    config: Config
    stats: FeatureStats
    n_bands: int
    n_times: int
    n_features: int
    n_classes: int

    @staticmethod
    def of(config: Config, stats: FeatureStats) -> _RunFiles:
        n_classes = len(config.head_classes)
        n_times, n_features = config.data.n_time_bins, len(stats.names)
        return _RunFiles(config, stats, plasticc.N_PASSBANDS, n_times, n_features, n_classes)

    def encoder(self) -> LightCurveEncoder:
        return LightCurveEncoder(
            self.n_bands,
            self.n_times,
            self.n_features,
            self.config.model,
            n_classes=self.n_classes,
            rngs=nnx.Rngs(0),
        )

    def vae(self) -> Vae:
        return Vae(
            self.n_bands,
            self.n_times,
            self.n_features,
            self.config.model,
            n_classes=self.n_classes,
            rngs=nnx.Rngs(0),
        )


def _read_run(run_dir: Path) -> _RunFiles:
    config = runs.read_config(run_dir)
    path = run_dir / "stats.json"
    try:
        stats = read_stats(run_dir)
    except (OSError, ValueError, TypeError, KeyError) as error:
        what = (
            "is missing" if not path.exists() else f"is damaged ({type(error).__name__}: {error})"
        )
        raise UserError(
            f"{path} {what}; train wrote it: restore it, or train the run again"
        ) from None
    return _RunFiles.of(config, stats)


def _restore_best(
    run_dir: Path, run: _RunFiles, templates: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The networks of `templates` at the run's best epoch, checked against the checkpoint's
    record (`runs.check_checkpoint_meta`), and that epoch."""
    directory = run_dir / "checkpoints"
    if not directory.exists():
        raise UserError(f"{run_dir} holds no checkpoints/: {TRAIN_FIRST}")
    with CheckpointStore(directory, read_only=True) as store:
        epoch = store.best_epoch()
        if epoch is None:
            raise UserError(f"{directory} holds no finished checkpoint: {TRAIN_FIRST}")
        restored = store.restore(epoch, {**templates, "meta": None})
    meta = restored.pop("meta")
    runs.check_checkpoint_meta(run_dir, run.config, run.stats, meta, restored, epoch)
    return restored, epoch


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
        classes: the known classes of the classification head, in the order of its outputs
            (empty without a head).
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
    ) -> None:
        self.config = config
        self.stats = stats
        self.params = params
        self.latent_dim = config.model.latent_dim
        self.classes = config.head_classes
        self.max_batch = _positive_rows("max_batch", max_batch)
        self.n_bands = plasticc.N_PASSBANDS
        self.n_times = config.data.n_time_bins
        self._graphdef = graphdef

        def encode(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            module = nnx.merge(graphdef, params)
            mu, logvar = module(batch["flux"], batch["flux_err"], batch["mask"], batch["features"])
            out = {"mu": mu, "logvar": logvar}
            if module.classifier is not None:
                out["probabilities"] = jax.nn.softmax(module.classify(mu), axis=-1)
            return out

        self._encode = jax.jit(encode)

    def __reduce__(self) -> tuple:
        # Pickled as its parts, the parameters as numpy: a process that unpickles it (a Dask
        # worker) has the model without reading the checkpoint.
        params = jax.device_get(self.params)
        return (_encoder, (self.config, self.stats, params, self.max_batch))

    @property
    def module(self) -> LightCurveEncoder:
        """The encoder as an `nnx.Module` (e.g. to take gradients through it)."""
        return nnx.merge(self._graphdef, self.params)

    def inputs(self, batch: ArraysLike) -> dict[str, np.ndarray]:
        """Validate a batch and normalise its raw features (`batches.model_inputs`).

        Args:
            batch: `LightCurveArrays`, or a mapping with `flux`, `flux_err`, `mask`
                (n, n_bands, n_times) in the scaled-flux units of prepare, and raw `features`
                (n, n_features) in the order of `stats.names`, or every feature of a prepared
                dataset (`gridding.FEATURE_NAMES`, of which those are read).
        """
        return batches.model_inputs(batch, self.stats, self.n_times)

    def __call__(self, batch: ArraysLike) -> tuple[np.ndarray, np.ndarray]:
        """Latent mean and log-variance.

        Args:
            batch: see `inputs`.

        Returns:
            (mu, logvar): numpy float32, each (n, latent_dim).
        """
        out = _run_batched(
            self._encode, self.params, self.inputs(batch), self.max_batch, ("mu", "logvar")
        )
        return out["mu"], out["logvar"]

    def classify(self, batch: ArraysLike) -> np.ndarray:
        """Probabilities of the known classes (`classes`) from the classification head.

        Returns:
            (n, len(classes)) float32, rows summing to 1.

        Raises:
            UserError: the run was trained without a head (`model.classifier_head=false`).
        """
        if not self.classes:
            raise UserError("this run has no classification head (model.classifier_head=false)")
        inputs = self.inputs(batch)
        return _run_batched(self._encode, self.params, inputs, self.max_batch, ("probabilities",))[
            "probabilities"
        ]

    def encode_table(
        self, lightcurves: pd.DataFrame, metadata: pd.DataFrame, anomaly_classes: tuple = ()
    ) -> EncodedTable:
        """Encode raw light-curve and metadata tables, gridded exactly as prepare does.

        Args:
            lightcurves: one row per observation (object_id, mjd, passband, flux, flux_err,
                detected; PLAsTiCC column names such as detected_bool are accepted).
            metadata: one row per object (object_id, ra, decl, ddf, hostgal_photoz, ...).
            anomaly_classes: unused (the table carries no labels); kept so that existing calls
                keep working.

        Returns:
            `EncodedTable` (object ids in the order of the gridded output).
        """
        del anomaly_classes
        arrays, rejected = streaming.grid_lightcurves(
            lightcurves, metadata, self.config.data, caller="encode_table"
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
    ) -> None:
        self.config = config
        self.stats = stats
        self.params = params
        self.encoder = encoder
        self.epoch = epoch
        self.max_batch = encoder.max_batch
        self._forward = jax.jit(functools.partial(losses.forward, graphdef))

    def __reduce__(self) -> tuple:
        # As `Encoder.__reduce__`: a Dask worker gets the driver's model, no checkpoint read.
        params = jax.device_get(self.params)
        return (_trained_vae, (self.config, self.stats, params, self.epoch, self.max_batch))

    def evaluate(
        self, arrays: ArraysLike, batch_size: int | None = None, *, reconstruction: bool = False
    ) -> Outputs:
        """Per-object latent statistics and loss terms, decoding z = mu (deterministic).

        Args:
            arrays: see `Encoder.inputs`.
            batch_size: the largest batch compiled (None: `max_batch`).
            reconstruction: also return the decoded grid (`mean`, `sigma`, as `reconstruct`),
                from the same pass.

        Returns:
            `mu`, `logvar` (n, L); `recon_nll` (n,) the masked heteroscedastic Gaussian NLL
            summed over observed cells (nats); `n_observed` (n,) observed cells; `kl` (n,)
            KL(q(z|x) || N(0, I)) in nats; `feature_nll` (n,) NLL of the normalised features;
            `chi2` (n,) the reduced chi-square of the observed cells (`losses.reduced_chi2`);
            `logits` (n, n_classes) of the classification head, where the run has one; with
            `reconstruction`, `mean` and `sigma` (n, n_bands, n_times).
        """
        return self.evaluate_inputs(self.encoder.inputs(arrays), batch_size, reconstruction)

    def evaluate_inputs(
        self, inputs: dict[str, np.ndarray], batch_size: int | None, reconstruction: bool
    ) -> Outputs:
        """`evaluate` of inputs already made by `Encoder.inputs` (validated, features
        normalised), for a caller that needs the normalised features too."""
        keys = ("mu", "logvar", "recon_nll", "n_observed", "kl", "feature_nll", "chi2")
        if self.encoder.classes:
            keys += ("logits",)
        if reconstruction:
            keys += ("mean", "sigma")
        return _run_batched(self._forward, self.params, inputs, self._batch(batch_size), keys)

    def reconstruct(
        self, arrays: ArraysLike, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The decoded light curves at z = mu.

        Returns:
            (mean, sigma), each (n, n_bands, n_times) in the scaled-flux units of the grid;
            sigma is the model's own scatter per cell (add flux_err in quadrature for the
            predictive spread of an observation).
        """
        out = self._run(arrays, batch_size, ("mean", "sigma"))
        return out["mean"], out["sigma"]

    def _batch(self, batch_size: int | None) -> int:
        return self.max_batch if batch_size is None else _positive_rows("batch_size", batch_size)

    def _run(self, arrays: ArraysLike, batch_size: int | None, keys: tuple[str, ...]) -> Outputs:
        inputs = self.encoder.inputs(arrays)
        return _run_batched(self._forward, self.params, inputs, self._batch(batch_size), keys)


def _encoder(config: Config, stats: FeatureStats, params: dict, max_batch: int) -> Encoder:
    """The encoder of `params` (numpy, after unpickling: put on the device once, here)."""
    graphdef, _ = _abstract_params(_RunFiles.of(config, stats).encoder)
    return Encoder(config, stats, graphdef, jax.device_put(params), max_batch=max_batch)


def _trained_vae(
    config: Config,
    stats: FeatureStats,
    params: dict,
    epoch: int,
    max_batch: int,
    graphdef: nnx.GraphDef | None = None,
) -> TrainedVae:
    """The VAE of `params` ({"encoder": ..., "decoder": ...}), its encoder sharing them;
    `graphdef`: the VAE's, where the caller has it already (None: traced here)."""
    params = jax.device_put(params)
    if graphdef is None:
        graphdef, _ = _abstract_params(_RunFiles.of(config, stats).vae)
    encoder = _encoder(config, stats, params["encoder"], max_batch)
    return TrainedVae(config, stats, graphdef, params, encoder, epoch)


def load_encoder(run_dir: str | Path, *, max_batch: int = 4096) -> Encoder:
    """Load the encoder of a run's best checkpoint (the decoder is not read).

    Args:
        run_dir: a run directory written by `train` (runs/<name>-<protocol>).
        max_batch: the largest batch to compile (bigger inputs are chunked).
    """
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    graphdef, template = _abstract_params(run.encoder)
    restored, epoch = _restore_best(run_dir, run, {"encoder": template})
    log.debug("loaded the encoder of %s, epoch %d", run_dir, epoch)
    return Encoder(run.config, run.stats, graphdef, restored["encoder"], max_batch=max_batch)


def load_vae(run_dir: str | Path, *, max_batch: int = 4096) -> TrainedVae:
    """Load the whole VAE (encoder and decoder) of a run's best checkpoint."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    graphdef, template = _abstract_params(run.vae)
    restored, epoch = _restore_best(run_dir, run, dict(template))
    params = {"encoder": restored["encoder"], "decoder": restored["decoder"]}
    return _trained_vae(run.config, run.stats, params, epoch, max_batch, graphdef)


__all__ = ["EncodedTable", "Encoder", "TrainedVae", "load_encoder", "load_vae"]
