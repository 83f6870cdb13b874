"""Streaming and batching (plasticc_jax.streaming): chunks, workers, grouping, model batches."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import batches as bt
from plasticc_jax import streaming as st
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import FeatureStats, LightCurveArrays
from plasticc_jax.errors import UserError
from plasticc_jax.synthetic import write_synthetic

DATA = DataConfig(n_time_bins=16, window_before=32.0, window_after=96.0, min_observations=3)


def collect(stream) -> tuple[LightCurveArrays, pd.DataFrame]:
    arrays, rejected = zip(*stream, strict=True)
    return LightCurveArrays.concatenate(list(arrays)), pd.concat(rejected, ignore_index=True)


def assert_same(a: LightCurveArrays, b: LightCurveArrays) -> None:
    for name, value in a.to_dict().items():
        other = getattr(b, name)
        assert value.dtype == other.dtype, name
        np.testing.assert_array_equal(value, other, err_msg=name)


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    meta, lcs = write_synthetic(root, 120, fmt="kaggle", seed=5)
    frame = pd.read_csv(lcs)
    # A few objects with problems, to check that rejections too are chunk-independent.
    frame.loc[frame["object_id"] == 3, "flux_err"] = 0.0
    frame = frame[(frame["object_id"] != 4) | (frame.index % 40 == 0)]
    frame.to_csv(lcs, index=False)
    return meta, lcs


def test_chunk_size_and_workers_do_not_change_the_output(synthetic_files):
    meta, lcs = synthetic_files
    data = dataclasses.replace(DATA, min_observations=5)
    whole = collect(st.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=10**9), 1))
    tiny = collect(st.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=37), 1))
    pooled = collect(st.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=500), 2))
    assert len(whole[0]) == 118
    assert sorted(whole[1]["object_id"]) == [3, 4]
    for arrays, rejected in (tiny, pooled):
        assert_same(whole[0], arrays)
        pd.testing.assert_frame_equal(whole[1], rejected)
    # The stream agrees with the in-memory path.
    alone, _ = st.grid_lightcurves(pd.read_csv(lcs), pd.read_csv(meta), data)
    assert_same(whole[0], alone)


def test_without_a_progress_bar_the_log_says_how_far_it_got(synthetic_files, monkeypatch, caplog):
    """Found by a review: with the output in a file (no bar), a large score's log said nothing
    between its start and its end."""
    meta, lcs = synthetic_files
    monkeypatch.setattr(st, "PROGRESS_LOG_S", 0.0)  # every chunk
    with caplog.at_level(logging.INFO, logger="plasticc_jax.streaming"):
        collect(st.stream_grids([lcs], [meta], dataclasses.replace(DATA, chunk_rows=2000), 1))
    lines = [r.getMessage() for r in caplog.records if "rows so far" in r.getMessage()]
    assert len(lines) > 1 and lines[-1].startswith("gridded ") and "training_set" in lines[-1]


def test_ungrouped_file_is_an_error(tmp_path, synthetic_files):
    meta, lcs = synthetic_files
    frame = pd.read_csv(lcs)
    moved = frame[frame["object_id"] == 10].index[:3]
    shuffled = pd.concat([frame.drop(moved), frame.loc[moved]])
    path = tmp_path / "training_set.csv"
    shuffled.to_csv(path, index=False)
    for chunk_rows in (50, 10**9):
        data = dataclasses.replace(DATA, chunk_rows=chunk_rows)
        with pytest.raises(UserError, match=r"training_set.csv.*object 10 "):
            collect(st.stream_grids([path], [meta], data, 1))


def test_a_file_cut_by_lines_or_without_rows_is_named(tmp_path, synthetic_files):
    """Found by an audit: a header-only light-curve file was taken as "no objects" (every object
    "metadata without light curve"), and an object cut across two files was said to "reappear
    after rows of other objects" without naming the file it came from."""
    meta, lcs = synthetic_files
    lines = lcs.read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    ids = [line.split(",")[0] for line in body]
    cut = next(i for i in range(10, len(body)) if ids[i] == ids[i - 1])  # inside an object
    first, second = tmp_path / "part_a.csv", tmp_path / "part_b.csv"
    first.write_text(header + "".join(body[:cut]))
    second.write_text(header + "".join(body[cut:]))
    with pytest.raises(UserError, match=r"part_b.csv: object \d+ goes on from the end of .*a.csv"):
        collect(st.stream_grids([first, second], [meta], DATA, 1))
    empty = tmp_path / "empty.csv"
    empty.write_text(header)
    with pytest.raises(UserError, match=r"empty.csv: no light-curve rows \(a header only"):
        collect(st.stream_grids([lcs, empty], [meta], DATA, 1))


