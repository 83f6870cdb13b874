"""`train(config, workdir)`: fit the VAE on the train split, early-stop on the val split.

The run directory (`config.run_path`) receives, at the start, `config.json` (resolved) and
`stats.json` (the statistics of the network's features on the train split, `feature_stats`),
then per epoch one line of `metrics.jsonl` and
an Orbax checkpoint (`checkpoints/`, see `plasticc_jax.checkpoints`). Running `train` again on
the same run directory resumes after the last saved epoch (after Ctrl-C or kill -9), or logs that
the run is finished.

The model, the optimizer and the jit-compiled train and eval steps are `plasticc_jax.train_step`;
this module loads and checks the splits, runs the epoch loop and keeps the run's records.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from plasticc_jax import batches, config_io, gridding, interrupts, provenance, runs
from plasticc_jax import config as config_lib
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config
from plasticc_jax.dataset import (
    FeatureStats,
    LightCurveArrays,
    load_split,
    read_manifest,
)
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import folder_lock
from plasticc_jax.runs import Progress
from plasticc_jax.train_step import (
    EvalFn,
    StepFn,
    TrainState,
    compiled_steps,
    init_params,
    init_state,
    make_optimizer,
    n_classes,
    validation_loss,
)

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: training stopped, the last good checkpoint is kept."""


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
    # As `batches.model_inputs` requires of observed cells, said here as a dataset problem.
    usable = np.isfinite(arrays.flux) & np.isfinite(arrays.flux_err) & (arrays.flux_err > 0)
    bad_grid = arrays.mask & ~usable
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


def feature_stats(train_arrays: LightCurveArrays) -> FeatureStats:
    """The statistics that normalise the network's features (`gridding.MODEL_FEATURE_NAMES`),
    from the objects it is trained on."""
    names = gridding.MODEL_FEATURE_NAMES
    return FeatureStats.fit(names, gridding.model_features(train_arrays.features, names))


