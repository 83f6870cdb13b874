"""Nothing lost, nothing silently wrong: outputs never replace inputs, every output is bound to
what it was made from, one writer per folder at a time, and a user mistake or a damaged run
directory is one line and a non-zero exit, never a traceback.

Most checks run in this process (`cli.main`); only the lock tests start real processes (a lock
held by another process, kill -9, two prepares and two trains started together).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_project, hold_lock, tiny_config

from plasticc_jax import cli, io_utils, provenance, runs
from plasticc_jax.dataset import SPLITS, load_split, read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import FolderBusy, folder_lock, refuse_overwrite
from plasticc_jax.plasticc import CLASS_NAMES, TRAINING_CLASSES
from plasticc_jax.synthetic import write_synthetic


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The one line a failed command printed (and nothing that looks like a traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"plasticc-jax {command}: error: ")
    return lines[0]


def score_argv(run_dir: Path, raw: Path, output: Path) -> list[str]:
    return [
        *("score", "--run", str(run_dir)),
        *("--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")),
        *("--metadata", str(raw / "plasticc_train_metadata.csv.gz")),
        *("--output", str(output)),
    ]


# ---------------------------------------------------------------------------------------------
# Outputs never replace inputs.


def test_refuse_overwrite_sees_through_links(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lightcurves = raw / "lc.csv"
    lightcurves.write_text("object_id\n")
    (tmp_path / "link.csv").symlink_to(lightcurves)
    os.link(lightcurves, tmp_path / "hard.csv")
    (tmp_path / "rawlink").symlink_to(raw)
    same = [
        lightcurves,
        raw / ".." / "raw" / "lc.csv",
        tmp_path / "link.csv",
        tmp_path / "hard.csv",
        tmp_path / "rawlink" / "lc.csv",
    ]
    for output in same:
        with pytest.raises(UserError, match=r"--output .* would overwrite .*lc\.csv"):
            refuse_overwrite([output], [lightcurves], what="--output")
    with pytest.raises(UserError, match="is a folder"):
        refuse_overwrite([raw], [lightcurves], what="--output")
    models = tmp_path / "run" / "models"
    with pytest.raises(UserError, match=r"lies in .*models"):
        refuse_overwrite([models / "x.parquet"], [], [models], what="--output")
    refuse_overwrite([tmp_path / "scores.parquet"], [lightcurves], [models], what="--output")


def test_score_never_writes_over_its_inputs(tmp_path, capsys):
    meta, lcs = write_synthetic(tmp_path / "raw", 3, fmt="kaggle")
    run_dir = tmp_path / "run"
    before = lcs.read_bytes(), meta.read_bytes()
    for output in (lcs, meta, run_dir / "scores.parquet", run_dir / "models" / "x.csv"):
        argv = ["score", "--run", str(run_dir), "--lightcurves", str(lcs)]
        assert cli.main([*argv, "--metadata", str(meta), "--output", str(output)]) == 2
        assert "choose another output path" in one_error_line(capsys, "score")
    assert (lcs.read_bytes(), meta.read_bytes()) == before
    assert not run_dir.exists()


def test_a_run_directory_may_not_overlap_the_data(tmp_path):
    data = [tmp_path / "data" / "processed" / "rare", tmp_path / "data" / "raw"]
    for run_dir in (data[0], data[1] / "run", tmp_path / "data", tmp_path):
        with pytest.raises(UserError, match="overlaps the data folder"):
            runs.check_run_dir(run_dir, data)
    runs.check_run_dir(tmp_path / "runs" / "tiny-rare", data)
    # A file given as the run directory (or under one): said so, not "delete it" (a review).
    (tmp_path / "notes.txt").write_text("mine")
    for run_dir in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "run"):
        with pytest.raises(UserError, match=r"notes.txt is a file, where a folder is needed"):
            runs.check_run_dir(run_dir, data)
    # Nor inside another run, or holding one (a review: a run trained into another's models/
    # replaced its detector's record), but for the run's own validation folds.
    run = tmp_path / "runs" / "tiny-rare"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    runs.check_run_dir(run, data)
    runs.check_run_dir(run / "validation" / "fold-42", data)
    with pytest.raises(UserError, match=r"models lies inside the run .*tiny-rare: their files"):
        runs.check_run_dir(run / "models", data)
    with pytest.raises(UserError, match=r"runs holds the run .*tiny-rare: their files would mix"):
        runs.check_run_dir(tmp_path / "runs", data)


# ---------------------------------------------------------------------------------------------
# Locks.


def test_lock_names_its_holder_and_dies_with_it(tmp_path):
    folder = tmp_path / "data" / "processed" / "rare"
    writer = hold_lock(folder, "prepare", "exclusive")
    try:
        for shared in (False, True):
            with pytest.raises(FolderBusy) as error, folder_lock(folder, "train", shared=shared):
                pass
            message = str(error.value)
            assert f"{folder} is in use by prepare (writing; pid {writer.pid} on " in message
            assert "started 20" in message and "command: -c " in message
            assert "wait for it to finish" in message and "\n" not in message
    finally:
        writer.send_signal(signal.SIGKILL)  # the OS releases the lock of a killed holder
        writer.wait()
    with folder_lock(folder, "prepare"), folder_lock(folder, "prepare", shared=True):
        pass  # free again; and re-entrant within one process

    reader = hold_lock(folder, "evaluate", "shared")
    try:
        with folder_lock(folder, "train", shared=True):
            pass  # readers share
        busy = pytest.raises(FolderBusy, match=r"in use by evaluate \(reading; pid")
        with busy, folder_lock(folder, "prepare"):
            pass
    finally:
        reader.kill()
        reader.wait()


def test_lock_file_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    """A folder in one this user may not write: the writer's lock file (beside it) cannot be
    created; a one-line `UserError` naming the folder to make writable, not a traceback. Root
    may write anywhere, so the file system's refusal is simulated."""

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    folder = tmp_path / "runs" / "tiny-rare"
    monkeypatch.setattr(io_utils, "open", denied, raising=False)
    message = (
        r"lock file .*\.tiny-rare\.lock cannot be created \(Permission denied\): this user "
        rf"must be able to write {tmp_path / 'runs'} \(in a container"
    )
    with pytest.raises(UserError, match=message), folder_lock(folder, "train"):
        pass
    with folder_lock(folder, "evaluate", shared=True):
        pass  # a reader reads without a lock: nothing can be writing there
    # Said before the work, and nothing written: the user's rights are asked of the system.
    monkeypatch.setattr(io_utils.os, "access", lambda path, mode: Path(path) != folder.parent)
    inside = r"--output .*tiny-rare: its lock file .* \(a new folder inside "
    with pytest.raises(UserError, match=inside):
        io_utils.check_lockable(folder)
    assert not io_utils.lock_path(folder).exists()

    def full(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(io_utils, "open", full, raising=False)
    with pytest.raises(OSError, match="No space left"), folder_lock(folder, "train"):
        pass  # not the user's folder choice: the error itself, which the command line names


CHILD = """
import sys, time
from pathlib import Path
from plasticc_jax import cli
go, argv = Path(sys.argv[1]), sys.argv[2:]
if argv[0] == "prepare":
    from plasticc_jax import prepare as stage
    name = "_build"
else:
    stage, name = cli, "_run_stage"
original = getattr(stage, name)

def slowly(*args, **kwargs):  # hold the lock a moment longer: the two surely overlap
    time.sleep(3.0)
    return original(*args, **kwargs)

setattr(stage, name, slowly)
print("ready", flush=True)  # imported: the parent says go when all four are
while not go.exists():
    time.sleep(0.002)
sys.exit(cli.main(argv))
"""


@pytest.mark.slow
def test_two_prepares_and_two_trains_started_together(project, tmp_path):
    """One winner and one clear refusal each; the winner's output is whole."""
    prepared = tmp_path / "p"
    write_synthetic(prepared / "data" / "raw", 60, fmt="unblinded", seed=4)
    trained = copy_project(project, tmp_path / "t")
    go = tmp_path / "go"
    commands = {
        ("prepare", 1): ["prepare", "--workdir", str(prepared), "--set", "data.seed=1"],
        ("prepare", 2): ["prepare", "--workdir", str(prepared), "--set", "data.seed=2"],
        ("train", 1): ["train", "--workdir", str(trained)],
        ("train", 2): ["train", "--workdir", str(trained)],
    }
    children = {
        key: subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go), *argv, "--config", "tiny"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, argv in commands.items()
    }
    # Go once all four have imported (found by a review: under load the prepares' imports
    # ended up to 2.3 s apart, most of the 3 s the winner holds the lock).
    results = {}
    try:
        deadline = time.monotonic() + 120
        for child in children.values():
            ready, _, _ = select.select([child.stdout], [], [], deadline - time.monotonic())
            assert ready and child.stdout.readline() == "ready\n", "a child did not start"
        go.touch()
        for key, child in children.items():
            _, err = child.communicate(timeout=300)
            results[key] = (child.returncode, err)
    finally:  # none left polling for `go` when the test fails
        for child in children.values():
            child.kill()
            child.communicate()
    for stage in ("prepare", "train"):
        (rc1, err1), (rc2, err2) = results[(stage, 1)], results[(stage, 2)]
        assert sorted([rc1, rc2]) == [0, 2], (err1, err2)
        winner, loser = ((stage, 1), (stage, 2)) if rc1 == 0 else ((stage, 2), (stage, 1))
        err = results[loser][1]
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and "Traceback" not in err, err
        pid = children[winner].pid
        assert f"is in use by {stage} (writing; pid {pid} on " in errors[0], errors[0]

    out = prepared / "data" / "processed" / "rare"
    manifest = read_manifest(out)
    seed = 1 if results[("prepare", 1)][0] == 0 else 2
    assert manifest["config"]["data"]["seed"] == seed
    ids = [set(load_split(out, s).object_id.tolist()) for s in SPLITS]
    assert sum(map(len, ids)) == len(set.union(*ids))  # no object in two splits
    assert sum(map(len, ids)) + manifest["rejected"]["total"] == manifest["input_objects"] == 60
    run_dir = trained / tiny_config().run_path
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").open()]
    assert epochs == [1, 2]


