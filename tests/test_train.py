"""Training: the jit step, checkpoints, resume (also after kill -9), determinism, NaN guard.

The datasets here are written directly in the prepared-dataset format (plasticc_jax.dataset),
small enough that a whole training run takes about a second after compilation.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from plasticc_jax import cli
from plasticc_jax import config as config_lib
from plasticc_jax.checkpoints import CheckpointStore
from plasticc_jax.config import Config
from plasticc_jax.dataset import FeatureStats, load_shard
from plasticc_jax.errors import UserError
from plasticc_jax.train import (
    TrainingDiverged,
    create_model,
    fixed_batches,
    host_arrays,
    init_state,
    make_optimizer,
    make_train_step,
    train,
)

N_TIMES, N_FEATURES = 16, 8


def write_dataset(folder: Path, sizes: tuple[int, int, int] = (160, 48, 48), seed: int = 0) -> Path:
    """A prepared dataset of three light-curve shapes (one marked anomalous outside train)."""
    rng = np.random.default_rng(seed)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    shards, next_id, stats = {}, 0, None
    t = np.linspace(0.0, 1.0, N_TIMES)
    for split, count in zip(("train", "val", "test"), sizes, strict=True):
        kind = rng.integers(0, 2 if split == "train" else 3, count)
        width = np.array([0.05, 0.15, 0.4])[kind] * rng.uniform(0.8, 1.2, count)
        peak = rng.uniform(0.2, 0.6, count)
        colour = np.exp(rng.normal(0.0, 0.3, (count, 6)))
        shape = np.exp(-0.5 * ((t - peak[:, None]) / width[:, None]) ** 2)
        truth = shape[:, None, :] * colour[:, :, None]
        truth /= truth.max(axis=(1, 2), keepdims=True)
        err = rng.uniform(0.02, 0.2, truth.shape)
        mask = rng.random(truth.shape) < 0.35
        flux = np.where(mask, truth + err * rng.normal(size=truth.shape), 0.0)
        features = np.concatenate(
            [2.0 * kind[:, None] + rng.normal(0, 0.3, (count, 1)), rng.normal(5, 2, (count, 7))],
            axis=1,
        )
        arrays = {
            "object_id": np.arange(next_id, next_id + count, dtype=np.int64),
            "target": np.array([90, 42, 64])[kind].astype(np.int32),
            "is_anomaly": kind == 2,
            "flux": flux.astype(np.float32),
            "flux_err": np.where(mask, err, 0.0).astype(np.float32),
            "mask": mask,
            "features": features.astype(np.float32),
        }
        next_id += count
        name = f"shards/{split}-00000.npz"
        np.savez(folder / name, **arrays)
        shards[split] = [name]
        if split == "train":
            names = tuple(f"feature_{i}" for i in range(N_FEATURES))
            stats = FeatureStats(names, features.mean(0), features.std(0))
    assert stats is not None
    (folder / "stats.json").write_text(json.dumps(stats.to_json()))
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "shards": shards}))
    return folder


def tiny_config(**train_overrides: object) -> Config:
    config = config_lib.load_preset("tiny")
    overrides = [f"train.{key}={value}" for key, value in train_overrides.items()]
    return config_lib.resolve(config_lib.apply_overrides(config, overrides))


def make_workdir(root: Path, config: Config, **kwargs: object) -> Path:
    write_dataset(root / config.data.dataset_dir, **kwargs)
    return root


def read_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def best_params(run_dir: Path) -> dict:
    from plasticc_jax.encoder import load_vae

    return load_vae(run_dir).params


def latest_params(run_dir: Path, config: Config) -> dict:
    model = create_model(config, 6, N_TIMES, N_FEATURES)
    template = nnx.to_pure_dict(nnx.state(model))
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        restored = store.restore(store.latest_epoch(), dict(template))
    return restored


def assert_trees_equal(a: dict, b: dict) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# The step and the batches.


def test_fixed_batches_pad_the_last_batch_with_zero_weights():
    data = {"x": np.arange(10)}
    batches = list(fixed_batches(data, 4, np.arange(10)[::-1]))
    assert [len(b["x"]) for b in batches] == [4, 4, 4]
    assert batches[-1]["weight"].tolist() == [1, 1, 0, 0]
    assert batches[0]["x"].tolist() == [9, 8, 7, 6]
    seen = np.concatenate([b["x"][b["weight"] > 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))


def test_train_step_lowers_the_loss_on_a_small_batch(tmp_path):
    config = tiny_config(learning_rate=3e-3, warmup_epochs=0.0, kl_warmup_epochs=0.0)
    dataset = write_dataset(tmp_path / "data")
    arrays = load_shard(dataset / "shards/train-00000.npz").take(slice(0, 32))
    stats = FeatureStats.from_json(json.loads((dataset / "stats.json").read_text()))
    batch = next(fixed_batches(host_arrays(arrays, stats), 32, np.arange(32)))
    graphdef, params = nnx.split(create_model(config, 6, N_TIMES, N_FEATURES))
    tx, schedule = make_optimizer(config.train, steps_per_epoch=30)
    step = jax.jit(make_train_step(graphdef, tx, schedule, config.train, 30), donate_argnums=0)
    state = init_state(nnx.to_pure_dict(params), tx)
    rng = jax.random.key(0)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch, rng)
        losses.append(float(metrics["loss"]))
    assert set(metrics) >= {"loss", "recon_nll", "feature_nll", "kl", "grad_norm", "beta"}
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < losses[0] - 0.3, losses


# ---------------------------------------------------------------------------------------------
# Checkpoints.


def test_checkpoint_round_trip_keeps_latest_and_best(tmp_path):
    config = tiny_config()
    params = nnx.to_pure_dict(nnx.state(create_model(config, 6, N_TIMES, N_FEATURES)))
    tx, _ = make_optimizer(config.train, 5)
    opt_state = tx.init(params)
    bumped = jax.tree.map(lambda p: p + 1.0, params)
    with CheckpointStore(tmp_path / "checkpoints") as store:
        for epoch, val_loss, tree in [(1, 2.0, params), (2, 1.0, bumped), (3, 3.0, params)]:
            store.save(
                epoch,
                encoder=tree["encoder"],
                decoder=tree["decoder"],
                opt_state=opt_state,
                meta={"epoch": epoch},
                val_loss=val_loss,
            )
        assert store.epochs() == [2, 3]
        assert (store.latest_epoch(), store.best_epoch()) == (3, 2)
    with CheckpointStore(tmp_path / "checkpoints", read_only=True) as store:
        best = store.restore(2, {"encoder": params["encoder"], "meta": None})
        latest = store.restore(3, {"decoder": params["decoder"], "opt_state": opt_state})
    assert best["meta"] == {"epoch": 2}
    assert_trees_equal(best["encoder"], bumped["encoder"])
    assert_trees_equal(latest["decoder"], params["decoder"])
    assert_trees_equal(latest["opt_state"], opt_state)


# ---------------------------------------------------------------------------------------------
# The stage: run directory, resume, determinism, guards.


def test_train_writes_a_run_directory_and_resumes(tmp_path, caplog):
    config = tiny_config(max_epochs=2)
    workdir = make_workdir(tmp_path, config)
    run_dir = train(config, workdir)
    assert run_dir == tmp_path / config.run_path
    assert config_lib.read_config(run_dir / "config.json") == config
    assert json.loads((run_dir / "stats.json").read_text())["names"][0] == "feature_0"
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "recon_nll", "kl", "grad_norm", "val_loss", "samples_per_s"} <= set(rows[0])
    first_two = latest_params(run_dir, config)

    # More epochs: continues after epoch 2 from the saved weights and optimizer state.
    longer = tiny_config(max_epochs=4)
    with caplog.at_level(logging.INFO, logger="plasticc_jax"):
        train(longer, workdir)
    assert "resuming" in caplog.text and "after epoch 2" in caplog.text
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["step"] > rows[1]["step"]
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        assert store.latest_epoch() == 4
    assert not np.array_equal(
        latest_params(run_dir, config)["encoder"]["mu"]["kernel"],
        first_two["encoder"]["mu"]["kernel"],
    )

    # Finished: a rerun logs so and changes nothing.
    caplog.clear()
    before = (run_dir / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="plasticc_jax"):
        train(longer, workdir)
    assert "is finished" in caplog.text
    assert (run_dir / "metrics.jsonl").read_text() == before

    # A run directory of another model is refused, not overwritten.
    wider = config_lib.apply_overrides(longer, ["model.hidden=64"])
    with pytest.raises(UserError, match="different model config"):
        train(wider, workdir)
    # So is a dataset prepared again (other normalisation) under a run in progress.
    stats_path = workdir / config.data.dataset_dir / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["mean"][0] += 1.0
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(UserError, match="prepared again"):
        train(tiny_config(max_epochs=5), workdir)


def test_same_seed_same_data_gives_the_same_weights_even_across_an_interruption(
    tmp_path, monkeypatch
):
    config = tiny_config(max_epochs=3)
    runs = [latest_params(train(config, make_workdir(tmp_path / n, config)), config) for n in "ab"]
    assert_trees_equal(runs[0], runs[1])
    # Not trivially equal: training moved the weights away from the (seeded) initialisation.
    initial = nnx.to_pure_dict(nnx.state(create_model(config, 6, N_TIMES, N_FEATURES)))
    assert not np.array_equal(
        runs[0]["encoder"]["mu"]["kernel"], initial["encoder"]["mu"]["kernel"]
    )

    # Ctrl-C right after epoch 1 is saved, then `train` again: the same weights as without.
    save = CheckpointStore.save

    def save_then_interrupt(self, epoch, **kwargs):
        save(self, epoch, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt

    workdir = make_workdir(tmp_path / "c", config)
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointStore, "save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(config, workdir)
    run_dir = train(config, workdir)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert_trees_equal(latest_params(run_dir, config), runs[0])


def test_resume_after_kill_9(tmp_path):
    config = tiny_config(max_epochs=10_000, patience=10_000)
    workdir = make_workdir(tmp_path, config)
    run_dir = workdir / config.run_path
    code = (
        "import sys; from pathlib import Path; from plasticc_jax import config as c; "
        "from plasticc_jax.train import train; "
        "cfg = c.resolve(c.apply_overrides(c.load_preset('tiny'), sys.argv[2:])); "
        "train(cfg, Path(sys.argv[1]))"
    )
    argv = [sys.executable, "-c", code, str(workdir), "train.max_epochs=10000"]
    argv.append("train.patience=10000")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "metrics.jsonl").is_file() and len(read_metrics(run_dir)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        killed_at = store.latest_epoch()
    assert killed_at is not None and killed_at >= 1

    resumed = tiny_config(max_epochs=killed_at + 2, patience=10_000)
    train(resumed, workdir)
    epochs = [r["epoch"] for r in read_metrics(run_dir)]
    assert epochs == list(range(1, killed_at + 3))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(max_epochs=1)
    workdir = make_workdir(tmp_path, config)
    run_dir = train(config, workdir)
    good = best_params(run_dir)

    # Finite but absurd data: the squared residual overflows float32, the loss is inf.
    shard = workdir / config.data.dataset_dir / "shards/train-00000.npz"
    arrays = load_shard(shard).to_dict()
    arrays["flux"] = np.where(arrays["mask"], np.float32(3e38), arrays["flux"])
    np.savez(shard, **arrays)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss.*epoch 1\) is kept"):
        train(tiny_config(max_epochs=3), workdir)
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        assert store.epochs() == [1]
    assert_trees_equal(best_params(run_dir), good)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1]

    # Through the command line: one line, exit status 2.
    argv = ["train", "--config", "tiny", "--workdir", str(workdir), "--max-epochs", "3"]
    assert cli.main(argv) == 2


def test_bad_inputs_are_user_errors(tmp_path):
    config = tiny_config(max_epochs=1)
    workdir = make_workdir(tmp_path, config)
    shard = workdir / config.data.dataset_dir / "shards/val-00000.npz"
    arrays = load_shard(shard).to_dict()
    arrays["features"][5, 2] = np.nan
    np.savez(shard, **arrays)
    with pytest.raises(UserError, match=r"split 'val': non-finite features.*object_id"):
        train(config, workdir)

    train_shard = workdir / config.data.dataset_dir / "shards/train-00000.npz"
    arrays = load_shard(train_shard).to_dict()
    arrays["is_anomaly"][3] = True
    np.savez(train_shard, **arrays)
    with pytest.raises(UserError, match="anomaly-class objects"):
        train(config, workdir)

    with pytest.raises(UserError, match="no prepared dataset"):
        train(config, tmp_path / "elsewhere")


def test_bfloat16_compute_trains(tmp_path):
    config = tiny_config(max_epochs=1, compute_dtype="bfloat16")
    run_dir = train(config, make_workdir(tmp_path, config))
    row = read_metrics(run_dir)[0]
    assert np.isfinite(row["val_loss"])
    params = best_params(run_dir)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_data_parallel_over_several_devices(tmp_path):
    """Two (virtual) CPU devices: the batch is sharded, the same code trains."""
    config = tiny_config(max_epochs=2)
    workdir = make_workdir(tmp_path, config)
    code = (
        "import logging, sys; from pathlib import Path; import jax; "
        "from plasticc_jax import config as c; from plasticc_jax.train import train; "
        "logging.basicConfig(level=logging.INFO, force=True); assert len(jax.devices()) == 2; "
        "train(c.resolve(c.load_preset('tiny')), Path(sys.argv[1]))"
    )
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 device(s)" in done.stderr
    rows = read_metrics(workdir / config.run_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val_loss"] < rows[0]["val_loss"]
