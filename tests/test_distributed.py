"""prepare and score on a Dask cluster: the same results as in one process, also when a worker
dies; the public DataFrame function under Dask's map_partitions.

One LocalCluster (two worker processes, as `--dask local:2` starts) serves every test of the
session (`cluster`); the command line reaches it by its address. The input is small and in
several files: a plain CSV cut into many parts, and a gzip file (one part), with an object of
too few observations, a light curve without metadata and metadata without light curve.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from plasticc_jax import (
    cli,
    distributed,
    lightcurve_rows,
    provenance,
    readers,
    score_output,
    streaming,
)
from plasticc_jax.dataset import SPLITS, load_split
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import check_unchanged, sha256_file
from plasticc_jax.prepare import prepare
from plasticc_jax.synthetic import write_synthetic

# `make test-slow` (see the Makefile); a test still waiting on the cluster after 5 minutes
# (at most a minute each under load) fails rather than stalling the run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PART_MB = "0.03"  # about 7 parts of the plain file
SHORT, NO_METADATA, NO_LIGHTCURVE = 10_005, 19_999, 18_888


@pytest.fixture(scope="session")
def cluster():
    """A client of a LocalCluster started as `--dask local:2` starts it (functions of this
    module go to its workers by value)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.connect("local:2") as client:
        yield client


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    """Input in the unblinded file names: two light-curve files (plain CSV, gzip), two metadata
    files."""
    folder = tmp_path_factory.mktemp("raw")
    meta_a, lc_a = write_synthetic(folder / "a", 40, fmt="kaggle", seed=1, first_object_id=10_000)
    meta_b, lc_b = write_synthetic(folder / "b", 20, seed=2, first_object_id=20_000)
    rows = pd.read_csv(lc_a)
    rows = rows.drop(rows.index[rows["object_id"] == SHORT][3:])  # too few observations
    orphan = rows[rows["object_id"] == 10_001].assign(object_id=NO_METADATA)
    before = rows["object_id"] <= 10_020  # the orphan amid the others: rejections in file order
    rows = pd.concat([rows[before], orphan, rows[~before]])
    rows.to_csv(folder / "plasticc_train_lightcurves_a.csv", index=False)
    meta = pd.read_csv(meta_a)
    ghost = meta.iloc[[0]].assign(object_id=NO_LIGHTCURVE)
    pd.concat([meta, ghost]).to_csv(folder / "plasticc_train_metadata.csv", index=False)
    lc_b.rename(folder / "plasticc_train_lightcurves_b.csv.gz")
    meta_b.rename(folder / "plasticc_train_metadata.csv.gz")
    return folder


def _score_args(run_dir: Path, raw: Path, output: Path) -> list[str]:
    return [
        "score",
        "--run",
        str(run_dir),
        "--lightcurves",
        str(raw / "plasticc_train_lightcurves_a.csv"),
        str(raw / "plasticc_train_lightcurves_b.csv.gz"),
        "--metadata",
        str(raw / "plasticc_train_metadata.csv"),
        str(raw / "plasticc_train_metadata.csv.gz"),
        "--output",
        str(output),
    ]