# ---------------------------------------------------------------------------------------------
# Config validation: every invalid value, one line each.


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--batch-size", "0"], "train.batch_size=0: must be a positive integer"),
        (["--batch-size", "-8"], "train.batch_size=-8: must be a positive integer"),
        (["--latent-dim", "0"], "model.latent_dim=0: must be a positive integer"),
        (["--max-epochs", "0"], "train.max_epochs=0: must be a positive integer"),
        (["--set", "model.hidden=0"], "model.hidden='0': widths must be positive"),
        (["--set", "model.hidden="], "model.hidden='': give at least one layer width"),
        (["--set", "data.n_time_bins=0"], "data.n_time_bins=0: must be a positive integer"),
        (["--set", "train.compute_dtype=float16"], "choose one of float32, bfloat16"),
        (["--set", "eval.n_estimators=0"], "eval.n_estimators=0: must be a positive integer"),
        (["--set", "eval.max_samples=0"], "eval.max_samples=0: must be a positive integer"),
        (["--set", "eval.target_fpr=-0.01"], "eval.target_fpr=-0.01: must be in (0, 1)"),
        (["--set", "eval.realistic_anomaly_rate=2"], "realistic_anomaly_rate=2.0: must be in"),
        (["--set", "train.learning_rate=-1e-3"], "train.learning_rate=-0.001: must be positive"),
        (["--set", "data.val_fraction=-0.1"], "data.val_fraction=-0.1: must be a fraction in"),
        (["--set", "data.test_fraction=0.9"], "val_fraction + data.test_fraction=1.05: must be"),
        (["--set", "data.window_before=-100"], "its start must come before its end"),
        (["--set", "data.seed=-1"], "data.seed=-1: must be an integer from 0 to 4294967295"),
        # Found by an audit: a traceback deep in `train` or `evaluate` (a run left incomplete).
        (["--set", "eval.seed=4294967296"], "eval.seed=4294967296: must be an integer from 0"),
        (["--set", "train.seed=9223372036854775808"], "train.seed=9223372036854775808: must"),
        (["--batch-size", "99999999999"], "train.batch_size=99999999999: must be at most"),
        (["--set", "data.inputs=tests"], "data.inputs='tests': choose one of train, test, all"),
        (["--set", "data.source="], "data.source='': choose auto, zenodo, snmachine or a"),
        # Found by an audit: each of these ran and gave a crash or a silently empty result later.
        (["--set", "data.stages=10,2,10"], "data.stages='10.0,2.0,10.0': each one once"),
        (["--set", "train.partial_curves=true"], "train.partial_curves=True: needs data.stages"),
        (["--set", "data.test_fraction=0"], "data.test_fraction=0.0: must be a fraction in (0"),
        (["--set", "eval.n_draws=1"], "eval.n_draws=1: must be at least 2"),
        (["--set", "data.known_classes=90,90,42"], "data.known_classes='90,90,42': each one"),
        (["--set", "data.anomaly_classes=95,6,95"], "data.anomaly_classes='95,6,95': each one"),
        (
            ["--set", "eval.fusion=latent_knn:1,latent_knn:3"],
            "eval.fusion='latent_knn:1,latent_knn:3': each component once",  # as given
        ),
        (
            ["--set", "model.classifier_head=false", "--set", "eval.fusion=head_maxprob:1"],
            "head_maxprob needs model.classifier_head=true",
        ),
        (["--set", "data.known_classes=6,90"], "classes [6] are both known (data.known_classes)"),
        (
            ["--set", "data.anomaly_classes=" + ",".join(map(str, TRAINING_CLASSES))],
            "no known class is left: data.anomaly_classes",
        ),
        (["--set", "data.anomaly_classes=999"], "999 not a PLAsTiCC class (classes: 6, 15,"),
        (["--set", "eval.knn_neighbours=0"], "eval.knn_neighbours=0: must be a positive integer"),
        (["--set", "eval.cross_fit_folds=1"], "eval.cross_fit_folds=1: must be 0 (in-sample) or"),
        (["--set", "data.processed_dir="], "data.processed_dir='': must name a folder"),
        (["--set", "data.n_time_bins=100000000"], "data.n_time_bins=100000000: at most 1,024"),
        (["--set", "eval.cross_fit_folds=100000"], "eval.cross_fit_folds=100000: must be 0"),
        (["--set", "eval.fusion=latent_knn:-1"], "eval.fusion='latent_knn:-1': must be component"),
        (["--set", "eval.fusion=nothing:1"], "eval.fusion='nothing:1': must be component:weight"),
        (["--set", "eval.components=latent_knn,nothing"], "nothing not a component (choose"),
        # A review: no interval from one resample; 10^8 failed for memory after every fit;
        # weights whose sum overflows made every weight 0.
        (["--set", "eval.n_bootstrap=1"], "eval.n_bootstrap=1: must be 0 (no intervals) or 2-"),
        (["--set", "eval.n_bootstrap=100000000"], "eval.n_bootstrap=100000000: must be 0"),
        (
            ["--set", "eval.fusion=latent_knn:1e308,recon_chi2:1e308"],
            "eval.fusion='latent_knn:1e308,recon_chi2:1e308': must be component",
        ),
    ],
)
def test_invalid_config_value_is_one_line(argv, line, capsys):
    assert cli.main(["train", "--config", "tiny", *argv]) == 2
    assert line in one_error_line(capsys, "train")


