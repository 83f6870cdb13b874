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

import functools
import logging
import math
import time
from collections.abc import Callable
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
from plasticc_jax import losses, provenance, runs, streaming
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config, ModelConfig, TrainConfig
from plasticc_jax.dataset import (
    FeatureStats,
    LightCurveArrays,
    load_split,
    read_manifest,
    read_stats,
)
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import folder_lock
from plasticc_jax.models import Vae, compute_dtype
from plasticc_jax.runs import Progress

log = logging.getLogger(__name__)

Params = dict[str, Any]
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
StepFn = Callable[["TrainState", Batch, jax.Array], tuple["TrainState", Metrics]]
EvalFn = Callable[[Params, Batch], Metrics]

# What validation needs from the forward pass (the rest is left out of the compiled step).
VAL_TERMS: tuple[str, ...] = ("recon_nll", "feature_nll", "kl", "n_values")


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: training stopped, the last good checkpoint is kept."""


class TrainState(NamedTuple):
    """Everything the jit-compiled step updates. A pytree; donated to each step."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Params  # nnx.to_pure_dict of the Vae's parameters
    opt_state: optax.OptState


# ---------------------------------------------------------------------------------------------
# Model, optimizer and the jit-compiled steps.


def n_classes(config: Config) -> int:
    """Outputs of the classification head: one per known class (0 without a head)."""
    return len(config.data.known_classes) if config.model.classifier_head else 0


def create_model(
    config: Config, n_bands: int, n_times: int, n_features: int, *, dtype: str | None = None
) -> Vae:
    """The VAE, initialised from `config.train.seed` (deterministic)."""
    dtype = dtype or config.train.compute_dtype
    shape = (n_bands, n_times, n_features, n_classes(config))
    return _vae(config.model, config.train.seed, dtype, *shape)


def _vae(
    model: ModelConfig,
    seed: int,
    dtype: str,
    n_bands: int,
    n_times: int,
    n_features: int,
    n_classes: int,
) -> Vae:
    return Vae(
        n_bands,
        n_times,
        n_features,
        model,
        n_classes=n_classes,
        dtype=compute_dtype(dtype),
        rngs=nnx.Rngs(seed),
    )


def init_params(
    config: Config, n_bands: int, n_times: int, n_features: int
) -> tuple[nnx.GraphDef, Params]:
    """`create_model` split into its graph and its parameters (a pure dict), initialised in one
    compiled program: the same values as eager initialisation, without compiling every
    initialiser of every layer one by one (seconds on a CPU)."""
    model, tc = config.model, config.train
    shape = (n_bands, n_times, n_features, n_classes(config))
    graphdef, initialise = _initialiser(model, tc.seed, tc.compute_dtype, *shape)
    return graphdef, initialise()


@functools.cache
def _initialiser(
    model: ModelConfig,
    seed: int,
    dtype: str,
    n_bands: int,
    n_times: int,
    n_features: int,
    n_classes: int,
) -> tuple[nnx.GraphDef, Callable[[], Params]]:
    """The graph and the jit-compiled initialiser of one model; made once per process, so that
    training again (tests, notebooks) traces and compiles nothing new."""
    build = functools.partial(_vae, model, seed, dtype, n_bands, n_times, n_features, n_classes)
    graphdef, _ = nnx.split(nnx.eval_shape(build))
    return graphdef, jax.jit(lambda: nnx.to_pure_dict(nnx.state(build())))


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
) -> StepFn:
    """The pure train step `(state, batch, rng) -> (state, metrics)` (not yet jit-compiled).

    `rng` is the run's base key; the step's key is `jax.random.fold_in(rng, state.step)`, so a
    resumed run draws the same noise as an uninterrupted one. `batch` holds `flux`, `flux_err`,
    `mask` (batch, n_bands, n_times), normalised `features` (batch, n_features), `weight`
    (batch,), 0 for padding rows, and for a model with a classification head `label` (batch,)
    and `label_weight` (`class_labels`). The loss is the negative ELBO per observed value plus
    `train.classification_weight` times the head's class-balanced cross-entropy. Metrics are
    scalars: `loss`, `recon_nll`, `feature_nll`, `kl`, `beta`, `grad_norm` (before clipping),
    `learning_rate`, and with a head `class_ce`.
    """

    def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(rng, state.step)
        beta = losses.kl_weight(
            state.step, steps_per_epoch, train_config.beta, train_config.kl_warmup_epochs
        )

        def loss_fn(params: Params) -> tuple[jax.Array, Metrics]:
            terms = losses.forward(graphdef, params, batch, key)
            loss, metrics = losses.vae_loss(terms, batch["weight"], beta)
            if "logits" in terms:
                ce, _ = losses.classification_loss(
                    terms["logits"], batch["label"], batch["label_weight"]
                )
                loss = loss + train_config.classification_weight * ce
                metrics = {**metrics, "loss": loss, "class_ce": ce}
            return loss, metrics

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


