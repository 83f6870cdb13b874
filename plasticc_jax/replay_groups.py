"""`plasticc-jax replay --groups K`: a replay of an input larger than memory.

A night's score of an object depends on that object's rows alone, so the objects can be replayed
in K groups, one after the other, and each night's candidates merged afterwards into what a replay
of every object at once writes: the same candidates, ranked over all groups, and the same counts.

1. **Partition**: the light-curve files are read in blocks and each row is appended, with its
   place in the input, to its object's group file (`groups/rows-<g>.arrows`, Arrow IPC, zstd):
   memory holds one block. `groups/partition.json` marks it done.
2. **Groups**: each group is replayed as a replay of its own, into `groups/group-<g>/`, with its
   own manifest (a kill resumes inside it), over the nights with data of its objects; then
   `object_nights.npz` keeps its objects' first and closing nights (the running totals of
   objects seen, open and closed on any night). Memory holds that group's rows, about 1/K of the
   input (`replay_input.ReplayInput`). With `--jobs J`, J processes (`plasticc_jax.processes`)
   each load the run once and replay every J-th group, and memory holds J groups.
3. **Merge**: night by night, the groups' candidates are ranked together and their counts summed
   into the output's `candidates/`, `rejected/` and `manifest.json`, as `replay` writes them
   (resumable the same way). Once the input's last night is merged, the working folder is
   renamed, then removed (a kill in between leaves a folder the next run removes).

Candidates appear in the output only in the merge, after every group is replayed: for a broker's
night-by-night output as it happens, replay without groups.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from plasticc_jax import gridding, interrupts, lightcurve_rows, processes, provenance
from plasticc_jax import replay_nights as nightly
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write_text,
    check_files_unchanged,
    folder_lock,
    fsync_folder,
    naming_failed_writes,
    remove_unfinished_writes,
)
from plasticc_jax.replay_input import ReplayInput, night_of
from plasticc_jax.replay_nights import Job
from plasticc_jax.scoring import Scorer

log = logging.getLogger(__name__)

GROUPS = "groups"  # the working folder under the output
REMOVING = ".groups-removed"  # the working folder, renamed once merged, while it is removed
PARTITION = "partition.json"  # written once the rows are partitioned: not done again on resume
OBJECT_NIGHTS = "object_nights.npz"  # a group's objects' first and closing nights, sorted
BLOCK_ROWS = 1 << 20  # rows read at a time while partitioning
OPEN_FILES_SPARE = 64  # files the process may need open beside the K group files
_ROW_SCHEMA = pa.schema(
    [(name, lightcurve_rows.LIGHTCURVE_TYPES[name]) for name in lightcurve_rows.ROW_COLUMNS]
    + [("position", pa.int64())]  # the row's place in the input (files in the order given)
)
_SUMMED = ("rows", "objects_with_data", "first_seen", "rescored", "flagged")


def group_of(object_id: np.ndarray, groups: int) -> np.ndarray:
    """(n,) the group of each object, from a hash of its id (ids in sequence, or in steps of
    `groups`, spread evenly)."""
    mixed = np.asarray(object_id, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(33)) % np.uint64(groups)).astype(np.int64)


def _rows_path(work: Path, group: int) -> Path:
    return work / f"rows-{group}.arrows"


def _group_folder(work: Path, group: int) -> Path:
    return work / f"group-{group}"


def allow_open_files(groups: int) -> None:
    """Let the process open a file per group (raising its soft limit up to the hard one).

    Raises:
        UserError: more groups than the hard limit on open files allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = groups + OPEN_FILES_SPARE
    if needed <= soft or soft == resource.RLIM_INFINITY:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        most = hard - OPEN_FILES_SPARE
        advice = f"give at most {most} groups" if most >= 2 else "raise that limit"
        raise UserError(
            f"--groups {groups}: a file per group is open at once, and this process may open "
            f"{hard} (`ulimit -Hn`); {advice}"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _refuse_not_a_folder(path: Path) -> None:
    """Refuse a file or a link where the replay keeps a folder of its own (never followed)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(
            f"{path} is not a folder this replay made: remove it or choose another --output"
        )


def remove_leftovers(output: Path) -> None:
    """Remove a working folder whose removal a kill interrupted (renamed first, so never one a
    replay still needs).

    Raises:
        UserError: something else has that name (a file or a link).
    """
    leftover = output / REMOVING
    _refuse_not_a_folder(leftover)
    if leftover.exists():
        shutil.rmtree(leftover)


def _remove_work(output: Path) -> None:
    os.replace(output / GROUPS, output / REMOVING)  # atomic: `groups/` is whole or gone
    fsync_folder(output)
    remove_leftovers(output)


def partition_rows(job: Job, work: Path) -> tuple[int, int] | None:
    """Partition the light-curve rows by object group into `work` (unless the finished partition
    of the same replay is there); returns the first and last nights of the rows with a usable MJD
    (None: no such row).

    Raises:
        UserError: `work` is a link, or holds what is not this replay's (another replay's
            partition, or files of one's own).
    """
    record = work / PARTITION
    _refuse_not_a_folder(work)
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            saved = None
        if isinstance(saved, dict) and saved.get("fingerprint") == job.fingerprint:
            night = saved["nights"]
            return None if night is None else (int(night[0]), int(night[1]))
        then = saved.get("settings", {}) if isinstance(saved, dict) else {}
        raise UserError(
            f"{work.parent} holds an unfinished replay of other inputs or settings "
            f"({nightly.what_differs(then, job.settings())}): choose another --output or remove it"
        )
    if work.exists():  # an interrupted partition: its group files, or its record's temporary one
        remove_unfinished_writes(work)
        theirs = [p.name for p in work.iterdir() if not _is_rows_file(p.name)]
        if theirs:
            raise UserError(
                f"{work} holds files this replay did not write ({', '.join(sorted(theirs)[:3])}): "
                "remove the folder or choose another --output"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        with naming_failed_writes(work):
            nights = _write_partition(job, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # useless half done; not left filling a disk
        raise
    settings = {"fingerprint": job.fingerprint, "nights": nights, "settings": job.settings()}
    atomic_write_text(record, json.dumps(settings))
    return None if nights is None else (nights[0], nights[1])


def _is_rows_file(name: str) -> bool:
    number = name.removeprefix("rows-").removesuffix(".arrows")
    return name.startswith("rows-") and name.endswith(".arrows") and number.isdigit()


def _write_partition(job: Job, work: Path) -> list[int] | None:
    """Write the group files; returns the first and last nights of a usable MJD."""
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    sinks = [pa.OSFile(str(_rows_path(work, g)), "wb") for g in range(job.groups)]
    writers = [pa.ipc.new_stream(sink, _ROW_SCHEMA, options=options) for sink in sinks]
    nights: list[int] | None = None
    position = 0
    try:
        for path in job.paths:
            for rows in lightcurve_rows.read_rows(Path(path), BLOCK_ROWS):
                interrupts.check()
                usable = rows.mjd[np.isfinite(rows.mjd) & ~gridding.outside_span(rows.mjd)]
                if usable.size:
                    low, high = night_of(np.array([usable.min(), usable.max()])).tolist()
                    if nights is not None:
                        low, high = min(nights[0], low), max(nights[1], high)
                    nights = [low, high]
                places = np.arange(position, position + len(rows))
                position += len(rows)
                group = group_of(rows.object_id, job.groups)
                order = np.argsort(group, kind="stable")  # input order kept within a group
                bounds = np.searchsorted(group[order], np.arange(job.groups + 1))
                for g in range(job.groups):
                    take = order[bounds[g] : bounds[g + 1]]
                    if take.size:
                        piece = rows.take(take)
                        columns = [getattr(piece, n) for n in lightcurve_rows.ROW_COLUMNS]
                        batch = pa.record_batch([*columns, places[take]], schema=_ROW_SCHEMA)
                        writers[g].write_batch(batch)
    finally:
        for writer, sink in zip(writers, sinks, strict=True):
            writer.close()
            sink.close()
    for g in range(job.groups):  # on disk before the record says the partition is done
        with open(_rows_path(work, g), "rb") as handle:
            os.fsync(handle.fileno())
    fsync_folder(work)
    return nights


def read_group(work: Path, group: int) -> tuple[lightcurve_rows.Rows, np.ndarray]:
    """A group's rows, in the input's order, and their places in the input."""
    with pa.OSFile(str(_rows_path(work, group))) as source:
        table = pa.ipc.open_stream(source).read_all()
    arrays = [table.column(n).to_numpy() for n in lightcurve_rows.ROW_COLUMNS]
    return lightcurve_rows.Rows(*arrays, 0), table.column("position").to_numpy()


def replay_groups(scorer: Scorer, job: Job, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The replay in `job.groups` groups, holding the output folder's lock (`replay.replay`).

    Raises:
        UserError: a `--last-night` before the input's first night, or a replay that cannot
            resume (its working folder removed, or holding another replay).
    """
    remove_leftovers(job.output)
    work = job.output / GROUPS
    if manifest is not None and int(manifest["finished_through"]) >= int(manifest["last_night"]):
        if work.exists():  # merged to the end, then killed before its working folder went
            _remove_work(job.output)
        return manifest
    if manifest is not None and not (work / PARTITION).is_file():
        raise UserError(
            f"{work} is missing, so the replay into {job.output} cannot resume: remove "
            f"{job.output} to replay from the start"
        )
    made_now = not (work / PARTITION).is_file()
    if made_now:
        allow_open_files(job.groups)
    t0 = time.perf_counter()
    # Before the partition: a mistake in the metadata is told at once, and leaves no partition
    # that the replay of the corrected file would have to refuse (found by an audit).
    metadata = nightly.read_metadata(scorer, job.metadata_paths)
    nights = partition_rows(job, work)
    try:
        if made_now:  # the inputs read to their ends: not written to since the replay started
            check_files_unchanged(job.stamps)
        if nights is not None:  # from every row's MJD: before objects are rejected at load
            nightly.check_last_night(job.last_night, *nights)
    except UserError:
        if made_now:  # nothing replayed from it: not left behind (earlier work is kept)
            shutil.rmtree(work)
        raise
    meta_group = group_of(metadata["object_id"].to_numpy(np.int64), job.groups)
    pending = [g for g in range(job.groups) if not _group_done(job, g)]
    if job.jobs == 1 or len(pending) < 2:
        for g in pending:
            _replay_group(scorer, job, g, metadata[meta_group == g], grid_ahead=True)
    else:  # each process loads the run once and replays its share of the groups in turn
        shares = [pending[i :: job.jobs] for i in range(min(job.jobs, len(pending)))]
        tasks = [
            (
                f"groups {', '.join(map(str, share))}",
                (scorer.run_dir, job, {g: metadata[meta_group == g] for g in share}),
            )
            for share in shares
        ]
        processes.run_tasks(_replay_groups_in_process, tasks, len(tasks))
    return _merge(scorer, job, manifest, t0)


def _group_job(job: Job, group: int) -> Job:
    """The replay of one group, into its own folder with its own manifest."""
    folder = _group_folder(job.output / GROUPS, group)
    return dataclasses.replace(job, output=folder, fingerprint=f"{job.fingerprint}/{group}")


def _group_done(job: Job, group: int) -> bool:
    group_job = _group_job(job, group)
    sub = nightly.read_manifest(group_job.output, group_job.fingerprint, {})
    done = sub is not None and int(sub["finished_through"]) >= nightly.stop_night(
        sub, job.last_night
    )
    return done and (group_job.output / OBJECT_NIGHTS).is_file()


def _replay_group(
    scorer: Scorer, job: Job, group: int, metadata: pd.DataFrame, grid_ahead: bool
) -> None:
    """Replay one group (from its last finished night), then record its objects' nights.
    `grid_ahead`: the next night gridded in a thread (not in `--jobs`' processes, which take
    the cores)."""
    group_job = _group_job(job, group)
    folder = group_job.output
    sub = nightly.read_manifest(folder, group_job.fingerprint, {})
    rows, positions = read_group(job.output / GROUPS, group)
    data = ReplayInput(rows, metadata, job.close_after, job.objects, positions)
    del rows, positions
    if sub is None:
        sub = nightly.new_manifest(scorer, group_job, nightly.loaded(data))
        nightly.start(folder, sub, data.rejected)
    replayed = nightly.replay_nights(
        scorer, data, folder, sub, job.last_night, job.age_threshold, job.split, grid_ahead
    )
    with atomic_path(folder / OBJECT_NIGHTS) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, first=np.sort(data.first_night), close=np.sort(data.close_night))
    rescored = sum(n["rescored"] for n in replayed)
    log.info(
        "group %d of %d: %d objects, %d re-scorings", group + 1, job.groups, data.ids.size, rescored
    )