def test_padded_batches_have_fixed_shapes_and_weights():
    data = {"x": np.arange(10)}
    # Training: every batch has the one shape; the last is padded with weight-0 zero rows.
    batches = list(bt.padded_batches(data, 4, np.arange(10)[::-1], min_size=4))
    assert [len(b["x"]) for b, _ in batches] == [4, 4, 4]
    assert [n for _, n in batches] == [4, 4, 2]
    assert batches[-1][0]["weight"].tolist() == [1, 1, 0, 0]
    assert batches[-1][0]["x"].tolist() == [1, 0, 0, 0]
    assert batches[0][0]["x"].tolist() == [9, 8, 7, 6]
    seen = np.concatenate([b["x"][b["weight"] > 0] for b, _ in batches])
    assert sorted(seen.tolist()) == list(range(10))
    # Inference: stored order, the short batch padded to a power of two (at least 64).
    sizes = [len(b["x"]) for b, _ in bt.padded_batches({"x": np.arange(300)}, 256)]
    assert sizes == [256, 64]
    assert [bt.padded_size(n, 4096) for n in (1, 64, 65, 3000, 4096)] == [64, 64, 128, 4096, 4096]
    assert list(bt.padded_batches({"x": np.arange(0)}, 64)) == []
    # Tight: the rest cut into powers of two rather than padded to nearly twice its size.
    assert bt.batch_sizes(1394, 4096, tight=True) == [(1024, 1024), (256, 256), (114, 128)]
    assert bt.batch_sizes(9000, 4096, tight=True)[2:] == [(512, 512), (256, 256), (40, 64)]
    assert bt.batch_sizes(1394, 4096) == [(1394, 2048)]
    # An order that takes some of the rows (training on partial curves: one row an object): as
    # many batches as it needs, not as the data would (found this release: each epoch of the
    # early preset also took steps on empty batches, which still move Adam's weights).
    ordered = list(bt.padded_batches({"x": np.arange(100)}, 32, np.arange(70)[::-1], min_size=32))
    assert [int(b["weight"].sum()) for b, _ in ordered] == [n for _, n in ordered] == [32, 32, 6]
    batches = list(bt.padded_batches({"x": np.arange(1394)}, 4096, tight=True))
    assert np.concatenate([b["x"][:n] for b, n in batches]).tolist() == list(range(1394))


def test_model_inputs_validate_and_normalise():
    n, n_times = 3, 16
    stats = FeatureStats.fit(("a", "b"), np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]]))
    batch = {
        "flux": np.zeros((n, 6, n_times)),
        "flux_err": np.ones((n, 6, n_times)),
        "mask": np.ones((n, 6, n_times), np.int8),
        "features": np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]]),
    }
    inputs = bt.model_inputs(batch, stats, n_times)
    assert inputs["flux"].dtype == np.float32 and inputs["mask"].dtype == bool
    # The train quantiles' median maps to 0, lower values below, higher above.
    assert inputs["features"].dtype == np.float32
    np.testing.assert_allclose(inputs["features"][1], [0.0, 0.0], atol=1e-6)
    assert (inputs["features"][0] < 0).all() and (inputs["features"][2] > 0).all()
    with pytest.raises(UserError, match=r"flux has shape \(3, 6, 8\); this run expects"):
        bt.model_inputs({**batch, "flux": np.zeros((n, 6, 8))}, stats, n_times)
    with pytest.raises(UserError, match="features has shape"):
        bt.model_inputs({**batch, "features": np.zeros((n, 3))}, stats, n_times)
    with pytest.raises(UserError, match="is a dict without flux_err, mask, features"):
        bt.model_inputs({"flux": batch["flux"]}, stats, n_times)