@functools.cache
def compiled_steps(
    graphdef: nnx.GraphDef, train_config: TrainConfig, steps_per_epoch: int, mesh: Mesh
) -> tuple[StepFn, EvalFn]:
    """The jit-compiled train and eval steps over `mesh` (batch sharded, state replicated, state
    donated); made once per process for each model, settings and mesh."""
    tx, schedule = make_optimizer(train_config, steps_per_epoch)
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    train_step = jax.jit(
        make_train_step(graphdef, tx, schedule, train_config, steps_per_epoch),
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    eval_step = jax.jit(
        make_eval_step(graphdef), in_shardings=(replicated, sharded), out_shardings=sharded
    )
    return train_step, eval_step


def make_eval_step(graphdef: nnx.GraphDef) -> EvalFn:
    """Per-object loss terms at z = mu (deterministic): `(params, batch) -> {name: (batch,)}`."""

    def eval_step(params: Params, batch: Batch) -> Metrics:
        terms = losses.forward(graphdef, params, batch)
        out = {name: terms[name] for name in VAL_TERMS}
        if "logits" in terms:
            _, out["class_ce"] = losses.classification_loss(
                terms["logits"], batch["label"], batch["label_weight"]
            )
        return out

    return eval_step


def validation_loss(
    eval_step: EvalFn,
    params: Params,
    data: dict[str, np.ndarray],
    train_config: TrainConfig,
    batch_size: int,
    sharded: NamedSharding | None = None,
) -> dict[str, float]:
    """The training loss over a whole split, at z = mu (the early-stopping criterion): the
    negative ELBO per observed value plus, with a head, the weighted cross-entropy."""
    sums = dict.fromkeys(("recon_nll", "feature_nll", "kl", "n_values", "objects"), 0.0)
    sums.update(class_ce=0.0, label_weight=0.0)
    n_devices = len(sharded.mesh.devices.flat) if sharded is not None else 1
    min_size = streaming.MIN_PADDED_BATCH * n_devices  # every padded size splits over devices
    for host_batch, _ in streaming.padded_batches(data, batch_size, min_size=min_size):
        terms = jax.device_get(eval_step(params, jax.device_put(host_batch, sharded)))
        weight = host_batch["weight"].astype(np.float64)
        for name in VAL_TERMS:
            sums[name] += float(np.sum(weight * terms[name]))
        sums["objects"] += float(weight.sum())
        if "class_ce" in terms:
            label_weight = host_batch["label_weight"].astype(np.float64)
            sums["class_ce"] += float(np.sum(label_weight * terms["class_ce"]))
            sums["label_weight"] += float(label_weight.sum())
    total = sums["recon_nll"] + sums["feature_nll"] + train_config.beta * sums["kl"]
    out = {
        "val_loss": total / sums["n_values"],
        "val_recon_nll": sums["recon_nll"] / sums["objects"],
        "val_feature_nll": sums["feature_nll"] / sums["objects"],
        "val_kl": sums["kl"] / sums["objects"],
    }
    if sums["label_weight"] > 0:
        out["val_class_ce"] = sums["class_ce"] / sums["label_weight"]
        out["val_loss"] += train_config.classification_weight * out["val_class_ce"]
    return out


# ---------------------------------------------------------------------------------------------
# The data.


def class_balance(target: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """(n_classes,) weight of each known class, inversely proportional to its number of train
    objects and 1 on average over objects, so that every class counts alike in the head's loss."""
    counts = np.array([np.sum(target == c) for c in classes], np.float64)
    return np.where(counts > 0, counts.sum() / (len(classes) * np.maximum(counts, 1)), 0.0)


def class_labels(
    target: np.ndarray, classes: tuple[int, ...], balance: np.ndarray
) -> dict[str, np.ndarray]:
    """`label` (n,) int32, the index of each object's class among `classes`, and `label_weight`
    (n,) float32, its class's `balance` (0 for objects of no known class)."""
    classes_array = np.asarray(classes)
    index = np.searchsorted(np.sort(classes_array), target)
    order = np.argsort(classes_array)
    known = np.isin(target, classes_array)
    label = np.where(known, order[np.minimum(index, len(classes) - 1)], 0).astype(np.int32)
    return {"label": label, "label_weight": np.where(known, balance[label], 0.0).astype(np.float32)}


def epoch_rows(object_id: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The rows one epoch trains on, in its order: each object once, at one of its stages drawn
    uniformly (its complete light curve or one cut after its first detection, `early`), so an
    epoch costs the same with partial light curves as without, and over the epochs every object
    is seen at every stage. Rows of distinct objects: a permutation of them all."""
    if np.unique(object_id).size == object_id.size:
        return rng.permutation(object_id.size)
    shuffled = rng.permutation(object_id.size)
    _, first = np.unique(object_id[shuffled], return_index=True)
    return rng.permutation(shuffled[first])


def _load_split(dataset_dir: Path, split: str, config: Config) -> LightCurveArrays:
    """A prepared split's objects of the config's known classes, checked: no anomaly-class
    object in train, finite values, this grid.

    Keeping the known classes only is a no-op for a dataset prepared with the same protocol; it
    lets a run leave a known class out (the leave-one-class-out validation does).
    """
    arrays = load_split(dataset_dir, split, partial=config.train.partial_curves)
    if split == "train" and np.any(arrays.is_anomaly):
        first = int(arrays.object_id[np.argmax(arrays.is_anomaly)])
        raise UserError(
            f"{dataset_dir}: the train split holds anomaly-class objects (e.g. object_id "
            f"{first}); the VAE must see known classes only: re-run prepare"
        )
    arrays = arrays.take(np.flatnonzero(np.isin(arrays.target, config.data.known_classes)))
    if not len(arrays):
        raise UserError(
            f"split {split!r} of {dataset_dir} holds no object of the known classes "
            f"{list(config.data.known_classes)}: re-run prepare with this protocol"
        )
    if arrays.flux.shape[2] != config.data.n_time_bins:
        raise UserError(
            f"{dataset_dir} has {arrays.flux.shape[2]} time bins but the config asks for "
            f"{config.data.n_time_bins}: re-run prepare with this config"
        )
    bad_grid = arrays.mask & ~(np.isfinite(arrays.flux) & np.isfinite(arrays.flux_err))
    bad_feature = np.isinf(arrays.features)  # NaN is "undefined" and allowed
    for name, bad in (("flux/flux_err", bad_grid), ("features", bad_feature)):
        rows = np.flatnonzero(bad.reshape(len(arrays), -1).any(axis=1))
        if rows.size:
            raise UserError(
                f"{dataset_dir}, split {split!r}: non-finite {name} in {rows.size} objects "
                f"(first object_id {int(arrays.object_id[rows[0]])}): re-run prepare"
            )
    return arrays


# ---------------------------------------------------------------------------------------------
# The stage.


def train(config: Config, workdir: Path, *, dataset_dir: Path | None = None) -> Path:
    """Train (or resume training) the VAE; returns the run directory.

    Args:
        config: the resolved config (`config.resolve`).
        workdir: project folder; relative paths in the config resolve against it.
        dataset_dir: the prepared dataset (default: the config's, `data.dataset_dir`); the
            validation folds train on their protocol's dataset with one known class left out.

    Raises:
        UserError: no prepared dataset, a dataset that does not match the config, a run
            directory of a different model, or a diverged training (`TrainingDiverged`).
        FolderBusy: another process writes the run directory or the dataset.
    """
    config_lib.require_resolved(config)
    workdir = Path(workdir)
    run_dir = workdir / config.run_path
    dataset_dir = workdir / (dataset_dir or config.data.dataset_dir)
    runs.check_run_dir(run_dir, [dataset_dir, workdir / config.data.raw_dir])
    # One train per run directory; no prepare rewrites the dataset meanwhile.
    with folder_lock(run_dir, "train"), folder_lock(dataset_dir, "train", shared=True):
        return _train(config, run_dir, dataset_dir)


def _train(config: Config, run_dir: Path, dataset_dir: Path) -> Path:
    tc = config.train
    manifest = read_manifest(dataset_dir)
    provenance.check_dataset_config(dataset_dir, manifest, config)
    train_arrays = _load_split(dataset_dir, "train", config)
    val_arrays = _load_split(dataset_dir, "val", config)
    # The statistics of the objects trained on (the dataset's own when no class is left out).
    stats = FeatureStats.fit(read_stats(dataset_dir).names, train_arrays.features)
    n_times = config.data.n_time_bins
    train_data = streaming.model_inputs(train_arrays, stats, n_times)
    val_data = streaming.model_inputs(val_arrays, stats, n_times)
    if n_classes(config):
        balance = class_balance(train_arrays.target, config.data.known_classes)
        train_data.update(class_labels(train_arrays.target, config.data.known_classes, balance))
        val_data.update(class_labels(val_arrays.target, config.data.known_classes, balance))
    _, n_bands, _ = train_arrays.flux.shape
    n_train = int(train_arrays.complete.sum())  # objects: an epoch shows each one once
    n_features = train_arrays.features.shape[1]

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    batch_sizes = {"train.batch_size": tc.batch_size, "eval.batch_size": config.eval.batch_size}
    for name, size in batch_sizes.items():
        if size % len(devices):
            raise UserError(f"{name}={size} must be a multiple of the {len(devices)} devices")

    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    progress = Progress(tc.seed, np.asarray(jax.random.key_data(jax.random.key(tc.seed))).tolist())
    metrics_path = run_dir / "metrics.jsonl"

    store = CheckpointStore(run_dir / "checkpoints")
    try:
        latest = store.latest_epoch()
        if latest is not None:
            runs.check_resumable(run_dir, config, stats, dataset_dir, manifest)
            progress = Progress.from_json(store.restore(latest, {"meta": None})["meta"])
            if progress.done(tc):
                progress.log_done(run_dir)
                return run_dir
        runs.write_run_files(run_dir, config, stats, dataset_dir, manifest)
        graphdef, params = init_params(config, n_bands, n_times, n_features)
        tx, _ = make_optimizer(tc, steps_per_epoch)
        state = init_state(params, tx)
        if latest is None:
            metrics_path.unlink(missing_ok=True)
        else:
            templates = {"encoder": params["encoder"], "decoder": params["decoder"]}
            restored = store.restore(latest, {**templates, "opt_state": state.opt_state})
            params = {"encoder": restored["encoder"], "decoder": restored["decoder"]}
            step = jnp.asarray(progress.step, jnp.int32)
            state = TrainState(step, params, restored["opt_state"])
            runs.keep_metrics_until(metrics_path, latest)
            log.info("resuming %s after epoch %d", run_dir, progress.epoch)
            if progress.seed != tc.seed:
                log.warning("resuming with the run's seed %d, not %d", progress.seed, tc.seed)

        train_step, eval_step = compiled_steps(graphdef, tc, steps_per_epoch, mesh)
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
            state=jax.device_put(state, replicated),
            progress=progress,
            train_step=train_step,
            eval_step=eval_step,
            train_data=train_data,
            train_objects=train_arrays.object_id,
            val_data=val_data,
            sharded=sharded,
            metrics_path=metrics_path,
        )
    finally:
        store.close()
    return run_dir


def _fit(
    *,
    config: Config,
    store: CheckpointStore,
    state: TrainState,
    progress: Progress,
    train_step: StepFn,
    eval_step: EvalFn,
    train_data: dict[str, np.ndarray],
    train_objects: np.ndarray,
    val_data: dict[str, np.ndarray],
    sharded: NamedSharding,
    metrics_path: Path,
) -> None:
    """The epoch loop: train, validate, log, checkpoint, stop early."""
    tc = config.train
    rng = jax.random.wrap_key_data(np.asarray(progress.rng, np.uint32))
    bar = tqdm(
        total=tc.max_epochs,
        initial=progress.epoch,
        unit="epoch",
        desc="train",
        dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal (CI, logs): the log lines suffice
    )
    with bar, logging_redirect_tqdm():
        for epoch in range(progress.epoch + 1, tc.max_epochs + 1):
            start = time.perf_counter()
            # Seeded per epoch, so a resumed run sees the same order as an uninterrupted one.
            order = epoch_rows(train_objects, np.random.default_rng([progress.seed, epoch]))
            n_train = order.size
            batches = streaming.padded_batches(
                train_data, tc.batch_size, order, min_size=tc.batch_size
            )
            step_metrics = []
            for host_batch, _ in batches:
                state, metrics = train_step(state, jax.device_put(host_batch, sharded), rng)
                step_metrics.append(metrics)
            history = jax.device_get(step_metrics)
            _check_finite(history, epoch, progress, store.directory)
            row: dict[str, Any] = {"epoch": epoch, "step": int(state.step)}
            for name in history[0]:
                row[name] = float(np.mean([m[name] for m in history]))
            row["learning_rate"] = float(history[-1]["learning_rate"])
            row["beta"] = float(history[-1]["beta"])
            row.update(
                validation_loss(
                    eval_step, state.params, val_data, tc, config.eval.batch_size, sharded
                )
            )
            if not math.isfinite(row["val_loss"]):
                raise TrainingDiverged(_diverged(epoch, "val loss", progress, store.directory))
            seconds = time.perf_counter() - start
            row["epoch_seconds"] = seconds
            row["samples_per_s"] = n_train / seconds
            stop = progress.record(epoch, int(state.step), row["val_loss"], tc)
            # Metrics first, then the checkpoint: a kill between the two leaves a metrics line
            # that the resumed run drops (`runs.keep_metrics_until`), never a checkpoint without
            # one.
            runs.append_metrics(metrics_path, row)
            store.save(
                epoch,
                encoder=state.params["encoder"],
                decoder=state.params["decoder"],
                opt_state=state.opt_state,
                meta=progress.to_json(),
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
        progress.epoch,
        progress.best_val_loss,
        progress.best_epoch,
        store.directory,
    )


def _diverged(epoch: int, what: str, progress: Progress, directory: Path) -> str:
    kept = (
        f"the last good checkpoint (epoch {progress.epoch}) is kept in {directory}"
        if progress.epoch
        else "no checkpoint was saved"
    )
    return (
        f"training diverged: non-finite {what} in epoch {epoch}; {kept}. Lower "
        "train.learning_rate or check the prepared data for extreme values, then run train again."
    )


def _check_finite(
    history: list[dict[str, np.ndarray]], epoch: int, progress: Progress, directory: Path
) -> None:
    for index, metrics in enumerate(history):
        if not (np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])):
            step = progress.step + index + 1
            raise TrainingDiverged(_diverged(epoch, f"loss at step {step}", progress, directory))


__all__ = [
    "TrainState",
    "TrainingDiverged",
    "create_model",
    "init_params",
    "init_state",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "n_classes",
    "train",
    "validation_loss",
]