@pytest.fixture(scope="session")
def one_process(tiny_run, raw, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The single-process score table and rejections of the input."""
    output = tmp_path_factory.mktemp("one") / "scores.parquet"
    assert cli.main(_score_args(tiny_run.run_dir, raw, output)) == 0
    return pd.read_parquet(output), pd.read_csv(output.with_name("scores.rejected.csv"))


def _assert_same_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns) == list(expected.columns)
    assert table.dtypes.to_dict() == expected.dtypes.to_dict()
    for name in ("object_id", "rank", "split", "target", "n_observed", "flagged"):
        np.testing.assert_array_equal(table[name], expected[name], err_msg=name)
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-6)


def _score_on_cluster(tiny_run, cluster, raw: Path, output: Path) -> Path:
    args = _score_args(tiny_run.run_dir, raw, output)
    assert cli.main([*args, "--dask", cluster.scheduler.address, "--part-mb", PART_MB]) == 0
    return output


def test_score_on_the_cluster_gives_the_single_process_table(
    tiny_run, cluster, raw, one_process, tmp_path, caplog
):
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        output = _score_on_cluster(tiny_run, cluster, raw, tmp_path / "scores.parquet")
    expected, expected_rejected = one_process
    # The objects never detected are counted over all parts, on the driver (each worker warned
    # of its own part's, in its own log, before).
    rows = pd.concat(readers.read_lightcurves(p) for p in raw.glob("*lightcurves*"))
    seen = rows["detected"] | (rows["flux"] / rows["flux_err"] >= 5)
    never = seen.groupby(rows["object_id"]).any().loc[lambda d: ~d].index
    n_never = int(expected["object_id"].isin(never).sum())
    assert n_never > 0
    assert f"{n_never} scored objects were never detected" in caplog.text
    _assert_same_table(pd.read_parquet(output), expected)
    assert provenance.table_checkpoint(output) == provenance.table_checkpoint(
        tiny_run.run_dir / "scores.parquet"
    )
    rejected = pd.read_csv(tmp_path / "scores.rejected.csv")
    pd.testing.assert_frame_equal(rejected, expected_rejected)
    assert {SHORT, NO_METADATA, NO_LIGHTCURVE} <= set(rejected["object_id"])
    manifest = json.loads((output / score_output.MANIFEST).read_text())
    assert len(manifest["parts"]) > 3  # the plain file is cut, the gzip file is one part
    assert manifest["objects"] == len(expected) and manifest["rejected"] == len(rejected)
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [score_output.MANIFEST, *(p["file"] for p in manifest["parts"])]
    )


def test_prepare_on_the_cluster_gives_the_single_process_dataset(cluster, raw, tmp_path):
    """The same objects in the same order, the same statistics, rejections and counts."""
    datasets = []
    for name, extra in (("one", []), ("dask", ["--dask", cluster.scheduler.address])):
        workdir = tmp_path / name
        (workdir / "data").mkdir(parents=True)
        (workdir / "data" / "raw").symlink_to(raw)
        args = ["prepare", "--config", "tiny", "--protocol", "sn", "--workdir", str(workdir)]
        assert cli.main([*args, *extra, "--part-mb", PART_MB]) == 0
        datasets.append(workdir / tiny_config("data.protocol=sn").data.dataset_dir)
    one, dask = datasets
    for split in SPLITS:
        expected, found = load_split(one, split).to_dict(), load_split(dask, split).to_dict()
        for name, values in expected.items():
            np.testing.assert_array_equal(found[name], values, err_msg=f"{split} {name}")
    for name in ("stats.json", "rejected.csv"):
        assert (dask / name).read_bytes() == (one / name).read_bytes(), name
    rejected = pd.read_csv(one / "rejected.csv")
    assert {SHORT, NO_METADATA, NO_LIGHTCURVE} <= set(rejected["object_id"])
    assert rejected["reason"].str.contains("not in protocol").any()
    manifests = [json.loads((d / "manifest.json").read_text()) for d in datasets]
    shards = [m.pop("shards") for m in manifests]
    # The shards are cut differently (per part): their hashes differ, each its own file's.
    for d, m, split_shards in zip(datasets, manifests, shards, strict=True):
        hashes = m.pop("shard_sha256")
        assert hashes == {n: sha256_file(d / n) for ns in split_shards.values() for n in ns}
    for manifest in manifests:  # the project folders differ
        for file in manifest["inputs"]["files"]:
            file["path"] = Path(file["path"]).name
    assert manifests[0] == manifests[1]
    assert len(shards[1]["train"]) > len(shards[0]["train"])  # cut per part


def test_score_dataframe_under_map_partitions(tiny_run, cluster, raw, one_process):
    """Light-curve rows joined with their metadata, partitioned by object: the single-process
    scores, every object once, the rejected ones with their reason; the same with the run
    loaded by the driver and sent with the tasks."""
    import dask.dataframe as dd

    from plasticc_jax import score_dataframe

    rows = readers.read_lightcurves(raw / "plasticc_train_lightcurves_a.csv")
    rows = rows.merge(readers.read_metadata(raw / "plasticc_train_metadata.csv"), on="object_id")
    run_dir = str(tiny_run.run_dir)
    meta = score_dataframe(rows.head(0), run_dir)
    parts = dd.from_pandas(rows, npartitions=3).shuffle("object_id")
    table = parts.map_partitions(score_dataframe, run_dir, meta=meta).compute()
    table = table.sort_values("object_id", ignore_index=True)
    assert table.dtypes.to_dict() == meta.dtypes.to_dict()
    assert table["object_id"].is_unique
    assert set(table["object_id"]) == set(rows["object_id"])
    reasons = table.set_index("object_id")["rejected_reason"]
    assert reasons[SHORT] == "fewer than 5 observations" and reasons.count() == 1
    expected = one_process[0].drop(columns="rank")
    scored = table[table["rejected_reason"].isna()].drop(columns="rejected_reason")
    expected = expected[expected["object_id"].isin(scored["object_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(scored.reset_index(drop=True), expected, check_dtype=False)

    # The run loaded once here and sent with the tasks: the same table, no run file read there.
    import dask

    from plasticc_jax.scoring import Scorer

    model = dask.delayed(Scorer.load(run_dir))
    shipped = parts.map_partitions(score_dataframe, model, meta=meta).compute()
    pd.testing.assert_frame_equal(shipped.sort_values("object_id", ignore_index=True), table)


def _kill_once(pattern: str, markers: Path, *, each_worker: bool = False):
    """A worker plugin that kills the worker process starting a task whose key matches
    `pattern`, once (a marker file in `markers` says it happened), or once per worker (its
    replacement keeps the name). `distributed` is imported here, not at the top: `make test`
    collects this module (about 0.5 s of imports) without running it."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class KillOnce(WorkerPlugin):
        def setup(self, worker) -> None:
            self.marker = Path(markers) / (str(worker.name) if each_worker else "killed")

        def transition(self, key, start, finish, **kwargs) -> None:
            first = not self.marker.exists()
            if finish == "executing" and re.fullmatch(pattern, str(key)) and first:
                self.marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)

    return KillOnce()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    tiny_run, cluster, raw, one_process, tmp_path
):
    cluster.register_plugin(_kill_once(r"plasticc-score-\w+-00002", tmp_path), name="kill")
    try:
        output = _score_on_cluster(tiny_run, cluster, raw, tmp_path / "scores.parquet")
    finally:
        cluster.unregister_worker_plugin("kill")
    assert (tmp_path / "killed").exists()  # a worker died running part 2, which ran again
    _assert_same_table(pd.read_parquet(output), one_process[0])


