"""Training: the jit step, checkpoints, resume (also after kill -9), determinism, NaN guard.

Runs start from the shared prepared project (conftest), copied; tests that only read a trained
run use the shared `tiny_run`. Every run here uses the tiny preset, so most compile nothing new.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import copy_project, rewrite_shard, tiny_config
from flax import nnx

from plasticc_jax import batches, cli, config_io, provenance, runs
from plasticc_jax.checkpoints import CheckpointError, CheckpointStore
from plasticc_jax.dataset import load_shard, load_split, read_stats
from plasticc_jax.encoder import load_encoder
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import MODEL_FEATURE_NAMES
from plasticc_jax.runs import MIN_DELTA
from plasticc_jax.train import (
    TrainingDiverged,
    class_balance,
    class_labels,
    feature_stats,
    train,
)
from plasticc_jax.train_step import (
    create_model,
    init_params,
    init_state,
    make_optimizer,
    make_train_step,
)

pytestmark = pytest.mark.slow  # `make test-slow`: see the Makefile

N_TIMES, N_FEATURES = 16, len(MODEL_FEATURE_NAMES)  # the tiny preset's grid; the network's


def read_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def best_params(run_dir: Path) -> dict:
    from plasticc_jax.encoder import load_vae

    return load_vae(run_dir).params


def latest_params(run_dir: Path) -> dict:
    model = nnx.eval_shape(lambda: create_model(tiny_config(), 6, N_TIMES, N_FEATURES))
    template = nnx.to_pure_dict(nnx.state(model))
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        restored = store.restore(store.latest_epoch(), dict(template))
    return restored


def assert_trees_equal(a: dict, b: dict) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# The step and checkpoints.


def test_train_step_lowers_the_loss_on_a_small_batch(project):
    config = tiny_config(
        "train.learning_rate=3e-3", "train.warmup_epochs=0", "train.kl_warmup_epochs=0"
    )
    dataset = project / config.data.dataset_dir
    arrays = load_split(dataset, "train").take(slice(0, 32))
    inputs = batches.model_inputs(arrays, feature_stats(arrays), N_TIMES)
    known = config.data.known_classes
    inputs.update(class_labels(arrays.target, known, class_balance(arrays.target, known)))
    batch, _ = next(batches.padded_batches(inputs, 32, min_size=32))
    graphdef, params = init_params(config, 6, N_TIMES, N_FEATURES)
    tx, schedule = make_optimizer(config.train, steps_per_epoch=30)
    step = jax.jit(make_train_step(graphdef, tx, schedule, config.train, 30), donate_argnums=0)
    state = init_state(params, tx)
    rng = jax.random.key(0)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch, rng)
        losses.append(float(metrics["loss"]))
    assert set(metrics) >= {"loss", "recon_nll", "feature_nll", "kl", "grad_norm", "beta"}
    assert "class_ce" in metrics  # the tiny preset has the classification head
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < losses[0] - 0.3, losses


def test_class_labels_index_the_known_classes_and_balance_them():
    known = (90, 16, 42)
    target = np.array([16, 16, 16, 90, 42, 42, 6])
    balance = class_balance(target, known)
    # 6 objects of known classes: 90 (1 object) weighs 2, 16 (3) weighs 2/3, 42 (2) weighs 1.
    np.testing.assert_allclose(balance, [2.0, 2 / 3, 1.0])
    out = class_labels(target, known, balance)
    assert out["label"].tolist() == [1, 1, 1, 0, 2, 2, 0]
    np.testing.assert_allclose(out["label_weight"], [2 / 3] * 3 + [2.0, 1.0, 1.0, 0.0])


def test_checkpoint_round_trip_keeps_latest_and_best(tmp_path):
    config = tiny_config()
    _, params = init_params(config, 6, N_TIMES, N_FEATURES)
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


def test_a_missing_best_checkpoint_is_named_never_replaced(tmp_path):
    """Found by an audit: with the best epoch's step deleted, the latest was silently encoded
    with and reported as the best; a file in the place of checkpoints/ was a traceback."""
    config = tiny_config()
    _, params = init_params(config, 6, N_TIMES, N_FEATURES)
    opt_state = make_optimizer(config.train, 5)[0].init(params)

    def save(store: CheckpointStore, epoch: int, rank: float, best: tuple[int, float]) -> None:
        meta = {"epoch": epoch, "best_epoch": best[0], "best_val_loss": best[1]}
        store.save(epoch, **params, opt_state=opt_state, meta=meta, val_loss=rank)

    directory = tmp_path / "checkpoints"
    with CheckpointStore(directory) as store:
        save(store, 1, 1.0, (1, 1.0))
        save(store, 2, math.inf, (1, 1.0))  # not better: ranked last, as train does
        assert (store.epochs(), store.best_epoch()) == ([1, 2], 1)
    shutil.rmtree(directory / "1")
    store = CheckpointStore(directory, read_only=True)
    with store, pytest.raises(CheckpointError, match=r"epoch 1, the run's best .*there: 2\)"):
        store.best_epoch()
    # A run of an earlier release (every step ranked by its val loss) may keep a step better by
    # less than MIN_DELTA than the one its record names: that one is its best.
    with CheckpointStore(tmp_path / "earlier") as store:
        save(store, 1, 1.0, (1, 1.0))
        save(store, 2, 1.0 - MIN_DELTA / 2, (1, 1.0))
        assert (store.epochs(), store.best_epoch()) == ([2], 2)
    # A damaged latest epoch (not the best): train can go on from the best, and says so.
    damaged = tmp_path / "damaged"
    with CheckpointStore(damaged) as store:
        save(store, 1, 1.0, (1, 1.0))
        save(store, 2, math.inf, (1, 1.0))
    shutil.rmtree(damaged / "2" / "encoder")
    store = CheckpointStore(damaged)
    with (
        store,
        pytest.raises(CheckpointError, match=r"delete .*damaged/2 and train again: it goes"),
    ):
        store.restore(2, {"encoder": params["encoder"]})
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"file is not a folder"):
        CheckpointStore(tmp_path / "file")


# ---------------------------------------------------------------------------------------------
# The stage: run directory, resume, determinism, guards.


def test_train_writes_a_run_directory_and_resumes(tiny_run, tmp_path, caplog):
    config = tiny_run.config
    run_dir = tiny_run.run_dir
    assert run_dir == tiny_run.workdir / config.run_path
    assert config_io.read_config(run_dir / "config.json") == config
    # No class is left out: the run's statistics are its dataset's, of the network's features.
    run_stats, dataset_stats = read_stats(run_dir), read_stats(tiny_run.dataset_dir)
    assert run_stats.names == MODEL_FEATURE_NAMES == dataset_stats.names[: len(run_stats.names)]
    np.testing.assert_array_equal(
        run_stats.quantiles, dataset_stats.quantiles[: len(run_stats.names)]
    )
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "recon_nll", "kl", "grad_norm", "val_loss", "samples_per_s"} <= set(rows[0])

    # More epochs: continues after epoch 2 from the saved weights and optimizer state.
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / config.run_path
    first_two = latest_params(run_dir)
    longer = tiny_config("train.max_epochs=4")
    with caplog.at_level(logging.INFO, logger="plasticc_jax"):
        train(longer, workdir)
    assert "resuming" in caplog.text and "after epoch 2" in caplog.text
    assert "changed train settings: max_epochs 2 -> 4" in caplog.text  # (lost once)
    # The run was evaluated: its scores are of epoch 2's checkpoint now (an audit found `review`
    # going on with them): marked incomplete until evaluate runs again.
    with pytest.raises(UserError, match=r"train continued it after evaluate .*`plasticc-jax ev"):
        provenance.require_complete(run_dir)
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["step"] > rows[1]["step"]
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        assert store.latest_epoch() == 4
    assert not np.array_equal(
        latest_params(run_dir)["encoder"]["mu"]["kernel"], first_two["encoder"]["mu"]["kernel"]
    )

    # Finished: a rerun logs so and changes nothing.
    caplog.clear()
    before = (run_dir / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="plasticc_jax"):
        train(longer, workdir)
    assert "is finished" in caplog.text and "changed train settings" not in caplog.text
    assert (run_dir / "metrics.jsonl").read_text() == before

    # A run directory of another model is refused, not overwritten.
    wider = config_io.apply_overrides(longer, ["model.hidden=64"])
    with pytest.raises(UserError, match=r"different model config \(.*config.json: model.hidden"):
        train(wider, workdir)
    # Settings of how prepare reads, not of what the run trained on, are no other data config.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="plasticc_jax"):
        how_read = ["data.workers=1", "data.chunk_rows=1000"]
        train(config_io.apply_overrides(longer, how_read), workdir)
    assert "is finished" in caplog.text
    # So is a dataset prepared again (other objects, other statistics) under a run in progress.
    dataset = workdir / config.data.dataset_dir
    shard_path = sorted((dataset / "shards").glob("train-*.npz"))[0]
    shard = load_shard(shard_path)
    changed = dataclasses.replace(shard, features=shard.features + 1.0)
    rewrite_shard(shard_path, changed.to_dict())
    with pytest.raises(UserError, match="prepared again"):
        train(tiny_config("train.max_epochs=5"), workdir)


def test_same_seed_same_data_gives_the_same_weights_even_across_an_interruption(
    tiny_run, tmp_path, monkeypatch
):
    # The shared run was trained with this config through the command line.
    config = tiny_config()
    reference = latest_params(tiny_run.run_dir)
    again = train(config, copy_project(tiny_run.workdir, tmp_path / "a"))
    assert_trees_equal(latest_params(again), reference)
    # Not trivially equal: training moved the weights away from the (seeded) initialisation.
    _, initial = init_params(config, 6, N_TIMES, N_FEATURES)
    assert not np.array_equal(
        reference["encoder"]["mu"]["kernel"], initial["encoder"]["mu"]["kernel"]
    )

    # Ctrl-C right after epoch 1 is saved, then `train` again: the same weights as without.
    save = CheckpointStore.save

    def save_then_interrupt(self, epoch, **kwargs):
        save(self, epoch, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt

    workdir = copy_project(tiny_run.workdir, tmp_path / "b")
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointStore, "save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(config, workdir)
    run_dir = train(config, workdir)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]
    assert_trees_equal(latest_params(run_dir), reference)


def test_resume_after_kill_9_gives_the_same_weights(tiny_run, tmp_path):
    """kill -9 after epoch 2's metrics line and before its checkpoint, then `train` again: the
    line without a checkpoint is dropped, and the weights are those of the run never killed."""
    workdir = copy_project(tiny_run.workdir, tmp_path)
    run_dir = workdir / tiny_run.config.run_path
    # The child stops in epoch 2's checkpoint save, after its metrics line, and says so with a
    # marker file: the kill lands there however loaded the machine (a review: a 0.5 s pause
    # before the save was the test's whole margin).
    marker = tmp_path / "saving-epoch-2"
    code = (
        "import sys, time; from pathlib import Path; from plasticc_jax import config, config_io; "
        "from plasticc_jax.checkpoints import CheckpointStore as S; "
        "from plasticc_jax.train import train; save = S.save; marker = Path(sys.argv[2]); "
        "S.save = lambda self, epoch, **k: (marker.touch(), time.sleep(600)) if epoch == 2 "
        "else save(self, epoch, **k); "
        "train(config.resolve(config_io.load_preset('tiny')), Path(sys.argv[1]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(workdir), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.01)
        assert proc.poll() is None and marker.exists(), (
            proc.stderr.read().decode() if proc.stderr else ""
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        assert store.latest_epoch() == 1
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]

    train(tiny_run.config, workdir)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]
    assert_trees_equal(latest_params(run_dir), latest_params(tiny_run.run_dir))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_run, tmp_path):
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / tiny_run.config.run_path
    good = best_params(run_dir)
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        kept = store.epochs()

    # Finite but absurd data: the squared residual overflows float32, the loss is inf.
    for shard in (workdir / tiny_run.config.data.dataset_dir).glob("shards/train-*.npz"):
        arrays = load_shard(shard).to_dict()
        arrays["flux"] = np.where(arrays["mask"], np.float32(3e38), arrays["flux"])
        rewrite_shard(shard, arrays)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss.*epoch 2\) is kept"):
        train(tiny_config("train.max_epochs=4"), workdir)
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        assert store.epochs() == kept
    assert_trees_equal(best_params(run_dir), good)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]

    # Through the command line: one line, exit status 2.
    argv = ["train", "--config", "tiny", "--workdir", str(workdir), "--max-epochs", "4"]
    assert cli.main(argv) == 2


def test_a_resume_refuses_damaged_parameters_and_a_lost_best_checkpoint(tiny_run, tmp_path):
    """Found by an audit: resuming took the latest checkpoint's parameters unchecked (swapped in
    from another epoch they trained on silently; damaged, the loss diverged and the message
    blamed the settings), and went on after the best checkpoint was deleted, to end "finished"
    with a run that evaluate refuses. Both are refused before anything changes."""
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / tiny_run.config.run_path
    with CheckpointStore(run_dir / "checkpoints", read_only=True) as store:
        latest = store.latest_epoch()
    largest = max(
        (run_dir / "checkpoints" / str(latest)).glob("encoder/**/d/*"),
        key=lambda p: p.stat().st_size,
    )
    with largest.open("r+b") as file:  # a few bytes of the stored arrays overwritten
        file.seek(largest.stat().st_size // 2)
        file.write(b"\xff" * 8)
    metrics = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=rf"checkpoints/{latest}/encoder: the parameters are dam"):
        train(tiny_config("train.max_epochs=4"), workdir)
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    # The best checkpoint gone (another than the latest), as `CheckpointStore.best_epoch` says.
    with CheckpointStore(tmp_path / "lost") as store:
        meta = {"epoch": 2, "best_epoch": 1, "best_val_loss": 1.0}
        _, params = init_params(tiny_config(), 6, N_TIMES, N_FEATURES)
        opt_state = make_optimizer(tiny_config().train, 5)[0].init(params)
        store.save(1, **params, opt_state=opt_state, meta={**meta, "epoch": 1}, val_loss=1.0)
        store.save(2, **params, opt_state=opt_state, meta=meta, val_loss=math.inf)
    run_lost = workdir / "runs" / "lost"
    shutil.copytree(run_dir, run_lost, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.copytree(tmp_path / "lost", run_lost / "checkpoints")
    shutil.rmtree(run_lost / "checkpoints" / "1")
    with pytest.raises(CheckpointError, match=r"epoch 1, the run's best .*there: 2\)"):
        train(dataclasses.replace(tiny_config("train.max_epochs=4"), run_dir="runs/lost"), workdir)


def test_bad_inputs_are_user_errors(project, tmp_path):
    config = tiny_config()
    workdir = copy_project(project, tmp_path)
    shards = workdir / config.data.dataset_dir / "shards"
    arrays = load_shard(shards / "val-00000.npz").to_dict()
    arrays["features"][5, 2] = np.inf  # NaN means "undefined" and is allowed
    rewrite_shard(shards / "val-00000.npz", arrays)
    with pytest.raises(UserError, match=r"split 'val': non-finite features.*object_id"):
        train(config, workdir)

    arrays = load_shard(shards / "train-00000.npz").to_dict()
    arrays["is_anomaly"][3] = True
    rewrite_shard(shards / "train-00000.npz", arrays)
    with pytest.raises(UserError, match="anomaly-class objects"):
        train(config, workdir)

    with pytest.raises(UserError, match="no prepared dataset"):
        train(config, tmp_path / "elsewhere")
    with pytest.raises(UserError, match="not resolved"):
        train(config_io.load_preset("tiny"), workdir)


def test_bfloat16_compute_trains(project, tmp_path, monkeypatch):
    from plasticc_jax import train_step

    built = []  # the compute dtype of each model built (found by a review: not checked)
    compute_dtype = train_step.compute_dtype
    monkeypatch.setattr(train_step, "compute_dtype", lambda n: built.append(n) or compute_dtype(n))
    config = tiny_config("train.max_epochs=1", "train.compute_dtype=bfloat16")
    run_dir = train(config, copy_project(project, tmp_path))
    assert built and set(built) == {"bfloat16"}
    row = read_metrics(run_dir)[0]
    assert np.isfinite(row["val_loss"])
    params = best_params(run_dir)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_data_parallel_over_several_devices(project, tmp_path):
    """Two (virtual) CPU devices: the batch is sharded, the same code trains."""
    config = tiny_config()
    workdir = copy_project(project, tmp_path)
    code = (
        "import logging, sys; from pathlib import Path; import jax; "
        "from plasticc_jax import config, config_io; from plasticc_jax.train import train; "
        "logging.basicConfig(level=logging.INFO, force=True); assert len(jax.devices()) == 2; "
        "train(config.resolve(config_io.load_preset('tiny')), Path(sys.argv[1]))"
    )
    # JAX's own setting rather than an XLA flag: the XLA flags stay those of the session, so the
    # programs that do not depend on the device count come from the session's compile cache.
    done = subprocess.run(
        [sys.executable, "-c", code, str(workdir)],
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "2"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 device(s)" in done.stderr
    rows = read_metrics(workdir / config.run_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val_loss"] < rows[0]["val_loss"]
    # It loads on one device (found by a review: Orbax restored it onto the two-device mesh it
    # was saved from, "Topology mismatch", and called the run damaged).
    assert len(jax.devices()) == 1
    test = load_split(workdir / config.data.dataset_dir, "test")
    mu, _ = load_encoder(workdir / config.run_path)(test)
    assert mu.shape == (len(test.object_id), config.model.latent_dim) and np.isfinite(mu).all()


def test_damaged_run_files_are_named_or_written_again(tiny_run, tmp_path, caplog):
    """Found by an audit: a damaged metrics.jsonl or config.json was a traceback, a damaged
    stats.json was blamed on the dataset, and a finished run whose config.json or stats.json
    was deleted could be neither trained nor evaluated."""
    config = tiny_run.config
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / config.run_path
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text(f'{lines[0]}\n{{"epoch": 2, "lo\n')  # torn by a kill
    train(tiny_config("train.max_epochs=3"), workdir)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 3]
    metrics.write_text("not json\n" + metrics.read_text())
    with pytest.raises(UserError, match=r"metrics.jsonl, line 1: not a metrics record"):
        train(tiny_config("train.max_epochs=4"), workdir)
    metrics.write_text("\n".join(metrics.read_text().splitlines()[1:]) + "\n")
    (run_dir / "config.json").write_text('{"model": ')
    with pytest.raises(UserError, match=r"config.json is damaged"):
        train(tiny_config("train.max_epochs=3"), workdir)
    stats = (run_dir / "stats.json").read_text()
    for name in ("config.json", "stats.json"):
        (run_dir / "config.json").unlink(missing_ok=True)
        (run_dir / name).unlink(missing_ok=True)
        train(tiny_config("train.max_epochs=3"), workdir)  # finished: the files written again
        assert config_io.read_config(run_dir / "config.json") == tiny_config("train.max_epochs=3")
        assert (run_dir / "stats.json").read_text() == stats
    (run_dir / "stats.json").write_text(stats[:100])
    with pytest.raises(UserError, match=r"stats.json is damaged: remove it"):
        train(tiny_config("train.max_epochs=3"), workdir)
    (run_dir / "stats.json").write_text(stats)
    # The config comes back as the run was trained, not as given now (found by an audit: it
    # was written with the new learning rate and seed).
    (run_dir / "config.json").unlink()
    with pytest.raises(UserError, match=r"config.json is missing, but the run has checkpoints"):
        runs.read_config(run_dir)  # what evaluate, score and load_encoder say
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        train(tiny_config("train.max_epochs=3", "train.learning_rate=0.05"), workdir)
    assert config_io.read_config(run_dir / "config.json") == tiny_config("train.max_epochs=3")
    # A finished run is not trained with them, and says so (found by a review: dropped
    # without a word).
    assert "is finished: not trained with the train settings given now (learning_rate" in (
        caplog.text
    )
    # Another seed is another run: refused, continued or finished (found by a review: a
    # finished run of seed 0 was left as it was, exit 0, and `make ... evaluate` evaluated it).
    for epochs in (3, 4):
        with pytest.raises(UserError, match=r"train.seed 0, not 7: .* give train.seed 0 to"):
            train(tiny_config(f"train.max_epochs={epochs}", "train.seed=7"), workdir)
    train(tiny_config("train.max_epochs=4"), workdir)  # continued with its own
    assert config_io.read_config(run_dir / "config.json") == tiny_config("train.max_epochs=4")


def test_a_metrics_log_cut_short_is_said_so(tmp_path, caplog):
    """Found by an audit: a truncated metrics.jsonl lost the epochs in between without a word."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    with caplog.at_level(logging.WARNING, logger="plasticc_jax"):
        runs.keep_metrics_until(path, 5)
    assert "dropping a damaged last line" in caplog.text
    assert "holds 2 of the 5 epochs trained so far (cut short)" in caplog.text
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