def test_every_invalid_value_gets_its_line(capsys):
    argv = ["--max-epochs", "0", "--batch-size", "0", "--set", "eval.n_estimators=0"]
    assert cli.main(["prepare", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[2].split("=")[0] for line in lines] == [
        "train.batch_size",
        "train.max_epochs",
        "eval.n_estimators",
    ]


@pytest.mark.parametrize(
    "field,value,expected",
    [
        (("model", "classifier_head"), "false", "model.classifier_head='false': expected true"),
        (("model", "hidden"), "512,256", "model.hidden='512,256': expected a JSON list"),
        (("model", "hidden"), [512, "x"], "model.hidden[1]='x': expected a whole number"),
        (("model", "latent_dim"), 2.5, "model.latent_dim=2.5: expected a whole number"),
        (("train",), [1], "train: expected a section"),
    ],
)
def test_a_hand_edited_config_value_of_the_wrong_type_is_refused(
    tiny_run, tmp_path, field, value, expected
):
    raw = json.loads((tiny_run.run_dir / "config.json").read_text())
    section = raw
    for key in field[:-1]:
        section = section[key]
    section[field[-1]] = value
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"config\.json: ") as error:
        runs.read_config(tmp_path)
    assert expected in str(error.value)


def test_a_huge_whole_number_in_config_json_is_no_traceback(tiny_run, tmp_path):
    raw = json.loads((tiny_run.run_dir / "config.json").read_text())
    raw["model"]["latent_dim"] = 10**400  # float() of it overflows
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert runs.read_config(tmp_path).model.latent_dim == 10**400  # read; not an OverflowError


def test_a_split_that_does_not_exist_is_named(tiny_run):
    for split in ("tests", "TEST"):
        with pytest.raises(UserError, match=f"no split '{split}': .* train, val, test"):
            load_split(tiny_run.dataset_dir, split)


# ---------------------------------------------------------------------------------------------
# Provenance: every consumer checks what it is given.


def test_metrics_and_detector_name_the_checkpoint_and_dataset(tiny_run):
    record = json.loads((tiny_run.run_dir / "models" / provenance.RECORD).read_text())
    assert tiny_run.metrics["checkpoint"] == record["checkpoint"]
    assert record["checkpoint"]["epoch"] == tiny_run.metrics["checkpoint_epoch"]
    manifest = read_manifest(tiny_run.dataset_dir)
    assert record["dataset"]["fingerprint"] == manifest["fingerprint"]
    assert provenance.trained_on(tiny_run.run_dir)["fingerprint"] == manifest["fingerprint"]
    assert record["threshold"] == tiny_run.detector_params["threshold"]
    estimators = {f"detector-{n}.skops" for n in tiny_run.detector_params["estimators"]}
    assert "detector-classifier.skops" in estimators
    assert set(record["files"]) == {"detector.json", "detector.npz", *estimators}
    assert not (tiny_run.run_dir / provenance.INCOMPLETE).exists()


def test_config_knows_every_component():
    from plasticc_jax import config
    from plasticc_jax.components import COMPONENTS
    from plasticc_jax.report import METHOD_LABELS

    assert set(config.COMPONENT_NAMES) == set(COMPONENTS)
    # Found by a review: the report's tables and legends named `gp_classifier` by its code name.
    assert set(COMPONENTS) <= set(METHOD_LABELS)


def test_the_report_says_how_train_rows_were_scored():
    """Found by a review: with `eval.cross_fit_folds=0` (in-sample) report.md said "scored out of
    fold (0 folds)"."""
    from plasticc_jax.report import _train_rows

    assert "out of fold (5 folds" in _train_rows(5)
    assert "in-sample" in _train_rows(0)


def test_a_run_may_leave_known_classes_out_of_its_dataset(tiny_run):
    from plasticc_jax.validate import fold_config

    manifest = read_manifest(tiny_run.dataset_dir)
    config = tiny_run.config
    held_out = config.data.known_classes[0]
    fold = fold_config(config, held_out, tiny_run.run_dir / "validation" / "fold")
    provenance.check_dataset_config(tiny_run.dataset_dir, manifest, fold)  # no error
    added = dataclasses.replace(
        config.data, known_classes=(*config.data.known_classes, config.data.anomaly_classes[0])
    )
    with pytest.raises(UserError, match=r"data\.known_classes: \["):
        provenance.check_dataset_config(
            tiny_run.dataset_dir, manifest, dataclasses.replace(config, data=added)
        )


def test_a_dataset_prepared_again_is_refused(tiny_run, tmp_path):
    from plasticc_jax.evaluate import evaluate
    from plasticc_jax.prepare import prepare
    from plasticc_jax.train import train

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / tiny_run.config.run_path
    prepare(tiny_config("data.seed=1"), workdir)  # same folder, another split
    with pytest.raises(UserError) as error:
        evaluate(tiny_config(), workdir)
    assert "is not the dataset" in str(error.value)
    assert "data.seed: 1 in the dataset, 0 in the run's config" in str(error.value)
    # A refused evaluate leaves the run as it was.
    assert not (run_dir / provenance.INCOMPLETE).exists()
    assert (run_dir / "models" / provenance.RECORD).is_file()
    with pytest.raises(UserError, match=r"prepared with other data settings \(data\.seed: 1"):
        train(tiny_config(), workdir)


def test_score_refuses_a_detector_fitted_on_another_checkpoint(tiny_run, tmp_path, capsys):
    run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / "run"))
    path = run_dir / "models" / provenance.RECORD
    record = json.loads(path.read_text())
    record["checkpoint"] = {"epoch": 1, "sha256": "0" * 64}  # as if trained on since
    path.write_text(json.dumps(record))
    raw = tiny_run.workdir / "data" / "raw"
    assert cli.main(score_argv(run_dir, raw, tmp_path / "out.parquet")) == 2
    line = one_error_line(capsys, "score")
    best = tiny_run.metrics["checkpoint_epoch"]
    assert "was fitted on the checkpoint of epoch 1" in line and f"is now epoch {best}" in line
    assert "run `plasticc-jax evaluate`" in line
    assert not (tmp_path / "out.parquet").exists()
    # The same epoch with other parameters: the checkpoint changed on disk (damaged, replaced).
    record["checkpoint"] = {"epoch": best, "sha256": "0" * 64}
    path.write_text(json.dumps(record))
    assert cli.main(score_argv(run_dir, raw, tmp_path / "out.parquet")) == 2
    line = one_error_line(capsys, "score")
    assert f"the parameters of the checkpoint of epoch {best} changed since evaluate" in line


def test_an_interrupted_evaluate_leaves_the_run_marked_incomplete(
    tiny_run, tmp_path, monkeypatch, capsys
):
    from plasticc_jax import evaluate

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / tiny_run.config.run_path

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "load_vae", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate(tiny_config(), workdir)
    assert "evaluate started at" in (run_dir / provenance.INCOMPLETE).read_text()
    assert not (run_dir / "models" / provenance.RECORD).exists()
    raw = tiny_run.workdir / "data" / "raw"
    assert cli.main(score_argv(run_dir, raw, tmp_path / "out.parquet")) == 2
    line = one_error_line(capsys, "score")
    assert "is incomplete: evaluate started at" in line and "plasticc-jax evaluate" in line


def _garble(path: Path) -> None:
    path.write_bytes(b"{ not what was written")


def _garble_checkpoint(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*/encoder/**/d/*"):
        path.write_bytes(b"junk")


DAMAGE = {
    "estimators damaged": (lambda r: _garble(r / "models/detector-classifier.skops"), "skops has"),
    "estimators missing": (lambda r: (r / "models/detector-classifier.skops").unlink(), "skops is"),
    "detector.npz damaged": (lambda r: _garble(r / "models/detector.npz"), "npz has"),
    "detector.json damaged": (lambda r: _garble(r / "models/detector.json"), "json has"),
    "detector.json missing": (lambda r: (r / "models/detector.json").unlink(), "json is"),
    "stats.json damaged": (
        lambda r: _garble(r / "stats.json"),
        "stats.json has changed since evaluate fitted the detector",
    ),
    "stats.json missing": (lambda r: (r / "stats.json").unlink(), "stats.json is missing"),
    "config.json damaged": (lambda r: _garble(r / "config.json"), "config.json is damaged"),
    "config.json missing": (
        lambda r: (r / "config.json").unlink(),
        "config.json is missing, but the run has checkpoints",
    ),
    "checkpoint data damaged": (_garble_checkpoint, "checkpoints: the checkpoint of epoch"),
    "checkpoint item missing": (
        lambda r: [shutil.rmtree(d) for d in (r / "checkpoints").glob("*/decoder")],
        "checkpoints: the checkpoint of epoch",
    ),
    "no detector": (lambda r: shutil.rmtree(r / "models"), "it has not been evaluated"),
}