def test_the_run_sent_with_the_tasks_outlives_every_worker_holding_it(
    tiny_run, cluster, raw, one_process, tmp_path
):
    """Both workers killed as they start scoring, with the run the driver sent them: their
    replacements get it again (the scheduler rebuilds it from the task graph)."""
    markers = tmp_path / "killed"
    markers.mkdir()
    killer = _kill_once(r"plasticc-score-\w+-\d+", markers, each_worker=True)
    cluster.register_plugin(killer, name="kill-each")
    try:
        output = _score_on_cluster(tiny_run, cluster, raw, tmp_path / "scores.parquet")
    finally:
        cluster.unregister_worker_plugin("kill-each")
    assert len(list(markers.iterdir())) == 2  # each worker died once
    _assert_same_table(pd.read_parquet(output), one_process[0])


# ---------------------------------------------------------------------------------------------
# Without a cluster: parts, errors.


def _object_ids(part: lightcurve_rows.FilePart) -> np.ndarray:
    return np.concatenate([rows.object_id for rows in lightcurve_rows.read_rows(part, 1 << 30)])


def test_parts_hold_whole_objects_and_every_line_once(raw):
    path = raw / "plasticc_train_lightcurves_a.csv"
    text = path.read_bytes()
    every_id = pd.read_csv(path)["object_id"].to_numpy()
    for part_bytes in (1, 5_000, 40_000, 10**9):
        parts = lightcurve_rows.split_file(path, part_bytes)
        assert parts[0].start == text.index(b"\n") + 1 and parts[-1].stop == len(text)
        assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
        ids = [_object_ids(part) for part in parts]
        np.testing.assert_array_equal(np.concatenate(ids), every_id)
        assert all(a[-1] != b[0] for a, b in itertools.pairwise(ids))  # no object is cut
    assert len(lightcurve_rows.split_file(path, 1)) == len(np.unique(every_id))
    gzip_file = raw / "plasticc_train_lightcurves_b.csv.gz"
    assert lightcurve_rows.split_file(gzip_file, 1) == [lightcurve_rows.FilePart(gzip_file)]


