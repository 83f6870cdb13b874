"""The VAE's training step: the model and its parameters, the optimizer, the jit-compiled steps.

The step is a plain `jax.jit` function over a `TrainState` (the model split once with
`nnx.split`; parameters as a pure dict), with the state donated. With several local devices the
batch is sharded over a one-axis mesh and the state replicated; with one device the same code
runs on a mesh of one (`compiled_steps`). `validation_loss` is the early-stopping criterion; the
epoch loop that drives them all is `plasticc_jax.train`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from plasticc_jax import batches, losses
from plasticc_jax.config import Config, ModelConfig, TrainConfig
from plasticc_jax.models import Vae, compute_dtype

Params = dict[str, Any]
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
StepFn = Callable[["TrainState", Batch, jax.Array], tuple["TrainState", Metrics]]
EvalFn = Callable[[Params, Batch], Metrics]

# What validation needs from the forward pass (the rest is left out of the compiled step).
VAL_TERMS: tuple[str, ...] = ("recon_nll", "feature_nll", "kl", "n_values")


class TrainState(NamedTuple):
    """Everything the jit-compiled step updates. A pytree; donated to each step."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Params  # nnx.to_pure_dict of the Vae's parameters
    opt_state: optax.OptState


def n_classes(config: Config) -> int:
    """Outputs of the classification head: one per known class (0 without a head)."""
    return len(config.head_classes)


def create_model(config: Config, n_bands: int, n_times: int, n_features: int) -> Vae:
    """The VAE, initialised from `config.train.seed` (deterministic)."""
    shape = (n_bands, n_times, n_features, n_classes(config))
    return _vae(config.model, config.train.seed, config.train.compute_dtype, *shape)


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
    min_size = batches.MIN_PADDED_BATCH * n_devices  # every padded size splits over devices
    for host_batch, _ in batches.padded_batches(data, batch_size, min_size=min_size):
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


__all__ = [
    "TrainState",
    "create_model",
    "init_params",
    "init_state",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "n_classes",
    "validation_loss",
]