# A failed Orbax restore leaves an asyncio callback behind; collected here (the command line
# prints one line, nothing else), not during a later test.
ORBAX_LEFTOVERS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.mark.slow
@ORBAX_LEFTOVERS
def test_a_damaged_run_directory_is_one_line(tiny_run, tmp_path, capsys):
    raw = tiny_run.workdir / "data" / "raw"
    for case, (damage, expected) in DAMAGE.items():
        run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / case.replace(" ", "-")))
        damage(run_dir)
        assert cli.main(score_argv(run_dir, raw, tmp_path / "out.parquet")) == 2, case
        line = one_error_line(capsys, "score")
        assert expected in line, (case, line)
    assert not (tmp_path / "out.parquet").exists()
    gc.collect()


@pytest.mark.slow
@ORBAX_LEFTOVERS
def test_training_on_from_a_damaged_checkpoint_is_one_line(tiny_run, tmp_path, capsys):
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    _garble_checkpoint(workdir / tiny_run.config.run_path)
    argv = ["train", "--config", "tiny", "--workdir", str(workdir), "--max-epochs", "3"]
    assert cli.main(argv) == 2
    assert "cannot be read" in one_error_line(capsys, "train")
    gc.collect()


def test_a_lock_taken_just_before_its_record_is_written_is_still_named(tmp_path: Path) -> None:
    """The holder takes the lock, then writes its record: a refusal in between waits for it."""
    import fcntl
    import threading

    from plasticc_jax.io_utils import lock_path

    folder = tmp_path / "data"
    record = {"pid": 4242, "host": "h", "command": "c", "started_utc": "t"}
    with open(lock_path(folder), "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, no record yet

        def write_record() -> None:
            time.sleep(0.2)
            holder.write(json.dumps({**record, "stage": "prepare", "mode": "exclusive"}) + "\n")
            holder.flush()

        writer = threading.Thread(target=write_record)
        writer.start()
        named = r"in use by prepare \(writing; pid 4242 on h"
        try:
            with pytest.raises(FolderBusy, match=named), folder_lock(folder, "prepare"):
                pass
        finally:
            writer.join()


def test_a_first_chunk_that_cannot_be_scored_is_rejected_and_the_rest_scored(
    tiny_run, tmp_path, caplog, monkeypatch
):
    """Found by a review: when no object of the first chunk could be scored (a non-finite VAE
    output), its empty table set the Parquet schema, and the next chunk's text columns failed
    against it with a traceback. Also (a new-user review): objects of the run's train split,
    scored in-sample, are counted in a warning."""
    import numpy as np
    import pandas as pd

    from plasticc_jax import scoring
    from plasticc_jax.scoring import NON_FINITE_OUTPUT

    raw = tiny_run.workdir / "data" / "raw"
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    meta = raw / "plasticc_train_metadata.csv.gz"
    # Files are read in turn, chunk by chunk: the first file's chunk is the poisoned objects.
    poisoned = set(lcs["object_id"].unique()[:20])
    first = lcs["object_id"].isin(poisoned)
    lcs[first].to_csv(tmp_path / "lc_a.csv", index=False)
    lcs[~first].to_csv(tmp_path / "lc_b.csv", index=False)
    model_outputs = scoring.model_outputs

    def nan_latents(vae, arrays, *args, **kwargs):
        outputs = model_outputs(vae, arrays, *args, **kwargs)
        hit = np.isin(arrays.object_id, list(poisoned))[:, None]
        outputs["mu"] = np.where(hit, np.nan, outputs["mu"])
        return outputs

    monkeypatch.setattr(scoring, "model_outputs", nan_latents)
    out = tmp_path / "out.parquet"
    with caplog.at_level(logging.WARNING, logger="plasticc_jax"):
        assert cli.main(["score", "--run", str(tiny_run.run_dir), "--lightcurves",
                         str(tmp_path / "lc_a.csv"), str(tmp_path / "lc_b.csv"), "--metadata",
                         str(meta), "--output", str(out)]) == 0  # fmt: skip
    scored, rejected = pd.read_parquet(out), pd.read_csv(tmp_path / "out.rejected.csv")
    train = tiny_run.table.loc[tiny_run.table["split"] == "train", "object_id"]
    n_train = int(scored["object_id"].isin(train).sum())
    assert f"{n_train} scored objects have the ids of the run's train split" in caplog.text
    assert set(rejected.loc[rejected["reason"] == NON_FINITE_OUTPUT, "object_id"]) == poisoned
    assert len(scored) + len(rejected) == len(pd.read_csv(meta))
    assert len(scored) and np.isfinite(scored["anomaly_score"]).all()
    assert set(scored["class_name"]) <= set(CLASS_NAMES.values())


def test_score_dataframe_names_bad_values(tiny_run):
    """Found by an audit: NaN object ids became an invented id, text a bare ValueError."""
    import numpy as np
    import pandas as pd

    from plasticc_jax.scoring import score_dataframe

    raw = tiny_run.workdir / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz").head(3)
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    rows = lcs[lcs["object_id"].isin(meta["object_id"])].merge(meta, on="object_id")
    assert len(score_dataframe(rows, tiny_run.run_dir)) == 3
    cases = [
        (
            rows.assign(object_id=rows["object_id"].where(rows.index != 5)),
            "'object_id', row 5 .*: nan is not a whole number, not a missing value",
        ),
        (  # a review: said "ids are integers here" of a band's letter
            rows.astype({"passband": object}).assign(passband="r"),
            "'passband', row 0 .*: 'r' is not a whole number: write 0-5 for u, g, r, i, z, y",
        ),
        (
            rows.astype({"flux": object}).assign(flux=lambda f: f["flux"].where(f.index != 7, "x")),
            "'flux', row 7 \\(index 7\\): 'x' is not a number",
        ),
        (
            rows.assign(passband=rows["passband"] + 0.5),
            r"'passband', row 0 \(index 0\): \d\.5 is not a whole",
        ),
        (rows.drop(columns="object_id"), "rows has no object_id column"),
        (rows.assign(mwebv=np.arange(len(rows))), "has different metadata on different rows"),
        (  # a later audit: said "one beyond 2**53 as an integer" of a name
            rows.assign(object_id="ZTF" + rows["object_id"].astype(str)),
            "'ZTF.*' is not a whole number: ids are integers here",
        ),
        (  # a review: dates were read as their nanoseconds, every object "outside the survey"
            rows.assign(mjd=pd.Timestamp("1858-11-17") + pd.to_timedelta(rows["mjd"], unit="D")),
            r"'mjd' holds dates or durations \(datetime64.*MJD in days",
        ),
        # Named as the function called, not an internal one's name (a review).
        (rows.drop(columns="flux"), r"^score_dataframe: missing columns \['flux'\]"),
    ]
    for frame, message in cases:
        with pytest.raises(UserError, match=message):
            score_dataframe(frame, tiny_run.run_dir)


def test_float32_dates_are_named(tiny_run, caplog):
    """Found by an audit: float32 MJDs (rounded by minutes) moved points across the grid and
    changed the latents without a word."""
    import pandas as pd

    from plasticc_jax.scoring import score_dataframe

    raw = tiny_run.workdir / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz").head(2)
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    rows = lcs[lcs["object_id"].isin(meta["object_id"])].merge(meta, on="object_id")
    with caplog.at_level("WARNING", logger="plasticc_jax.streaming"):
        score_dataframe(rows.astype({"mjd": "float32"}), tiny_run.run_dir)
    assert "mjd column is float32" in caplog.text


def test_score_dataframe_reads_what_callers_give_it(tiny_run):
    """Found by an audit of the Python API: text flags all read as "detected", ids beyond 2**53
    rounded through floats, text ids in one table and integers in the other matching nothing,
    a caller's `problem` column taken for the package's own, arrays of different objects."""
    import numpy as np
    import pandas as pd

    from plasticc_jax.scoring import score_dataframe

    raw = tiny_run.workdir / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz").head(4)
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    lcs = lcs[lcs["object_id"].isin(meta["object_id"])]
    expected = score_dataframe(lcs, tiny_run.run_dir, meta)
    scored = expected["rejected_reason"].isna()
    assert scored.sum() >= 3
    text = lcs.assign(detected_bool=lcs["detected_bool"].map({0: "False", 1: "True"}))
    pd.testing.assert_frame_equal(score_dataframe(text, tiny_run.run_dir, meta), expected)
    as_text = meta.assign(object_id=meta["object_id"].astype(str))
    pd.testing.assert_frame_equal(score_dataframe(lcs, tiny_run.run_dir, as_text), expected)
    with pytest.raises(UserError, match="'maybe' is not a detection flag"):
        score_dataframe(text.assign(detected_bool="maybe"), tiny_run.run_dir, meta)
    # Names in capitals, as the CSV readers take them (found by an input audit: refused here).
    capitals = score_dataframe(
        lcs.rename(columns=str.upper), tiny_run.run_dir, meta.rename(columns=str.upper)
    )
    pd.testing.assert_frame_equal(capitals, expected)
    with pytest.raises(UserError, match=r"rows has the column 'mjd' twice"):
        score_dataframe(lcs.assign(MJD=lcs["mjd"]), tiny_run.run_dir, meta)
    # As the CSV readers: `ddf` written true/false; a label that is not a class number (text or
    # 90.5) scored without one (it refused the table).
    flags = meta.assign(ddf_bool=meta["ddf_bool"].map({0: "false", 1: "True"}))
    pd.testing.assert_frame_equal(score_dataframe(lcs, tiny_run.run_dir, flags), expected)
    labels = meta.astype({"target": object})
    labels.loc[labels.index[:2], "target"] = ["SNIa", 90.5]
    unlabelled = score_dataframe(lcs, tiny_run.run_dir, labels)
    pd.testing.assert_series_equal(unlabelled["anomaly_score"], expected["anomaly_score"])
    first_two = unlabelled["object_id"].isin(meta["object_id"].head(2))
    assert (unlabelled.loc[first_two, "target"] == -1).all()
    # The same for a rejected object (found by a review: text raised a bare ValueError there,
    # and 90.5 became SN Ia).
    short = lcs.groupby("object_id").head(3)  # too few observations: every object rejected
    for label in ("SNIa", 90.5):
        rejected = score_dataframe(short, tiny_run.run_dir, meta.assign(target=label))
        assert rejected["rejected_reason"].notna().all()
        assert (rejected["target"] == -1).all() and (rejected["class_name"] != "SN Ia").all()
    big = 1_234_567_890_123_456_789  # beyond 2**53: rounded to ...792 through a float
    shifted = score_dataframe(
        lcs.assign(object_id=lcs["object_id"] + big),
        tiny_run.run_dir,
        meta.assign(object_id=meta["object_id"] + big),
    )
    assert (shifted["object_id"] - big).tolist() == expected["object_id"].tolist()
    np.testing.assert_array_equal(shifted["anomaly_score"], expected["anomaly_score"])
    own = score_dataframe(lcs, tiny_run.run_dir, meta.assign(problem=1, source="survey"))
    pd.testing.assert_frame_equal(own, expected)
    with pytest.raises(UserError, match="both 'ddf_bool' and 'ddf'"):
        score_dataframe(lcs, tiny_run.run_dir, meta.assign(ddf=meta["ddf_bool"]))
    with pytest.raises(UserError, match="run must be a run directory or a loaded Scorer"):
        score_dataframe(lcs, None, meta)
    # Light curves alone (found by a review: "missing columns ... metadata ['object_id']").
    with pytest.raises(UserError, match=r"the rows have no metadata columns \['ddf', "):
        score_dataframe(lcs, tiny_run.run_dir)
    # A left merge's object without metadata is one, as `score` says (a review: "metadata ddf
    # missing").
    merged = lcs.merge(meta.iloc[1:], on="object_id", how="left")
    reasons = score_dataframe(merged, tiny_run.run_dir).set_index("object_id")["rejected_reason"]
    assert reasons[meta["object_id"].iloc[0]] == "light curve without metadata"


def test_score_refuses_a_run_whose_config_or_stats_changed(tiny_run, tmp_path):
    """Found by an audit: a hand-edited config.json (the grid) or stats.json (the feature
    normalisation) changed every score, exit 0."""
    from plasticc_jax.scoring import Scorer

    # The remedy that works: evaluate refuses other feature statistics too (a review).
    for name, remedy in (("config.json", "run `plasticc-jax evaluate`"), ("stats.json", "train")):
        run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / name))
        path = run_dir / name
        path.write_text(path.read_text() + "\n")
        with pytest.raises(UserError, match=rf"{name} has changed since .*or {remedy}"):
            Scorer.load(run_dir)
    # models/ copied from another run: neither file is the one it was fitted with (an audit
    # found config.json blamed).
    run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / "other-models"))
    record = run_dir / "models" / provenance.RECORD
    _edit_json(record, lambda r: r["run_files"].update({k: "0" * 64 for k in r["run_files"]}))
    with pytest.raises(UserError, match=r"models holds the detector of another run"):
        Scorer.load(run_dir)