def test_parts_are_cut_between_objects_past_quoted_commas(raw, tmp_path):
    """A quoted field with a comma before object_id (found by an audit: the cutter split lines at
    every comma, cut objects in two and refused the file as not grouped by object_id)."""
    rows = pd.read_csv(raw / "plasticc_train_lightcurves_a.csv")
    rows.insert(0, "comment", "night, " + rows["mjd"].round().astype(int).astype(str))
    path = tmp_path / "lightcurves.csv"
    rows.to_csv(path, index=False)
    parts = lightcurve_rows.split_file(path, 5_000)
    ids = [_object_ids(part) for part in parts]
    np.testing.assert_array_equal(np.concatenate(ids), rows["object_id"].to_numpy())
    assert len(parts) > 1 and all(a[-1] != b[0] for a, b in itertools.pairwise(ids))


def test_bad_input_in_a_later_part_names_the_line_of_the_file(raw, tmp_path):
    """The single-process message, although the part starts in the middle of the file."""
    rows = pd.read_csv(raw / "plasticc_train_lightcurves_a.csv")
    moved = rows.index[rows["object_id"] == 10_035][0]  # after the rows of the next object
    after = rows.index[rows["object_id"] == 10_036][-1]
    rows = pd.concat([rows.loc[:after].drop(moved), rows.loc[[moved]], rows.loc[after + 1 :]])
    path = tmp_path / "lightcurves.csv"
    rows.to_csv(path, index=False)
    data = tiny_config().data
    metadata = readers.read_metadata(raw / "plasticc_train_metadata.csv")
    with pytest.raises(UserError, match="not contiguous") as single:
        list(streaming.stream_grids([path], [], data, metadata=metadata))
    lines = path.read_bytes().split(b"\n")
    first = int(np.flatnonzero(rows["object_id"].to_numpy() == 10_030)[0]) + 1  # its line
    start = sum(len(line) + 1 for line in lines[:first])
    part = lightcurve_rows.FilePart(path, start, path.stat().st_size)
    index = streaming.MetaIndex(metadata)
    with pytest.raises(UserError) as parted:
        distributed.run_part(part, index, data, 1, list)
    assert "line" in str(single.value) and str(parted.value) == str(single.value)


def test_an_object_in_two_parts_is_an_error(raw):
    parts = [
        lightcurve_rows.FilePart(Path("a.csv"), 0, 10),
        lightcurve_rows.FilePart(Path("b.csv")),
    ]
    with pytest.raises(UserError, match=r"object 7 is in a.csv \(bytes 0-10\) and in b.csv"):
        distributed.check_unique(parts, [np.array([1, 7]), np.array([7, 9])])


