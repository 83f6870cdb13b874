"""`train(config, workdir)`: fit the VAE on the train split, early-stop on the val split.

The run directory (`config.run_path`) receives, at the start, `config.json` (resolved) and
`stats.json` (the dataset's feature statistics), then per epoch one line of `metrics.jsonl` and
an Orbax checkpoint (`checkpoints/`, see `plasticc_jax.checkpoints`). Running `train` again on
the same run directory resumes after the last saved epoch (after Ctrl-C or kill -9), or logs that
the run is finished.

The step is a plain `jax.jit` function over a `TrainState` (the model split once with
`nnx.split`; parameters as a pure dict), with the state donated. With several local devices the
batch is sharded over a one-axis mesh and the state replicated; with one device the same code
runs on a mesh of one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from plasticc_jax import config as config_lib
from plasticc_jax import losses
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config, TrainConfig
from plasticc_jax.dataset import FeatureStats, LightCurveArrays, load_split, read_stats
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_write_text
from plasticc_jax.models import Vae, compute_dtype

log = logging.getLogger(__name__)

Params = dict[str, Any]
Batch = dict[str, jax.Array]
StepFn = Callable[["TrainState", Batch, jax.Array], tuple["TrainState", dict[str, jax.Array]]]

# Validation runs in larger fixed-shape batches than training (forward pass only).
EVAL_BATCH_SIZE = 1024
# Improvements of the val loss smaller than this (nats per observed value) do not reset patience.
MIN_DELTA = 1e-4


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: training stopped, the last good checkpoint is kept."""


class TrainState(NamedTuple):
    """Everything the jit-compiled step updates. A pytree; donated to each step."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Params  # nnx.to_pure_dict of the Vae's parameters
    opt_state: optax.OptState


# ---------------------------------------------------------------------------------------------
# Model, optimizer and the jit-compiled steps.


def create_model(
    config: Config, n_bands: int, n_times: int, n_features: int, *, dtype: str | None = None
) -> Vae:
    """The VAE, initialised from `config.train.seed` (deterministic)."""
    return Vae(
        n_bands,
        n_times,
        n_features,
        config.model,
        dtype=compute_dtype(dtype or config.train.compute_dtype),
        rngs=nnx.Rngs(config.train.seed),
    )


def make_optimizer(
    train_config: TrainConfig, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up then cosine decay to 1% of the peak, after gradient clipping.

    Weight decay applies to the dense kernels only (not to biases, LayerNorm or the feature
    scales), as usual for AdamW.
    """
    total = max(1, train_config.max_epochs * steps_per_epoch)
    warmup = min(total - 1, round(train_config.warmup_epochs * steps_per_epoch))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train_config.learning_rate,
        warmup_steps=max(0, warmup),
        decay_steps=total,
        end_value=train_config.learning_rate * 0.01,
    )
    tx = optax.chain(
        optax.clip_by_global_norm(train_config.clip_norm),
        optax.adamw(
            schedule,
            weight_decay=train_config.weight_decay,
            mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params),
        ),
    )
    return tx, schedule