def _edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def test_hand_edited_run_and_dataset_files_are_named(tiny_run, tmp_path, capsys):
    """Found by an audit: a network edited in config.json failed inside Orbax (tracebacks after
    the line, "damaged" though the checkpoint was not), a value of the wrong type in it or a
    provenance record of the wrong shape was an AttributeError or did not name the file, and a
    dataset manifest of `{}` read as "prepared again since"."""
    from plasticc_jax.checkpoints import CheckpointError
    from plasticc_jax.encoder import load_encoder, load_vae

    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny_run.run_dir, tmp_path / name))

    run_dir = copy("latent")
    _edit_json(run_dir / "config.json", lambda c: c["model"].update(latent_dim=7))
    with pytest.raises(CheckpointError, match=r"holds another network .* is \(\d+, \d+\) there"):
        load_vae(run_dir)
    # A later audit: the research API took an edited grid or normalisation, or damaged
    # parameters, and gave other latents without a word (`score` refused them by the
    # detector's record; research code has none). Each checkpoint records their hashes now.
    run_dir = copy("grid")
    _edit_json(run_dir / "config.json", lambda c: c["data"].update(window_before=8.0))
    with pytest.raises(UserError, match=r"config.json: its data settings \(window_before\) differ"):
        load_encoder(run_dir)
    # Where the files are and how fast they are read are no part of it, as when training resumes
    # (a review: a run resumed with another chunk_rows, its best epoch before, was refused).
    run_dir = copy("how-read")
    _edit_json(run_dir / "config.json", lambda c: c["data"].update(chunk_rows=1234, workers=2))
    load_encoder(run_dir)
    run_dir = copy("stats")
    _edit_json(run_dir / "stats.json", lambda s: s["quantiles"][0].__setitem__(0, -1e6))
    with pytest.raises(UserError, match=r"stats\.json differs from the feature statistics"):
        load_vae(run_dir)
    (run_dir / "stats.json").write_text("{}")  # an audit: "from an older version", no path
    with pytest.raises(UserError, match=r"/stats\.json is damaged \(KeyError: 'quantiles'\)"):
        load_vae(run_dir)
    run_dir = copy("params")
    largest = max(run_dir.glob("checkpoints/*/encoder/**/d/*"), key=lambda p: p.stat().st_size)
    with largest.open("r+b") as file:  # a few bytes of the stored arrays overwritten
        file.seek(largest.stat().st_size // 2)
        file.write(b"\xff" * 8)
    with pytest.raises(UserError, match="the parameters are damaged"):
        load_encoder(run_dir)
    run_dir = copy("text")
    _edit_json(run_dir / "config.json", lambda c: c["model"].update(latent_dim="sixteen"))
    with pytest.raises(UserError, match=r"config.json: model.latent_dim='sixteen'"):
        runs.read_config(run_dir)
    run_dir = copy("record")
    (run_dir / "provenance.json").write_text('{"dataset": 5}')
    with pytest.raises(UserError, match=r"provenance.json is damaged \(dataset: 5\)"):
        provenance.trained_on(run_dir)
    (run_dir / "models" / "provenance.json").write_text('{"files": [1]}')
    with pytest.raises(UserError, match=r"models/provenance.json is damaged \(files: \[1\]\)"):
        provenance.check_detector_files(run_dir)
    # A run without its record (trained before it existed, or lost): its statistics, those of
    # the network's features, checked against the dataset's for them (an audit found the whole
    # files compared, which never matched: the dataset has more features).
    run_dir = copy("no-record")
    (run_dir / provenance.RECORD).unlink()
    manifest = read_manifest(tiny_run.dataset_dir)
    config = runs.read_config(run_dir)
    provenance.check_run_dataset(run_dir, config, tiny_run.dataset_dir, manifest)
    _edit_json(run_dir / "stats.json", lambda s: s["quantiles"][0].__setitem__(0, -1e6))
    with pytest.raises(UserError, match=r"stats.json differs\), or .* lost its provenance.json"):
        provenance.check_run_dataset(run_dir, config, tiny_run.dataset_dir, manifest)
    dataset = Path(shutil.copytree(tiny_run.dataset_dir, tmp_path / "dataset"))
    (dataset / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"manifest.json is damaged \(no shard list\)"):
        read_manifest(dataset)
    (tmp_path / "a-file").touch()
    with pytest.raises(SystemExit) as exit_info:  # a usage error
        cli.main(["prepare", "--config", "tiny", "--workdir", str(tmp_path / "a-file")])
    assert exit_info.value.code == 2
    assert "a-file' is a file: give a folder" in capsys.readouterr().err


def test_a_refused_replay_leaves_no_output_folder(tiny_run, tmp_path, capsys):
    run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / "run"))
    (run_dir / provenance.INCOMPLETE).write_text("evaluate was interrupted\n")
    raw = tiny_run.workdir / "data" / "raw"
    output = tmp_path / "replays" / "night"
    argv = [
        *("replay", "--run", str(run_dir), str(raw / "plasticc_train_lightcurves.csv.gz")),
        *("--metadata", str(raw / "plasticc_train_metadata.csv.gz"), "--output", str(output)),
    ]
    assert cli.main(argv) == 2
    assert "is incomplete" in one_error_line(capsys, "replay")
    assert not (tmp_path / "replays").exists()