def _partition_job(paths, work, groups, fingerprint="fingerprint"):
    from plasticc_jax.replay_nights import Job

    return Job(list(paths), [], work.parent, fingerprint, None, None, None, groups)


def test_replay_partition_puts_each_object_whole_in_one_group(tmp_path, synthetic_files):
    from plasticc_jax import replay_groups
    from plasticc_jax.lightcurve_rows import read_files

    _, lcs = synthetic_files
    rows = pd.read_csv(lcs)
    # Two files, the second with its rows out of order: each object's rows, in file order.
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    rows.iloc[:500].to_csv(first, index=False)
    rows.iloc[500:].sample(frac=1.0, random_state=1).to_csv(second, index=False)
    whole = read_files([first, second])
    work = tmp_path / "out" / "groups"
    job = _partition_job([first, second], work, 4)
    nights = replay_groups.partition_rows(job, work)
    assert nights == (int(np.floor(whole.mjd.min() - 0.5)), int(np.floor(whole.mjd.max() - 0.5)))
    parts = [replay_groups.read_group(work, g) for g in range(4)]
    assert sum(len(p) for p, _ in parts) == len(whole)
    for g, (part, positions) in enumerate(parts):
        assert len(part) and (replay_groups.group_of(part.object_id, 4) == g).all()
        inside = np.flatnonzero(np.isin(whole.object_id, part.object_id))
        np.testing.assert_array_equal(positions, inside)  # their places in the input
        for name in ("object_id", "mjd", "passband", "flux", "flux_err", "detected"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[inside])
    # Killed while its record was written: its temporary file is no one else's; done again.
    (work / "partition.json").rename(work / ".tmp-partition.json.abc123")
    assert replay_groups.partition_rows(job, work) == nights
    assert not (work / ".tmp-partition.json.abc123").exists()
    # A finished partition is reused by the same replay, refused to another, naming what differs.
    assert replay_groups.partition_rows(job, work) == nights
    other = _partition_job([first], work, 4, "another")
    with pytest.raises(
        UserError, match=r"other inputs or settings \(inputs: \['a.csv', 'b.csv'\] then"
    ):
        replay_groups.partition_rows(other, work)
    # A folder `groups` that is not this replay's: refused, left as it is.
    for name, make in (("files", lambda f: (f.mkdir(), (f / "notes.txt").write_text("mine"))),
                       ("link", lambda f: f.symlink_to(tmp_path))):  # fmt: skip
        mine = tmp_path / name / "groups"
        mine.parent.mkdir()
        make(mine)
        with pytest.raises(UserError, match=r"did not write|not a folder this replay made"):
            replay_groups.partition_rows(_partition_job([first], mine, 2), mine)
        assert mine.is_symlink() or (mine / "notes.txt").read_text() == "mine"


def test_replay_groups_open_a_file_each(monkeypatch):
    import resource

    from plasticc_jax import replay_groups

    raised = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: raised.append(limits))
    replay_groups.allow_open_files(900)  # within the soft limit: nothing to do
    replay_groups.allow_open_files(1000)
    assert raised == [(1000 + replay_groups.OPEN_FILES_SPARE, 4096)]
    with pytest.raises(UserError, match="give at most 4032 groups"):
        replay_groups.allow_open_files(4090)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (40, 40))
    with pytest.raises(UserError, match=r"may open 40 .*; raise that limit"):
        replay_groups.allow_open_files(2)