def init_state(params: Params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    train_config: TrainConfig,
    steps_per_epoch: int,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure train step `(state, batch, rng) -> (state, metrics)` (not yet jit-compiled).

    `rng` is the run's base key; the step's key is `jax.random.fold_in(rng, state.step)`, so a
    resumed run draws the same noise as an uninterrupted one. `batch` holds `flux`, `flux_err`,
    `mask` (batch, n_bands, n_times), normalised `features` (batch, n_features) and `weight`
    (batch,), 0 for padding rows. Metrics are scalars: `loss`, `recon_nll`, `feature_nll`,
    `kl`, `beta`, `grad_norm` (before clipping), `learning_rate`.
    """

    def train_step(
        state: TrainState, batch: Batch, rng: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(rng, state.step)
        beta = losses.kl_weight(
            state.step, steps_per_epoch, train_config.beta, train_config.kl_warmup_epochs
        )

        def loss_fn(params: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
            model = nnx.merge(graphdef, params)
            mu, logvar, recon = model(
                batch["flux"], batch["flux_err"], batch["mask"], batch["features"], key
            )
            terms = losses.per_object_terms(batch, mu, logvar, recon)
            return losses.vae_loss(terms, batch["weight"], beta)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **metrics,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        }
        return TrainState(state.step + 1, params, opt_state), metrics

    return train_step


def make_eval_step(graphdef: nnx.GraphDef) -> Callable[[Params, Batch], dict[str, jax.Array]]:
    """Per-object loss terms at z = mu (deterministic): `(params, batch) -> {name: (batch,)}`."""

    def eval_step(params: Params, batch: Batch) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, params)
        mu, logvar, recon = model(
            batch["flux"], batch["flux_err"], batch["mask"], batch["features"], None
        )
        return losses.per_object_terms(batch, mu, logvar, recon)

    return eval_step


# ---------------------------------------------------------------------------------------------
# Host-side data: NumPy, seeded, fixed-shape batches.


def host_arrays(arrays: LightCurveArrays, stats: FeatureStats) -> dict[str, np.ndarray]:
    """The model's inputs from a split: grids as float32/bool, features normalised."""
    return {
        "flux": np.ascontiguousarray(arrays.flux, np.float32),
        "flux_err": np.ascontiguousarray(arrays.flux_err, np.float32),
        "mask": np.ascontiguousarray(arrays.mask, bool),
        "features": stats.normalise(arrays.features),
    }


def fixed_batches(
    data: dict[str, np.ndarray], batch_size: int, order: np.ndarray
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of exactly `batch_size` rows in `order`; the last is padded with weight-0 rows."""
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        n_real = len(index)
        if n_real < batch_size:
            index = np.concatenate([index, np.resize(order, batch_size - n_real)])
        batch = {name: values[index] for name, values in data.items()}
        batch["weight"] = (np.arange(batch_size) < n_real).astype(np.float32)
        yield batch


def _check_split(arrays: LightCurveArrays, split: str, dataset_dir: Path) -> None:
    if len(arrays) == 0:
        raise UserError(f"split {split!r} of {dataset_dir} holds no objects: re-run prepare")
    if split == "train" and np.any(arrays.is_anomaly):
        first = int(arrays.object_id[np.argmax(arrays.is_anomaly)])
        raise UserError(
            f"{dataset_dir}: the train split holds anomaly-class objects (e.g. object_id "
            f"{first}); the VAE must see known classes only: re-run prepare"
        )
    bad_grid = arrays.mask & ~(np.isfinite(arrays.flux) & np.isfinite(arrays.flux_err))
    bad_feature = ~np.isfinite(arrays.features)
    for name, bad in (("flux/flux_err", bad_grid), ("features", bad_feature)):
        rows = np.flatnonzero(bad.reshape(len(arrays), -1).any(axis=1))
        if rows.size:
            raise UserError(
                f"{dataset_dir}, split {split!r}: non-finite {name} in {rows.size} objects "
                f"(first object_id {int(arrays.object_id[rows[0]])}): re-run prepare"
            )


# ---------------------------------------------------------------------------------------------
# The run directory.


def _check_resumable(run_dir: Path, config: Config, dataset_dir: Path) -> None:
    """A run directory with checkpoints must match the model, the data and its statistics."""
    config_path = run_dir / "config.json"
    if config_path.is_file():
        old = config_lib.to_dict(config_lib.read_config(config_path))
        new = config_lib.to_dict(config)
        for section in ("model", "data"):
            if old[section] != new[section]:
                raise UserError(
                    f"{run_dir} holds checkpoints of a different {section} config "
                    f"({config_path}); to train afresh delete that folder or pick another "
                    "run directory (--run-dir)"
                )
        if old["train"] != new["train"]:
            log.warning("resuming %s with changed train settings: %s", run_dir, new["train"])
    stats_path = run_dir / "stats.json"
    if stats_path.is_file() and stats_path.read_text() != (dataset_dir / "stats.json").read_text():
        raise UserError(
            f"{dataset_dir} was prepared again since {run_dir} started (its stats.json differs): "
            "delete the run directory to train on the new dataset"
        )


def _write_run_files(run_dir: Path, config: Config, dataset_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save_config(config, run_dir / "config.json")
    atomic_write_text(run_dir / "stats.json", (dataset_dir / "stats.json").read_text())


def _keep_metrics_until(path: Path, epoch: int) -> None:
    """Drop metric lines of epochs after the checkpoint we resume from (killed mid-epoch)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def _split_params(params: Params) -> tuple[Params, Params]:
    return params["encoder"], params["decoder"]


# ---------------------------------------------------------------------------------------------
# The stage.


def train(config: Config, workdir: Path) -> Path:
    """Train (or resume training) the VAE; returns the run directory.

    Raises:
        UserError: no prepared dataset, a dataset that does not match the config, a run
            directory of a different model, or a diverged training (`TrainingDiverged`).
    """
    config = config_lib.resolve(config)
    workdir = Path(workdir)
    tc = config.train
    dataset_dir = workdir / config.data.dataset_dir
    run_dir = workdir / config.run_path
    train_arrays = load_split(dataset_dir, "train")
    val_arrays = load_split(dataset_dir, "val")
    for split, arrays in (("train", train_arrays), ("val", val_arrays)):
        _check_split(arrays, split, dataset_dir)
    _, n_bands, n_times = train_arrays.flux.shape
    if n_times != config.data.n_time_bins:
        raise UserError(
            f"{dataset_dir} has {n_times} time bins but the config asks for "
            f"{config.data.n_time_bins}: re-run prepare with this config"
        )
    stats = read_stats(dataset_dir)
    train_data = host_arrays(train_arrays, stats)
    val_data = host_arrays(val_arrays, stats)
    n_train, n_features = len(train_arrays), train_arrays.features.shape[1]

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    if tc.batch_size % len(devices) or EVAL_BATCH_SIZE % len(devices):
        raise UserError(
            f"train.batch_size={tc.batch_size} must be a multiple of the {len(devices)} devices"
        )

    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    model = create_model(config, n_bands, n_times, n_features)
    graphdef, params = nnx.split(model)
    params = nnx.to_pure_dict(params)
    tx, schedule = make_optimizer(tc, steps_per_epoch)
    state = init_state(params, tx)
    meta: dict[str, Any] = {
        "seed": tc.seed,
        # The run's base key (sampling noise), saved so a resumed run draws the same noise.
        "rng": np.asarray(jax.random.key_data(jax.random.key(tc.seed))).tolist(),
        "epoch": 0,
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "finished": False,
        "stop_reason": "",
    }

    store = CheckpointStore(run_dir / "checkpoints")
    try:
        latest = store.latest_epoch()
        metrics_path = run_dir / "metrics.jsonl"
        if latest is not None:
            _check_resumable(run_dir, config, dataset_dir)
            meta = dict(store.restore(latest, {"meta": None})["meta"])
            early = meta["stop_reason"] == "early_stopping"
            if early or meta["epoch"] >= tc.max_epochs:
                log.info(
                    "%s is finished (%s at epoch %d; best val loss %.4f at epoch %d): nothing "
                    "to do. %s",
                    run_dir,
                    "early stopping" if early else "train.max_epochs reached",
                    meta["epoch"],
                    meta["best_val_loss"],
                    meta["best_epoch"],
                    "Delete it (or pick another --run-dir) to train afresh."
                    if early
                    else "Raise --max-epochs to train further.",
                )
                return run_dir
        _write_run_files(run_dir, config, dataset_dir)
        if latest is None:
            metrics_path.unlink(missing_ok=True)
        else:
            restored = store.restore(
                latest,
                {
                    "encoder": params["encoder"],
                    "decoder": params["decoder"],
                    "opt_state": state.opt_state,
                },
            )
            params = {"encoder": restored["encoder"], "decoder": restored["decoder"]}
            state = TrainState(jnp.asarray(meta["step"], jnp.int32), params, restored["opt_state"])
            _keep_metrics_until(metrics_path, latest)
            log.info("resuming %s after epoch %d", run_dir, meta["epoch"])
            if meta["seed"] != tc.seed:
                log.warning("resuming with the run's seed %d, not %d", meta["seed"], tc.seed)

        state = jax.device_put(state, replicated)
        train_step = jax.jit(
            make_train_step(graphdef, tx, schedule, tc, steps_per_epoch),
            in_shardings=(replicated, sharded, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        eval_step = jax.jit(
            make_eval_step(graphdef),
            in_shardings=(replicated, sharded),
            out_shardings=sharded,
        )
        log.info(
            "training on %d objects (%d val), %d steps/epoch, %d device(s) %s, run dir %s",
            n_train,
            len(val_arrays),
            steps_per_epoch,
            len(devices),
            devices[0].platform,
            run_dir,
        )
        _fit(
            config=config,
            store=store,
            state=state,
            meta=meta,
            train_step=train_step,
            eval_step=eval_step,
            train_data=train_data,
            val_data=val_data,
            rng=jax.random.wrap_key_data(np.asarray(meta["rng"], np.uint32)),
            sharded=sharded,
            metrics_path=metrics_path,
        )
    finally:
        store.close()
    return run_dir


def validation_loss(
    eval_step: Callable[[Params, Batch], dict[str, jax.Array]],
    params: Params,
    data: dict[str, np.ndarray],
    beta: float,
    sharded: NamedSharding | None = None,
) -> dict[str, float]:
    """Negative ELBO per observed value over a whole split (the early-stopping criterion)."""
    order = np.arange(len(data["flux"]))
    sums = {"recon_nll": 0.0, "feature_nll": 0.0, "kl": 0.0, "n_values": 0.0, "objects": 0.0}
    for host_batch in fixed_batches(data, EVAL_BATCH_SIZE, order):
        terms = jax.device_get(eval_step(params, jax.device_put(host_batch, sharded)))
        weight = host_batch["weight"].astype(np.float64)
        for name in ("recon_nll", "feature_nll", "kl", "n_values"):
            sums[name] += float(np.sum(weight * terms[name]))
        sums["objects"] += float(weight.sum())
    total = sums["recon_nll"] + sums["feature_nll"] + beta * sums["kl"]
    return {
        "val_loss": total / sums["n_values"],
        "val_recon_nll": sums["recon_nll"] / sums["objects"],
        "val_feature_nll": sums["feature_nll"] / sums["objects"],
        "val_kl": sums["kl"] / sums["objects"],
    }


def _fit(
    *,
    config: Config,
    store: CheckpointStore,
    state: TrainState,
    meta: dict[str, Any],
    train_step: StepFn,
    eval_step: Callable[[Params, Batch], dict[str, jax.Array]],
    train_data: dict[str, np.ndarray],
    val_data: dict[str, np.ndarray],
    rng: jax.Array,
    sharded: NamedSharding,
    metrics_path: Path,
) -> None:
    tc = config.train
    n_train = len(train_data["flux"])
    first_epoch = meta["epoch"] + 1
    bar = tqdm(
        total=tc.max_epochs,
        initial=meta["epoch"],
        unit="epoch",
        desc="train",
        dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal (CI, logs): the log lines suffice
    )
    with bar, logging_redirect_tqdm():
        for epoch in range(first_epoch, tc.max_epochs + 1):
            start = time.perf_counter()
            # Seeded per epoch, so a resumed run sees the same order as an uninterrupted one.
            order = np.random.default_rng([meta["seed"], epoch]).permutation(n_train)
            step_metrics = []
            for host_batch in fixed_batches(train_data, tc.batch_size, order):
                state, metrics = train_step(state, jax.device_put(host_batch, sharded), rng)
                step_metrics.append(metrics)
            history = jax.device_get(step_metrics)
            _check_finite(history, epoch, meta, store.directory)
            row: dict[str, Any] = {"epoch": epoch, "step": int(state.step)}
            for name in history[0]:
                row[name] = float(np.mean([m[name] for m in history]))
            row["learning_rate"] = float(history[-1]["learning_rate"])
            row["beta"] = float(history[-1]["beta"])
            row.update(validation_loss(eval_step, state.params, val_data, tc.beta, sharded))
            if not math.isfinite(row["val_loss"]):
                raise TrainingDiverged(_diverged_message(epoch, "val loss", meta, store.directory))
            seconds = time.perf_counter() - start
            row["epoch_seconds"] = seconds
            row["samples_per_s"] = n_train / seconds

            if row["val_loss"] < meta["best_val_loss"] - MIN_DELTA:
                meta.update(best_val_loss=row["val_loss"], best_epoch=epoch, bad_epochs=0)
            else:
                meta["bad_epochs"] += 1
            stop = meta["bad_epochs"] >= tc.patience
            meta.update(
                epoch=epoch,
                step=int(state.step),
                finished=stop or epoch >= tc.max_epochs,
                stop_reason="early_stopping" if stop else "",
            )
            # Metrics first, then the checkpoint: a kill between the two leaves a metrics line
            # that the resumed run drops (`_keep_metrics_until`), never a checkpoint without one.
            _append_metrics(metrics_path, row)
            encoder, decoder = _split_params(state.params)
            store.save(
                epoch,
                encoder=encoder,
                decoder=decoder,
                opt_state=state.opt_state,
                meta=meta,
                val_loss=row["val_loss"],
            )
            bar.update(1)
            bar.set_postfix(
                loss=f"{row['loss']:.3f}", val=f"{row['val_loss']:.3f}", kl=f"{row['kl']:.1f}"
            )
            log.info(
                "epoch %d/%d: loss %.4f (recon %.1f, kl %.1f, beta %.2f) val %.4f, %.0f samples/s",
                epoch,
                tc.max_epochs,
                row["loss"],
                row["recon_nll"],
                row["kl"],
                row["beta"],
                row["val_loss"],
                row["samples_per_s"],
            )
            if stop:
                log.info(
                    "early stopping at epoch %d: no val improvement for %d epochs",
                    epoch,
                    tc.patience,
                )
                break
    log.info(
        "finished after epoch %d; best val loss %.4f at epoch %d (%s)",
        meta["epoch"],
        meta["best_val_loss"],
        meta["best_epoch"],
        store.directory,
    )


def _diverged_message(epoch: int, what: str, meta: dict[str, Any], directory: Path) -> str:
    kept = (
        f"the last good checkpoint (epoch {meta['epoch']}) is kept in {directory}"
        if meta["epoch"]
        else "no checkpoint was saved"
    )
    return (
        f"training diverged: non-finite {what} in epoch {epoch}; {kept}. Lower "
        "train.learning_rate or check the prepared data for extreme values, then run train again."
    )


def _check_finite(
    history: list[dict[str, np.ndarray]],
    epoch: int,
    meta: dict[str, Any],
    directory: Path,
) -> None:
    for index, metrics in enumerate(history):
        if not (np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])):
            step = meta.get("step", 0) + index + 1
            raise TrainingDiverged(
                _diverged_message(epoch, f"loss at step {step}", meta, directory)
            )


__all__ = [
    "TrainState",
    "TrainingDiverged",
    "create_model",
    "fixed_batches",
    "host_arrays",
    "init_state",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "train",
    "validation_loss",
]