def test_a_replay_output_is_one_replays_alone(tiny_run, tmp_path, capsys, caplog):
    """Found by an audit: two replays into one folder at once both ran and mixed their nights;
    night files without a manifest were kept beside a new replay's; a manifest without its
    counters was a KeyError; a header-only light-curve file replayed 'through night -1'."""
    raw = tiny_run.workdir / "data" / "raw"
    metadata = raw / "plasticc_train_metadata.csv.gz"
    lightcurves = raw / "plasticc_train_lightcurves.csv.gz"

    def replay(output: Path, *inputs: Path) -> int:
        argv = ["replay", "--run", str(tiny_run.run_dir), *map(str, inputs or [lightcurves])]
        return cli.main([*argv, "--metadata", str(metadata), "--output", str(output)])

    output = tmp_path / "replay"
    holder = hold_lock(output, "replay", "exclusive")
    try:
        assert replay(output) == 2
        assert f"{output} is in use by replay" in one_error_line(capsys, "replay")
        # The shared run is trained on complete light curves only: said before the refusal.
        assert "was trained and calibrated on complete light curves only" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    foreign = tmp_path / "foreign"
    (foreign / "candidates" / "night=60001").mkdir(parents=True)
    (foreign / "candidates" / "night=60001" / "part-0.parquet").write_bytes(b"old")
    assert replay(foreign) == 2
    assert "holds night files but no manifest.json" in one_error_line(capsys, "replay")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text('{"fingerprint": "x"}')
    assert replay(damaged) == 2
    assert "manifest.json is damaged" in one_error_line(capsys, "replay")
    header = tmp_path / "header.csv"
    header.write_text("object_id,mjd,passband,flux,flux_err,detected\n")
    assert replay(tmp_path / "empty", header) == 2
    assert "no light-curve rows" in one_error_line(capsys, "replay")


def test_validate_refuses_a_known_class_without_objects(tiny_run, tmp_path, capsys):
    """Found by an audit: a known class absent from the data made every fold score NaN."""
    from plasticc_jax.validate import validate

    config = dataclasses.replace(
        tiny_run.config,
        data=dataclasses.replace(tiny_run.config.data, known_classes=(90, 42, 991)),
    )
    dataset = tmp_path / config.data.dataset_dir
    shutil.copytree(tiny_run.dataset_dir, dataset)  # its counts name no object of class 991
    with pytest.raises(UserError, match=r"known classes \[991\] have no train or val object"):
        validate(config, tmp_path)


# ---------------------------------------------------------------------------------------------
# A full disk.


def test_a_full_disk_names_the_file_it_was_writing(tmp_path, monkeypatch, capsys):
    """Found by an audit: a full disk in prepare, train or evaluate was `error: [Errno 28] No
    space left on device`, without the path (a write's OSError names no file)."""
    import errno

    from plasticc_jax import io_utils, prepare

    target = tmp_path / "data" / "stats.json"

    def full(handle: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare, "prepare", lambda *a, **k: io_utils.atomic_write(target, full))
    assert cli.main(["prepare", "--config", "tiny", "--workdir", str(tmp_path)]) == 1
    line = one_error_line(capsys, "prepare")
    assert line.endswith(f"No space left on device writing {target}: make room there and run again")
    assert list(target.parent.iterdir()) == []  # nor a temporary file left


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_metrics_and_figures_name_a_full_disk(tmp_path, monkeypatch):
    """A line appended to the metrics is not atomic, a figure is (since noted as not): both
    name the file on a full disk, and the figure's previous file stays, no scratch file left."""
    import errno

    import matplotlib.pyplot as plt

    from plasticc_jax.figures import _save

    with pytest.raises(OSError, match=r"No space left on device: '/dev/full'"):
        runs.append_metrics(Path("/dev/full"), {"epoch": 1})
    figure = plt.figure()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "roc.png").write_bytes(b"previous figure")
    monkeypatch.setattr(figure, "savefig", full)
    try:
        with pytest.raises(OSError, match=r"No space left on device: '.*roc.png'"):
            _save(figure, tmp_path / "roc.png")
    finally:
        plt.close(figure)
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]
    assert (tmp_path / "roc.png").read_bytes() == b"previous figure"


def test_score_names_its_output_on_a_full_disk_and_keeps_the_old_one(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """Found by an audit: pyarrow's `Error writing bytes to file ... [errno 28]`, no path."""
    import errno

    output = tmp_path / "out" / "s.parquet"
    argv = score_argv(tiny_run.run_dir, tiny_run.workdir / "data" / "raw", output)
    assert cli.main(argv) == 0
    before = output.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28]")

    monkeypatch.setattr("plasticc_jax.score.write_ranked", full)
    capsys.readouterr()
    assert cli.main(argv) == 1
    assert f"No space left on device writing {output}: make room" in one_error_line(capsys, "score")
    assert output.read_bytes() == before
    names = sorted(p.name for p in output.parent.iterdir())
    assert names == [".s.parquet.lock", "s.parquet", "s.rejected.csv"]  # the lock: see below