def _replay_groups_in_process(
    run_dir: Path, job: Job, metadata_by_group: dict[int, pd.DataFrame]
) -> None:
    """`_replay_group` of each group in turn, in a process of its own (`--jobs`), with the run
    loaded there: the same model as the replay's, or a refusal (an `evaluate` may have rewritten
    the run since).

    Raises:
        UserError: the run's model is not the one the replay started with.
    """
    with folder_lock(run_dir, "replay", shared=True):
        if provenance.model_sha256(run_dir) != job.model:
            raise UserError(
                f"{run_dir} changed during the replay into {job.output} (trained or evaluated "
                "again), whose nights so far were scored with the run as it was: replay into "
                "another --output"
            )
        scorer = Scorer.load(run_dir)
    for group, metadata in metadata_by_group.items():
        # Its folder's lock: a process of an earlier, killed replay may not write there still.
        with folder_lock(_group_job(job, group).output, "replay"):
            _replay_group(scorer, job, group, metadata, grid_ahead=False)


def _merge(scorer: Scorer, job: Job, manifest: dict[str, Any] | None, t0: float) -> dict[str, Any]:
    """Merge the groups' nights into the output, from the night after its last merged one (`t0`:
    when the replay started, for the log)."""
    work = job.output / GROUPS
    folders = [_group_folder(work, g) for g in range(job.groups)]
    subs = [json.loads((f / nightly.MANIFEST).read_text()) for f in folders]
    totals = []
    for folder in folders:
        with np.load(folder / OBJECT_NIGHTS) as arrays:
            totals.append((arrays["first"], arrays["close"]))
    if manifest is None:
        with_rows = [s for s in subs if s["objects"]]
        rejected_at_load = sum((Counter(s["rejected_at_load"]) for s in subs), Counter())
        summed = ("objects", "rows", "reordered_objects", "repeating_objects", "left_out_objects")
        # (a group loaded by an older release has no `repeating_objects`)
        input_counts = {key: sum(int(s.get(key, 0)) for s in subs) for key in summed}
        input_counts.update(
            rejected_at_load={str(k): int(v) for k, v in rejected_at_load.items()},
            first_night=min((s["first_night"] for s in with_rows), default=0),
            last_night=max((s["last_night"] for s in with_rows), default=-1),
        )
        manifest = nightly.new_manifest(scorer, job, input_counts)
        listed = [pd.read_csv(f / nightly.REJECTED_AT_LOAD) for f in folders]
        nightly.start(job.output, manifest, pd.concat(listed, ignore_index=True))
        nightly.warn_repeating(manifest)
        if not manifest["rows"]:
            log.warning("no observations to replay in %s", ", ".join(map(str, job.paths)))
    by_night: dict[int, list[tuple[int, dict[str, Any]]]] = {}  # the groups with data a night
    for g, sub in enumerate(subs):
        for counts in sub["nights"]:
            by_night.setdefault(int(counts["night"]), []).append((g, counts))
    start_night = int(manifest["finished_through"]) + 1
    stop = nightly.stop_night(manifest, job.last_night)

    def night_files(night: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        with_data = by_night[night]
        candidates, rejected = _read_night([folders[g] for g, _ in with_data], night)
        counts = _merged_counts([c for _, c in with_data], night, rejected, totals)
        return candidates, rejected, counts

    merged = nightly.write_nights(
        job.output, manifest, job.last_night, by_night, night_files, scorer
    )
    if stop >= int(manifest["last_night"]):
        _remove_work(job.output)
    nightly.report(manifest, job.output, start_night, stop, merged, time.perf_counter() - t0)
    return manifest


def _read_night(folders: list[Path], night: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The groups' candidates of a night ranked together (ties by object_id, as a replay of
    every object at once orders them), and their rejections."""
    read = {}
    for name in (nightly.CANDIDATES, nightly.REJECTED):
        parts = [f / name / f"night={night}" / "part-0.parquet" for f in folders]
        frames = [pd.read_parquet(p) for p in parts if p.is_file()]
        read[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    candidates = read[nightly.CANDIDATES]
    if len(candidates):
        candidates = candidates.sort_values(
            ["anomaly_score", "object_id"], ascending=[False, True], kind="stable"
        ).reset_index(drop=True)
        candidates["rank"] = np.arange(1, len(candidates) + 1, dtype=np.int64)
    rejected = read[nightly.REJECTED]
    if not len(rejected):
        rejected = nightly.rejection_frame([], "", [])
    return candidates, rejected


def _merged_counts(
    entries: list[dict[str, Any]],
    night: int,
    rejected: pd.DataFrame,
    totals: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """A night's counts over every group (`NightScorer.night`'s), from those of the groups with
    data that night (`entries`) and every group's running totals."""
    counts: dict[str, Any] = {"night": night}
    counts.update({key: sum(int(e[key]) for e in entries) for key in _SUMMED})
    counts["rejected"] = {str(k): int(v) for k, v in Counter(rejected["reason"]).items()}
    seen = sum(int(np.searchsorted(first, night, side="right")) for first, _ in totals)
    closed = sum(int(np.searchsorted(close, night, side="right")) for _, close in totals)
    counts.update(seen=seen, open=seen - closed, closed=closed)
    return counts