def test_a_bad_address_leaves_the_old_dataset_alone(raw, tmp_path):
    """prepare connects (and checks --part-mb) before it clears a dataset it must rebuild."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(raw)
    args = ["prepare", "--config", "tiny", "--protocol", "sn", "--workdir", str(tmp_path)]
    assert cli.main(args) == 0
    dataset = tmp_path / tiny_config("data.protocol=sn").data.dataset_dir
    before = sorted(p.name for p in dataset.rglob("*"))
    assert cli.main([*args, "--set", "data.seed=1", "--dask", "local:0"]) == 2
    with pytest.raises(UserError, match="--part-mb"):
        prepare(tiny_config("data.protocol=sn", "data.seed=1"), tmp_path, dask="x", part_mb=0)
    assert sorted(p.name for p in dataset.rglob("*")) == before


def test_a_file_changed_during_a_run_is_refused(raw, tmp_path):
    path = tmp_path / "lc.csv"
    shutil.copy(raw / "plasticc_train_lightcurves_a.csv", path)
    parts = distributed.plan_parts([path], float(PART_MB))
    assert all(part.path.is_absolute() for part in parts)  # workers may run elsewhere (audit)
    check_unchanged(path, parts[0].stamp)
    os.utime(path, ns=(0, parts[0].stamp[1] + 1))  # written to since
    with pytest.raises(UserError, match="changed while the run was going"):
        check_unchanged(path, parts[0].stamp)


def test_cluster_addresses_users_get_wrong(monkeypatch, tmp_path, capsys):
    import socket

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(distributed, "HANDSHAKE_MARGIN_S", 1.0)
    # A port that accepts and says nothing (the dashboard's, given for the scheduler's): Dask
    # waited for its handshake forever (found by an audit).
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    for address, message in (
        (f"tcp://127.0.0.1:{port}", "no Dask scheduler answered within 1.5 s"),
        ("local:0", "local:N with N >= 1"),
        ("local:two", "local:N with N >= 1"),
        ("tcp://127.0.0.1:9", "nothing listens there"),
        (str(tmp_path / "scheduler.json"), "no such scheduler file"),
        (str(tmp_path / "notes.json"), "not a scheduler file"),
        (str(tmp_path / "empty.json"), "not a scheduler file"),
    ):
        (tmp_path / "notes.json").write_text("my cluster is at ...")
        (tmp_path / "empty.json").write_text("{}")
        with pytest.raises(UserError, match=message), distributed.connect(address):
            pass
    silent.close()
    args = ["score", "--run", str(tmp_path), "--lightcurves", __file__, "--metadata", __file__]
    assert cli.main([*args, "--output", str(tmp_path / "s.csv"), "--dask", "local:1"]) == 2
    assert "Parquet dataset" in capsys.readouterr().err
    out = str(tmp_path / "s.parquet")
    assert cli.main([*args, "--output", out, "--dask", "local:1", "--review-labels"]) == 2
    assert "--review-labels needs one score table file" in capsys.readouterr().err


def test_score_on_the_cluster_makes_the_single_process_checks_first(
    tiny_run, raw, tmp_path, capsys
):
    """An incomplete run, an output in the run or holding an input: refused before any cluster
    starts (`local:1` is never started), nothing written."""
    from plasticc_jax import provenance

    run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / "run"))
    output = tmp_path / "scores.parquet"
    (run_dir / provenance.INCOMPLETE).write_text("evaluate started at noon and has not finished")
    assert cli.main([*_score_args(run_dir, raw, output), "--dask", "local:1"]) == 2
    assert "is incomplete: evaluate started at noon" in capsys.readouterr().err
    (run_dir / provenance.INCOMPLETE).unlink()
    inside = run_dir / "models" / "scores.parquet"
    assert cli.main([*_score_args(run_dir, raw, inside), "--dask", "local:1"]) == 2
    assert "lies in" in capsys.readouterr().err
    holder = tmp_path / "holder.parquet"
    holder.mkdir()
    lightcurves = holder / "part-00000.parquet"  # an input, in the dataset's own file name
    shutil.copy(raw / "plasticc_train_lightcurves_a.csv", lightcurves)
    args = [
        str(lightcurves) if a.endswith("lightcurves_a.csv") else a
        for a in _score_args(run_dir, raw, holder)
    ]
    assert cli.main([*args, "--dask", "local:1"]) == 2
    assert f"holds {lightcurves}, which this command reads" in capsys.readouterr().err
    assert not output.exists() and not inside.exists()
    assert sorted(p.name for p in holder.iterdir()) == [lightcurves.name]


def test_ctrl_c_is_heeded_while_the_local_cluster_starts(monkeypatch) -> None:
    """Found by a check of Ctrl-C at each second of `score --dask local:2`: SIGINT was ignored
    here while the workers started (so that they were born ignoring it), and a Ctrl-C then was
    lost: the command ran to its end, exit 0. The workers now come from a fork server started
    ignoring it."""
    import distributed as dask_distributed

    from plasticc_jax import distributed

    here: list[object] = []
    real = dask_distributed.LocalCluster

    def recording(*args, **kwargs):
        here.append(signal.getsignal(signal.SIGINT))
        return real(*args, **kwargs)

    monkeypatch.setattr(dask_distributed, "LocalCluster", recording)
    with distributed.connect("local:1") as client:
        parents = set(client.run(os.getppid).values())
    assert here == [signal.default_int_handler]  # heeded here while the cluster started
    assert parents and os.getpid() not in parents  # the workers are the fork server's


def test_ctrl_c_stops_a_local_cluster_without_the_workers_tracebacks() -> None:
    import subprocess
    import time

    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal\n"
        "from plasticc_jax import distributed\n"
        "import os\n"
        "try:\n"
        "    with distributed.connect('local:2') as client:\n"
        "        # One worker dies and the nanny restarts it: the restarted one ignores it too.\n"
        "        victim = min(client.run(os.getpid).values())\n"
        "        os.kill(victim, signal.SIGKILL)\n"
        "        while True:\n"
        "            time.sleep(0.5)\n"
        "            try:\n"
        "                now = list(client.run(os.getpid).values())\n"
        "            except Exception:  # the dead worker's connection\n"
        "                continue\n"
        "            if len(now) == 2 and victim not in now:\n"
        "                break\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(120)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    # As a terminal's Ctrl-C: SIGINT to the whole process group, the workers included.
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert "interrupted" in output and "Traceback" not in output, output


def test_the_clusters_failures_are_one_line(monkeypatch) -> None:
    """Found by an audit: a task that killed every worker that tried it (out of memory) gave
    Dask's `KilledWorker` traceback; a cluster whose workers all died left the driver waiting
    silently; `--dask localhost:8786` was refused as a malformed `local:N`."""
    import distributed as dask_distributed
    from distributed import KilledWorker

    from plasticc_jax import distributed

    class Client:
        def __init__(self, workers: dict) -> None:
            self.workers = workers

        def scheduler_info(self) -> dict:
            return {"workers": self.workers}

        def gather(self, futures: list) -> list:
            raise KilledWorker.__new__(KilledWorker)

    monkeypatch.setattr(dask_distributed, "wait", lambda futures, timeout: None)
    with pytest.raises(UserError, match=r"Dask workers died running the scoring, each .*memory"):
        distributed.gathered(Client({"tcp://w": {}}), [], "the scoring")

    def never_done(futures: list, timeout: float) -> None:
        raise TimeoutError

    monkeypatch.setattr(dask_distributed, "wait", never_done)

    class Future:
        def __init__(self, status: str) -> None:
            self.status = status

        def result(self) -> None:
            raise UserError(f"part of status {self.status}")

    # A failed part is said at once, not once every other part has run (a review: 22 parts
    # scored before a bad value on line 6 was named).
    futures = [Future("pending"), Future("error"), Future("pending")]
    waiting = Client({"tcp://w": {}})
    waiting.scheduler_info = lambda: pytest.fail("still waiting for the other parts")
    with pytest.raises(UserError, match="part of status error"):
        distributed.gathered(waiting, futures, "the scoring")
    monkeypatch.setattr(distributed, "WORKER_WAIT_S", -1)
    with pytest.raises(UserError, match="no Dask worker left in the cluster for -1 s while the sc"):
        distributed.gathered(Client({}), [], "the scoring")

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(distributed, "_client_within", refused)
    monkeypatch.setattr(distributed, "_check_port", lambda address: None)
    reached = pytest.raises(UserError, match="localhost:8786: cannot reach a Dask scheduler")
    with reached, distributed.connect("localhost:8786"):
        pass
    monkeypatch.undo()
    with pytest.raises(UserError, match="use local:N with N >= 1"), distributed.connect("local:0"):
        pass


def test_a_port_where_nothing_listens_is_named_at_once() -> None:
    """Found by an audit: tcp://127.0.0.1:1 took 20-25 s to fail, port 99999 said "timed out"."""
    import socket

    with socket.socket() as probe:  # a port free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Named before Dask's client is made (its message would be "cannot reach a Dask scheduler").
    refused = pytest.raises(UserError, match=rf"127.0.0.1:{port}: nothing listens there")
    with refused, distributed.connect(f"tcp://127.0.0.1:{port}"):
        pass
    no_port = pytest.raises(UserError, match="99999 is not a port number")
    with no_port, distributed.connect("127.0.0.1:99999"):
        pass