def test_a_light_curve_file_still_being_written_is_refused(tiny_run, tmp_path, monkeypatch, capsys):
    """Found by a review: a file still being copied was scored as far as it had got (its last
    object cut short, and once flagged for it), exit 0; `--dask` refused it. Now both do."""
    from plasticc_jax import score

    raw = tmp_path / "raw"
    shutil.copytree(tiny_run.workdir / "data" / "raw", raw)
    output = tmp_path / "out" / "s.parquet"
    argv = score_argv(tiny_run.run_dir, raw, output)
    lightcurves = raw / "plasticc_train_lightcurves.csv.gz"
    written = score.write_unranked

    def still_growing(*args: object, **kwargs: object) -> object:
        result = written(*args, **kwargs)  # every row read: the copy writes on meanwhile
        os.utime(lightcurves, ns=(0, lightcurves.stat().st_mtime_ns + 1))
        return result

    monkeypatch.setattr(score, "write_unranked", still_growing)
    assert cli.main(argv) == 2
    line = one_error_line(capsys, "score")
    assert f"{lightcurves} changed while the run was going" in line
    assert "run again once the file is complete" in line
    assert not output.exists()


def test_a_dask_output_moved_aside_by_a_killed_run_is_put_back(tmp_path, caplog):
    """Found by a review: a kill -9 between the two moves of `score --dask`'s install left the
    old dataset only in the scratch folder, which the next score removed."""
    from plasticc_jax import distributed_score
    from plasticc_jax.score_output import SCRATCH_PREFIX

    output = tmp_path / "scores.parquet"
    killed = tmp_path / f"{SCRATCH_PREFIX}abc"  # its owner gone: a record nobody holds
    (killed / "previous-other.parquet").mkdir(parents=True)  # another output's
    (killed / "previous-scores.parquet").mkdir()
    (killed / "previous-scores.parquet" / "part-0.parquet").write_text("old")
    (killed / ".owner").write_text("{}\n")
    with caplog.at_level(logging.WARNING):
        distributed_score._restore_previous(output)
    assert (output / "part-0.parquet").read_text() == "old"
    assert f"put back {output}" in caplog.text
    assert (killed / "previous-other.parquet").is_dir()  # not this output's: left
    distributed_score._restore_previous(output)  # an output in place: nothing to do
    assert (output / "part-0.parquet").read_text() == "old"


def test_two_scores_of_one_output_are_one_at_a_time(tiny_run, tmp_path, capsys):
    """Found by an audit: two scores writing one output (`make score`: <run>/scored.parquet
    whatever the inputs) could leave one's table beside the other's rejection list."""
    output = tmp_path / "out" / "s.parquet"
    argv = score_argv(tiny_run.run_dir, tiny_run.workdir / "data" / "raw", output)
    first = hold_lock(output, "score", "exclusive")
    try:
        assert cli.main(argv) == 2
        assert f"{output} is in use by score (writing; pid {first.pid}" in one_error_line(
            capsys, "score"
        )
        assert not output.exists()
    finally:
        first.kill()
        first.wait()
    assert cli.main(argv) == 0


def test_an_output_sharing_a_rejection_list_is_refused(tiny_run, tmp_path, capsys):
    """Found by a review: `y.parquet` after `y.csv` replaced y.csv's rejection list (both are
    `y.rejected.csv`), and `--output y.rejected.csv` replaced it with a table."""
    from plasticc_jax.score_output import refuse_shared_rejections

    (tmp_path / "y.csv").write_text("object_id\n")
    refuse_shared_rejections(tmp_path / "y.parquet")  # no list to replace: an input y.csv, say
    (tmp_path / "y.rejected.csv").write_text("object_id,reason\n")
    raw = tiny_run.workdir / "data" / "raw"
    assert cli.main(score_argv(tiny_run.run_dir, raw, tmp_path / "y.parquet")) == 2
    shared = "y.csv beside it keeps its rejections in y.rejected.csv too"
    assert shared in one_error_line(capsys, "score")
    with pytest.raises(UserError, match=re.escape(shared)):
        refuse_shared_rejections(tmp_path / "y.csv.gz")
    with pytest.raises(UserError, match=r"is the rejection list of y\.csv beside it"):
        refuse_shared_rejections(tmp_path / "y.rejected.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.csv", "y.rejected.csv"]
    refuse_shared_rejections(tmp_path / "y.csv")  # its own name again: no other output's list
    refuse_shared_rejections(tmp_path / "z.rejected.csv")  # no table z beside it


def test_score_review_labels_reranks_under_the_lock_scoring_took(tmp_path, monkeypatch):
    """`score --review-labels` let go of the output's lock between scoring and re-ranking:
    another score of the output could take it there (the re-ranking then refused, or run on
    the other's table). Now one hold covers both."""
    import contextlib

    from plasticc_jax import io_utils
    from plasticc_jax import score as score_module
    from plasticc_jax.review import rescore

    inputs = [tmp_path / name for name in ("lc.csv", "meta.csv", "labels.jsonl")]
    for path in inputs:
        path.write_text("")
    (tmp_path / "run").mkdir()  # the run folder (its reading is `_score`'s, replaced here)
    output = tmp_path / "out" / "s.parquet"
    events = []

    @contextlib.contextmanager
    def recorded(folder, stage, *, shared=False):
        with io_utils.folder_lock(folder, stage, shared=shared):
            events.append(f"lock {Path(folder).name}")
            yield
            events.append(f"unlock {Path(folder).name}")

    def scored(run_dir, lightcurves, metadata, out, *rest):
        events.append("score")
        return out

    for module in (cli, score_module):
        monkeypatch.setattr(module, "folder_lock", recorded, raising=False)
    monkeypatch.setattr(score_module, "_score", scored)
    monkeypatch.setattr(rescore, "check_labels", lambda path: None)
    monkeypatch.setattr(rescore, "rerank_scored", lambda *args: events.append("rerank"))
    argv = ["score", "--run", str(tmp_path / "run"), "--output", str(output)]
    argv += ["--lightcurves", str(inputs[0]), "--metadata", str(inputs[1])]
    assert cli.main([*argv, "--review-labels", str(inputs[2])]) == 0
    assert events == [
        "lock s.parquet",
        "lock run",
        "score",
        "rerank",
        "unlock run",
        "unlock s.parquet",
    ]


def test_score_review_labels_keeps_the_run_from_evaluate_while_scoring(tmp_path, monkeypatch):
    """Found by a review: `score --review-labels` let go of the run once its model was loaded,
    so an evaluate could rewrite it while the files were scored (minutes to hours) and finish;
    the re-ranking then read the answered objects' features from the new model's table beside
    the new files' features of the old model. Now the run stays locked (shared) throughout."""
    from plasticc_jax import score as score_module

    run = tmp_path / "run"
    run.mkdir()
    inputs = [tmp_path / name for name in ("lc.csv", "meta.csv")]
    for path in inputs:
        path.write_text("")
    hold = (
        "import sys\nfrom plasticc_jax.io_utils import FolderBusy, folder_lock\n"
        "try:\n    with folder_lock(sys.argv[1], 'evaluate'):\n        print('evaluated')\n"
        "except FolderBusy as error:\n    print(error)\n"
    )
    evaluate = []

    def scored(run_dir, lightcurves, metadata, out, *rest):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.run(
            [sys.executable, "-c", hold, str(run)], capture_output=True, text=True, env=env
        )
        evaluate.append(child.stdout.strip())
        return out

    monkeypatch.setattr(score_module, "_score", scored)
    output = tmp_path / "out" / "s.parquet"
    score_module.score(run, [inputs[0]], [inputs[1]], output, then=lambda out: None)
    assert len(evaluate) == 1 and "is in use by" in evaluate[0]
    score_module.score(run, [inputs[0]], [inputs[1]], output)  # without: not held (as before)
    assert evaluate[1] == "evaluated"


def test_a_file_where_a_folder_goes_is_named(tmp_path, capsys):
    """Found by an audit: `--run-dir x/run` with x a file was `[Errno 17] File exists: 'x'`."""
    (tmp_path / "x").write_text("")
    (tmp_path / "data" / "processed" / "rare").mkdir(parents=True)  # past "no dataset"
    argv = ["train", "--config", "tiny", "--workdir", str(tmp_path), "--run-dir", "x/run"]
    assert cli.main(argv) == 1
    line = one_error_line(capsys, "train")
    assert line.endswith(
        f"{tmp_path / 'x'} is a file, where a folder is needed: move it or choose another path"
    )


