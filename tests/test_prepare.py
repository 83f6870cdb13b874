"""`prepare`: outputs, splits, statistics, re-runs, interruption, and the real data.

The prepared dataset is the shared `project` (conftest); tests that prepare again do so elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import N_OBJECTS, tiny_config

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, plasticc, readers
from plasticc_jax.dataset import SPLITS, FeatureStats, load_split, read_manifest, read_stats
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.prepare import prepare
from plasticc_jax.shards import split_objects

# The shared copy of the real training set beside the checkout (present in CI), or the mirror.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "plasticc_snmachine"
REAL_DATA = Path(os.environ.get("PLASTICC_JAX_MIRROR", SHARED))


def check_counts(out: Path) -> dict:
    """The manifest adds up, and agrees with the shards and rejected.csv."""
    manifest = read_manifest(out)
    rejected = pd.read_csv(out / "rejected.csv")
    in_shards = sum(manifest["objects"].values())
    assert in_shards + manifest["rejected"]["total"] == manifest["input_objects"]
    assert len(rejected) == manifest["rejected"]["total"]
    for split in SPLITS:
        n = sum(manifest["counts"][split].values())
        assert n == manifest["objects"][split]
        if n:
            assert len(load_split(out, split)) == n
    return manifest


def file_hashes(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def with_raw(workdir: Path, raw: Path) -> Path:
    """A new project folder with a copy of the shared synthetic files in data/raw."""
    shutil.copytree(raw, workdir / "data" / "raw")
    return workdir


@pytest.fixture(scope="module")
def prepared(project) -> tuple[Path, config_lib.Config]:
    config = tiny_config()
    return project / config.data.dataset_dir, config


def test_outputs_and_counts(prepared):
    out, config = prepared
    manifest = check_counts(out)
    assert manifest["input_objects"] == N_OBJECTS and manifest["rejected"]["total"] == 0
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["grid"]["n_time_bins"] == 16
    assert json.loads((out / "config.json").read_text())["data"]["known_classes"]
    assert config_io.read_config(out / "config.json").data.tag == "rare"
    rows = {f["kind"]: f["rows"] for f in manifest["inputs"]["files"]}
    assert rows["metadata"] == N_OBJECTS and rows["lightcurves"] > N_OBJECTS * 40
    train = load_split(out, "train")
    assert train.flux.shape[1:] == (6, 16) and train.features.shape[1] == len(FEATURE_NAMES)
    size = config.data.shard_objects
    rows = load_split(out, "train", partial=True)  # complete and partial light curves
    assert len(manifest["shards"]["train"]) == -(-len(rows) // size)  # shards of `size` rows
    # Every object at each stage it had enough observations for; counted once, complete.
    stage_rows = manifest["stage_rows"]["train"]
    assert stage_rows["inf"] == len(train) == manifest["objects"]["train"]
    assert sum(stage_rows.values()) == len(rows)
    for days in config.data.stages:
        at = rows.object_id[rows.stage == days]
        assert at.size == stage_rows[str(days)] and set(at) <= set(train.object_id)


def test_splits_disjoint_stratified_anomalies_in_test(prepared):
    out, config = prepared
    known, anomalies = config.data.known_classes, config.data.anomaly_classes
    splits = {s: load_split(out, s) for s in SPLITS}
    ids = [set(a.object_id.tolist()) for a in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    for split in ("train", "val"):
        assert not np.isin(splits[split].target, anomalies).any()
        assert not splits[split].is_anomaly.any()
    test = splits["test"]
    np.testing.assert_array_equal(test.is_anomaly, np.isin(test.target, anomalies))
    assert test.is_anomaly.any()
    for cls in known:
        n = {s: int((a.target == cls).sum()) for s, a in splits.items()}
        total = sum(n.values())
        assert abs(n["test"] - round(config.data.test_fraction * total)) == 0
        assert abs(n["val"] - round(config.data.val_fraction * total)) == 0


def test_split_is_reproducible_and_order_free():
    rng = np.random.default_rng(0)
    ids = rng.permutation(1000) + 10
    target = rng.choice([90, 42, 62, 64, 991], 1000)
    data = tiny_config("data.protocol=sn").data
    codes, reasons = split_objects(ids, target, data)
    again, _ = split_objects(ids[::-1], target[::-1], data)
    np.testing.assert_array_equal(codes, again[::-1])
    other, _ = split_objects(ids, target, dataclasses.replace(data, seed=1))
    assert (codes != other).any()
    assert (codes[target == 64] == 2).all() and (codes[target == 991] == -1).all()
    assert reasons == {991: "class 991 not in protocol"}


def test_stats_from_train_only(prepared):
    out, _ = prepared
    stats = read_stats(out)
    # The train split's rows: its objects' complete and partial light curves (what is trained on).
    train = load_split(out, "train", partial=True).features.astype(np.float64)
    np.testing.assert_array_equal(stats.quantiles, FeatureStats.fit(stats.names, train).quantiles)
    everything = np.concatenate([load_split(out, s, partial=True).features for s in SPLITS])
    other = FeatureStats.fit(stats.names, everything).quantiles
    assert not np.allclose(stats.quantiles, other, equal_nan=True)


def test_rerun_is_up_to_date_and_rebuild_is_identical(prepared, raw_files, caplog, tmp_path):
    out, config = prepared
    before = file_hashes(out)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare(config, out.parents[2])
    assert "up to date" in caplog.text
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    # Another worker count and chunk size, from scratch: byte-identical data files, and the
    # same manifest apart from the config that records those two settings.
    other = dataclasses.replace(config.data, workers=2, chunk_rows=700)
    workdir = with_raw(tmp_path, raw_files[0].parent)
    again = prepare(dataclasses.replace(config, data=other), workdir)
    after = file_hashes(again)
    for name in ("config.json", "manifest.json"):
        assert before.pop(name) != after.pop(name)
    assert after == before and len(after) > 4
    first, second = read_manifest(out), read_manifest(again)
    assert {k: v for k, v in first.items() if k != "config"} == {
        k: v for k, v in second.items() if k != "config"
    }
    assert "replacing" not in caplog.text  # workers and chunks: the same dataset
    changed = dataclasses.replace(config.data, n_time_bins=8)
    with caplog.at_level(logging.WARNING):
        prepare(dataclasses.replace(config, data=changed), workdir)  # not up to date: rebuilt
    assert read_manifest(again)["grid"]["n_time_bins"] == 8
    # Said, since runs trained on the dataset replaced cannot be evaluated (found by a review:
    # the `tiny` preset replaced the default one's without a word).
    assert f"replacing {again}, prepared with other settings (data.n_time_bins 16 -> 8)" in (
        caplog.text
    )


def test_a_damaged_shard_is_refused_and_prepared_again(prepared, raw_files, tmp_path):
    """Found by an audit: a shard copied over another was read as the dataset, a truncated one
    was a traceback, and prepare called the dataset up to date."""
    from plasticc_jax.dataset import iter_split
    from plasticc_jax.errors import UserError

    _, config = prepared
    workdir = with_raw(tmp_path, raw_files[0].parent)
    out = prepare(config, workdir)
    shards = read_manifest(out)["shards"]
    first, other = out / shards["train"][0], out / shards["test"][0]
    saved = first.read_bytes()
    for damage, message in [
        (other.read_bytes(), "was changed or damaged since prepare"),
        (saved[: len(saved) // 2], "was changed or damaged since prepare"),
        (None, "is missing"),
    ]:
        first.unlink() if damage is None else first.write_bytes(damage)
        with pytest.raises(UserError, match=message):
            list(iter_split(out, "train"))
        prepare(config, workdir)  # not up to date: rebuilt
        assert first.read_bytes() == saved


@pytest.mark.slow
def test_kill_9_leaves_nothing_complete_and_next_run_finishes(raw_files, tmp_path, prepared):
    out_ref, config = prepared
    # Shards of 4 objects: about 100 files, so the writing phase lasts long enough to hit.
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, shard_objects=4))
    config_io.save_config(config, tmp_path / "cfg.json")
    script = (
        "import sys; from pathlib import Path; from plasticc_jax.config_io import read_config;"
        "from plasticc_jax.prepare import prepare;"
        "prepare(read_config(Path(sys.argv[1])), Path(sys.argv[2]))"
    )
    interrupted = []
    for attempt in range(5):  # until one kill lands mid-run (the first, nearly always)
        work = with_raw(tmp_path / f"work{attempt}", raw_files[0].parent)
        out = work / config.data.dataset_dir
        building = out.parent / f".{out.name}.building"  # built there, then moved in
        child = subprocess.Popen([sys.executable, "-c", script, tmp_path / "cfg.json", work])
        # A random moment of the writing phase, which starts when the shard folder appears.
        deadline = time.monotonic() + 60
        while not (building / "shards").exists():
            if child.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.002)
        delay = random.uniform(0.0, 0.1)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if (out / "manifest.json").exists():  # it finished before the kill: it must be whole
            check_counts(out)
        else:
            interrupted.append(delay)
            break
    assert interrupted, "no kill landed before the manifest was written"
    prepare(config, work)
    check_counts(out)
    assert not list(out.rglob(".tmp-*")), f"temporary files left after the kill at {delay:.3f}s"
    assert not building.exists()
    ref = {s: load_split(out_ref, s) for s in SPLITS}
    for split in SPLITS:
        np.testing.assert_array_equal(load_split(out, split).flux, ref[split].flux)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real PLAsTiCC data not present")
def test_real_training_set(tmp_path):
    config = config_io.load_preset("default")
    config = config_io.apply_overrides(config, [f"data.raw_dir={REAL_DATA}"])
    out = prepare(config_lib.resolve(config), tmp_path)
    manifest = check_counts(out)
    assert manifest["input_objects"] == 7848
    assert manifest["inputs"]["format"] == "unblinded"
    rows = {f["kind"]: f["rows"] for f in manifest["inputs"]["files"]}
    assert rows == {"lightcurves": 1_421_705, "metadata": 7848}
    assert not [n for n in manifest["feature_names"] if n.startswith(plasticc.TRUTH_PREFIXES)]
    assert not [n for n in manifest["feature_names"] if n in ("ra", "decl", "hostgal_specz")]
    # The truth columns are in the file but never read.
    metadata = readers.read_metadata(REAL_DATA / "plasticc_train_metadata.csv.gz")
    assert not [c for c in metadata if c.startswith(plasticc.TRUTH_PREFIXES)]
    assert (metadata["target"] > 0).all() and metadata["distmod"].isna().sum() > 0
    test = load_split(out, "test")
    assert set(np.unique(test.target[test.is_anomaly])) == {6, 53, 64, 95}


def test_an_empty_val_split_is_named_at_prepare(raw_files, tmp_path):
    """Found by an audit: data.val_fraction=0.001 prepared a dataset without a val split, and
    train said only "split 'val' ... holds no objects"."""
    from plasticc_jax.errors import UserError

    workdir = with_raw(tmp_path, raw_files[0].parent)
    with pytest.raises(UserError, match=r"no known object reached the val split \(data\.val_"):
        prepare(tiny_config("data.val_fraction=0.001"), workdir)


def test_missing_input_files_get_a_remedy_that_works(raw_files, tmp_path):
    """`download` fetches the training set only: offered for missing test files, it could not
    help (found by an audit)."""
    from plasticc_jax.errors import UserError

    workdir = with_raw(tmp_path, raw_files[0].parent)  # training files only
    with pytest.raises(UserError, match=r"no recognised test files .* does not fetch the test set"):
        prepare(tiny_config("data.inputs=test"), workdir)
    with pytest.raises(UserError, match=r"no recognised train files .* run `plasticc-jax download"):
        prepare(tiny_config("data.raw_dir=elsewhere"), workdir)
    # Kaggle's command line delivers zip archives: "rename" would not do (a download review).
    (workdir / "zipped").mkdir()
    (workdir / "zipped" / "training_set.csv.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match=r"training_set.csv.zip is a zip archive: unzip it there"):
        prepare(tiny_config("data.raw_dir=zipped"), workdir)


def test_missing_parts_of_the_test_set_are_named(tmp_path, caplog):
    """A download review: with a part of the unblinded test set missing, its objects (about
    300,000 a part) were only counted among the rejections."""
    from plasticc_jax.inputs import find_inputs

    for name in ("plasticc_test_metadata.csv.gz", "plasticc_test_lightcurves_01.csv.gz"):
        (tmp_path / name).write_bytes(b"")
    for part in range(3, 12):
        (tmp_path / f"plasticc_test_lightcurves_{part:02d}.csv.gz").write_bytes(b"")
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        found = find_inputs(tmp_path, "test")
    assert found is not None and len(found.lightcurves) == 10
    assert "lack part(s) _02 of _01 to _11" in caplog.text
    caplog.clear()
    (tmp_path / "plasticc_test_lightcurves_02.csv.gz").write_bytes(b"")
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        find_inputs(tmp_path, "test")
    assert "lack part" not in caplog.text


def test_files_in_the_raw_folder_that_are_not_read_are_named(tmp_path, caplog):
    """A review: a user's own files in data/raw were passed over without a word."""
    from plasticc_jax.inputs import find_inputs

    for name in ("training_set.csv", "training_set_metadata.csv", "notes.txt", "extra.csv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "SOURCE.json").write_text("{}")  # the download's record: not a data file
    with caplog.at_level("INFO", logger="plasticc_jax"):
        find_inputs(tmp_path, "train")
    assert "not read (not inputs of data.inputs=train): extra.csv, notes.txt" in caplog.text


@pytest.mark.parametrize("block", [1, 7, 1000, 5000])
def test_the_statistics_sample_is_every_kth_row_of_the_split(monkeypatch, block: int) -> None:
    """Beyond `MAX_ROWS` the rows kept for the statistics are every k-th of the split, however
    it is cut into chunks (a review: the first rows were thinned again at every doubling, so a
    large split's sample came mostly from its last files)."""
    from plasticc_jax.shards import TrainFeatures

    monkeypatch.setattr(TrainFeatures, "MAX_ROWS", 100)
    rows = np.arange(5000, dtype=np.float64)[:, None]
    sample = TrainFeatures()
    for start in range(0, len(rows), block):
        sample.update(rows[start : start + block])
    kept = np.concatenate(sample.parts)[:, 0]
    assert np.array_equal(kept, rows[::32, 0])  # 157 rows: at most 2 * MAX_ROWS