def _train(config: Config, run_dir: Path, dataset_dir: Path) -> Path:
    tc = config.train
    manifest = read_manifest(dataset_dir)
    provenance.check_dataset_config(dataset_dir, manifest, config)
    train_arrays = _load_split(dataset_dir, "train", config)
    val_arrays = _load_split(dataset_dir, "val", config)
    stats = feature_stats(train_arrays)
    n_times = config.data.n_time_bins
    train_data = batches.model_inputs(train_arrays, stats, n_times)
    val_data = batches.model_inputs(val_arrays, stats, n_times)
    if n_classes(config):
        balance = class_balance(train_arrays.target, config.data.known_classes)
        train_data.update(class_labels(train_arrays.target, config.data.known_classes, balance))
        val_data.update(class_labels(val_arrays.target, config.data.known_classes, balance))
    _, n_bands, _ = train_arrays.flux.shape
    n_train = int(train_arrays.complete.sum())  # objects: an epoch shows each one once
    n_features = train_data["features"].shape[1]

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    batch_sizes = {"train.batch_size": tc.batch_size, "eval.batch_size": config.eval.batch_size}
    for name, size in batch_sizes.items():
        if size % len(devices):
            raise UserError(
                f"{name}={size} must be a multiple of the {len(devices)} devices: give "
                f"--set {name}=N with N a multiple of {len(devices)}"
            )

    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    progress = Progress(tc.seed, np.asarray(jax.random.key_data(jax.random.key(tc.seed))).tolist())
    metrics_path = run_dir / "metrics.jsonl"

    store = CheckpointStore(run_dir / "checkpoints")
    try:
        latest = store.latest_epoch()
        if latest is not None:
            # A run whose best checkpoint is gone is refused, not trained on to a run that
            # evaluate refuses (found by an audit: it ended "finished", exit status 0).
            store.best_epoch()
            record = store.restore(latest, {"meta": None})["meta"]
            progress = Progress.from_json(record)
            # The config the run's last epoch was trained with (None from earlier releases).
            trained = record.get("config")
            trained = config_io.from_dict(trained) if isinstance(trained, dict) else None
            changed = runs.check_resumable(run_dir, config, stats, dataset_dir, manifest, trained)
            if progress.seed != tc.seed:
                # Another seed is another run: continued or left as it is, this one would then
                # be evaluated as if it were that run (found by a review of the presets).
                raise UserError(
                    f"{run_dir} was trained with train.seed {progress.seed}, not "
                    f"{tc.seed}: train a run with seed {tc.seed} in a folder of its own "
                    f"(--run-dir), or give train.seed {progress.seed} to continue this one"
                )
            if progress.done(tc):
                ignored = {k: v for k, v in changed.items() if k != "max_epochs"}
                if ignored:  # a finished run is not trained again with them
                    log.warning(
                        "%s is finished: not trained with the train settings given now (%s); "
                        "a run with them needs a folder of its own (--run-dir)",
                        run_dir,
                        ", ".join(f"{k} {was} -> {now}" for k, (was, now) in ignored.items()),
                    )
                written = ("config.json", "stats.json", provenance.RECORD)
                missing = [n for n in written if not (run_dir / n).is_file()]
                if missing:  # deleted since: evaluate and score need them
                    runs.write_run_files(run_dir, trained or config, stats, dataset_dir, manifest)
                    log.info("wrote %s of %s again", " and ".join(missing), run_dir)
                progress.log_done(run_dir)
                return run_dir
            if changed:
                (log.info if set(changed) == {"max_epochs"} else log.warning)(
                    "resuming %s with changed train settings: %s",
                    run_dir,
                    ", ".join(f"{key} {was} -> {now}" for key, (was, now) in changed.items()),
                )
        graphdef, params = init_params(config, n_bands, n_times, n_features)
        tx, _ = make_optimizer(tc, steps_per_epoch)
        state = init_state(params, tx)
        if latest is not None:
            templates = {"encoder": params["encoder"], "decoder": params["decoder"]}
            restored = store.restore(latest, {**templates, "opt_state": state.opt_state})
            params = {"encoder": restored["encoder"], "decoder": restored["decoder"]}
            # Damaged or swapped parameters are refused, not trained on (an audit: swapped, they
            # made a run that looked whole; damaged, a "diverged" that blamed the settings).
            runs.check_params(run_dir, record, params, latest)
            step = jnp.asarray(progress.step, jnp.int32)
            state = TrainState(step, params, restored["opt_state"])
        # The run's files once the checkpoint restored (a failed resume left config.json of
        # settings never trained with, which `score` then refused on an evaluated run).
        provenance.mark_evaluation_stale(run_dir, progress.epoch)
        runs.write_run_files(run_dir, config, stats, dataset_dir, manifest)
        if latest is None:
            metrics_path.unlink(missing_ok=True)
        else:
            runs.keep_metrics_until(metrics_path, latest)
            log.info("resuming %s after epoch %d", run_dir, progress.epoch)

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
            stats=stats,
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
    stats: FeatureStats,
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
            interrupts.check()  # a Ctrl-C whose exception JAX's garbage collection swallowed
            start = time.perf_counter()
            # Seeded per epoch, so a resumed run sees the same order as an uninterrupted one.
            order = epoch_rows(train_objects, np.random.default_rng([progress.seed, epoch]))
            n_train = order.size
            epoch_batches = batches.padded_batches(
                train_data, tc.batch_size, order, min_size=tc.batch_size
            )
            step_metrics = []
            for host_batch, _ in epoch_batches:
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
                meta=runs.checkpoint_meta(
                    progress,
                    config,
                    stats,
                    {"encoder": state.params["encoder"], "decoder": state.params["decoder"]},
                ),
                # Ranked so that Orbax keeps the epoch the run's record names as its best.
                val_loss=row["val_loss"] if progress.best_epoch == epoch else math.inf,
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


__all__ = ["TrainingDiverged", "train"]