def test_an_empty_checkpoints_folder_is_no_trained_run(tmp_path):
    """Found by an audit: a train that failed before its first epoch left an empty
    checkpoints/, and later stages said "config.json is missing, but the run has checkpoints"."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match=r"run is not a run directory \(no config.json\)"):
        runs.read_config(tmp_path / "run")


def test_a_command_s_scratch_folder_is_left_to_it(tmp_path):
    """Found by a review: evaluate's and prepare's clean-up of interrupted writes unlinked every
    `.tmp-*` entry, and a `score` scratch folder in the run's folder (`make score` writes the
    table there) made them fail with "Is a directory" after evaluate had marked the run
    incomplete."""
    from plasticc_jax import prepare

    for folder in (tmp_path / "run", tmp_path / "dataset"):
        (folder / ".tmp-score-abc" / "part").mkdir(parents=True)
        (folder / ".tmp-write").write_text("half")
    io_utils.remove_unfinished_writes(tmp_path / "run")
    prepare._clear(tmp_path / "dataset")
    for folder in (tmp_path / "run", tmp_path / "dataset"):
        assert (folder / ".tmp-score-abc" / "part").is_dir()
        assert not (folder / ".tmp-write").exists()


def test_a_scratch_folder_whose_owner_is_not_yet_locked_is_kept(tmp_path):
    """Found by a review: between creating `.owner` and locking it, another command's clean-up
    could lock it and remove the live folder."""
    young = tmp_path / ".tmp-score-young"
    young.mkdir()
    (young / ".owner").touch()  # created, not yet locked and written
    assert io_utils.remove_stale_scratch(tmp_path, ".tmp-score-") == []
    assert young.is_dir()
    (young / ".owner").write_text("{}\n")  # written, and nobody holds it: the owner has ended
    assert io_utils.remove_stale_scratch(tmp_path, ".tmp-score-") == [young]


def interrupting(move, at):
    """`move` (`os.replace`, `os.rename`) raising KeyboardInterrupt, as a Ctrl-C would, where
    `at(source, destination)`."""

    def moved(source, destination):
        if at(Path(source), Path(destination)):
            raise KeyboardInterrupt
        move(source, destination)

    return moved


def test_an_interrupted_score_leaves_no_mismatched_pair(tiny_run, tmp_path, monkeypatch):
    """Found by a review: the new rejections file went in before the new table, so a kill between
    the two left a table beside another run's rejections."""
    from plasticc_jax import score as score_lib
    from plasticc_jax.score_output import rejected_path

    raw = tiny_run.workdir / "data" / "raw"
    output = tmp_path / "scores.parquet"
    argv = ["score", "--run", str(tiny_run.run_dir), "--output", str(output)]
    argv += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    argv += ["--metadata", str(raw / "plasticc_train_metadata.csv.gz")]
    assert cli.main(argv) == 0
    old = output.read_bytes()
    monkeypatch.setattr(
        score_lib.os, "replace", interrupting(os.replace, lambda source, to: to == output)
    )
    assert cli.main(argv) == 130
    assert output.read_bytes() == old and not rejected_path(output).exists()


def test_an_interrupted_dask_install_puts_the_old_dataset_back(tmp_path, monkeypatch):
    """Found by a review: Ctrl-C between moving the old dataset out and the new one in lost both
    (the scratch folder holding the old one was removed)."""
    from plasticc_jax import distributed_score

    output, dataset, scratch = tmp_path / "scores", tmp_path / "new", tmp_path / "scratch"
    for folder in (output, dataset, scratch):
        folder.mkdir()
    (output / "part-0.parquet").write_text("old")
    moved_in = interrupting(os.rename, lambda source, to: source == dataset)
    monkeypatch.setattr(distributed_score.os, "rename", moved_in)
    with pytest.raises(KeyboardInterrupt):
        distributed_score._install(dataset, output, scratch)
    assert (output / "part-0.parquet").read_text() == "old"


def test_evaluate_stops_its_figure_process_when_it_cannot_start(tiny_run, monkeypatch, tmp_path):
    """Found by a review: the figures' process was started before the run was marked
    incomplete, outside the `with` that stops it, so a failure there (a full disk) left it to
    the interpreter's exit."""
    import dataclasses
    import errno

    from plasticc_jax import evaluate as evaluate_lib

    stopped = []

    class Figures:
        def __enter__(self):
            return None

        def __exit__(self, *exc):
            stopped.append(exc[0])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate_lib.report, "start_figures", Figures)
    monkeypatch.setattr(evaluate_lib.provenance, "incomplete", full_disk)
    config = tiny_run.config
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, figures=True))
    # On a copy: evaluate locks its run, which the other worker's tests read meanwhile.
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    with pytest.raises(OSError, match="No space left"):
        evaluate_lib.evaluate(config, workdir)
    assert stopped == [OSError]


def test_user_mistakes_about_run_folders_are_named(tiny_run, tmp_path):
    """Found by a review of the error messages: a config.json that is a folder was called
    missing (and `train`'s advice then failed on the rename), a prepared dataset given as a run
    was called not evaluated, a folder where a file goes was the raw errno text, a stats.json
    of an older version was not named, and the review's pool messages named no table."""
    import errno
    import shutil

    import pandas as pd

    from plasticc_jax import dataset
    from plasticc_jax.review.pool import Pool

    run = tmp_path / "run"
    (run / "config.json").mkdir(parents=True)
    with pytest.raises(UserError, match=r"config.json is a folder, where the run's config.json"):
        runs.read_config(run)
    with pytest.raises(UserError, match=r"is a prepared dataset, not a run: give the run folder"):
        runs.read_config(tiny_run.dataset_dir)
    error = OSError(errno.EISDIR, "Is a directory", "/x/.tmp-config.json.abc", None, "/x/a")
    assert isinstance(error, IsADirectoryError) and cli._file_system_problem(error) == (
        "/x/a is a folder, where a file is needed: move it or choose another path"
    )
    old = tmp_path / "old"
    old.mkdir()
    (old / "stats.json").write_text('{"mean": [0], "std": [1]}')
    with pytest.raises(UserError, match=rf"{old / 'stats.json'}: from an older version"):
        dataset.read_stats(old)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.run_dir, copy)
    scores = pd.read_parquet(copy / "scores.parquet")
    test = scores[scores["split"] == "test"]
    twice = pd.concat([test, test.head(1)])
    twice.to_parquet(tmp_path / "twice.parquet")
    oid = test["object_id"].iloc[0]
    with pytest.raises(UserError, match=rf"twice.parquet lists object {oid} twice: give a table"):
        Pool(copy, tmp_path / "twice.parquet", workdir=tiny_run.workdir, curves=False)
    scores[scores["split"] != "test"].to_parquet(tmp_path / "fitted.parquet")
    with pytest.raises(UserError, match=r"fitted.parquet holds only objects of the train and"):
        Pool(copy, tmp_path / "fitted.parquet", workdir=tiny_run.workdir, curves=False)


def test_a_metadata_file_changed_under_dask_is_named(tmp_path):
    """Found by the message review: "a metadata file changed" did not say which."""
    from plasticc_jax import distributed

    path = tmp_path / "meta.csv"
    path.write_text("object_id,hostgal_photoz\n1,0.1\n")
    stamp = distributed.metadata_stamp([path])
    path.write_text("object_id,hostgal_photoz\n1,0.1\n2,0.2\n")
    with pytest.raises(UserError, match=rf"the metadata file {path.resolve()} changed"):
        distributed.worker_metadata(stamp, None)


def test_a_score_without_a_trained_run_leaves_nothing_behind(tiny_run, tmp_path, capsys):
    """Found by a review: `make score` before `train` was refused, but left the run's folder
    (its output's default place) with lock files in it."""
    raw = tiny_run.workdir / "data" / "raw"
    run_dir = tmp_path / "runs" / "default-rare"
    argv = ["score", "--run", str(run_dir), "--output", str(run_dir / "scored.parquet")]
    argv += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    assert cli.main([*argv, "--metadata", str(raw / "plasticc_train_metadata.csv.gz")]) == 2
    assert "does not exist (no trained run there)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
