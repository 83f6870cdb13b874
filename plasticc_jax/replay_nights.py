"""The night-by-night loop of a replay (`plasticc_jax.replay`): a night's re-scoring
(`NightScorer`), its files, the manifest that records the nights finished, and the resumption
from it. A replay of every object at once (`replay`) and one in groups of objects
(`replay_groups`) both run it."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax import (
    early,
    gp_features,
    gridding,
    interrupts,
    provenance,
    readers,
    scoring,
    streaming,
)
from plasticc_jax.calibration import AgeThreshold
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write,
    atomic_write_text,
    fsync_folder,
    remove_unfinished_writes,
)
from plasticc_jax.replay_input import ReplayInput, rejection_frame
from plasticc_jax.score_output import SPLIT_NAME, note_unknown_classes
from plasticc_jax.scoring import Scorer
from plasticc_jax.threads import limited_threads

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_KEYS = {
    "fingerprint",
    "finished_through",
    "first_night",
    "last_night",
    "empty_nights",
    "nights",
}
REJECTED_AT_LOAD = "rejected_at_load.csv"
CANDIDATES, REJECTED = "candidates", "rejected"  # the night-partitioned datasets
CLOSED = "object closed"
# Nights with fewer objects to score run the tree ensembles in one thread.
PARALLEL_FROM = 4096


@dataclass
class _GriddedNight:
    """A night up to its objects' grids (`NightScorer._grid`): what is left is scoring them."""

    night: int
    counts: dict[str, Any]
    rejections: list[pd.DataFrame]
    new_rows: np.ndarray  # (objects,) each object's rows that night
    live: np.ndarray  # the objects gridded (positions in the input)
    # None where no object is left to grid:
    lengths: np.ndarray | None = None  # their rows so far
    ends: np.ndarray | None = None  # the row after each one's last so far
    chunk: gridding.Chunk | None = None
    result: gridding.GridResult | None = None


class NightScorer:
    """Scores one night: the objects with new rows, each with all its rows so far.

    Used as a context manager (`replay_nights`), it grids the next night with data in a thread
    while a night is scored (nights are asked for in order; the scores are the same)."""

    def __init__(
        self,
        data: ReplayInput,
        scorer: Scorer,
        age_threshold: AgeThreshold | None = None,
        split: str | None = None,
        last_night: int | None = None,
    ) -> None:
        self.data, self.scorer, self.age_threshold = data, scorer, age_threshold
        # The candidates' `split`: the run's split replayed (`--split`), else new objects.
        self.split = split or SPLIT_NAME
        self.spec = gridding.GridSpec.from_config(scorer.config.data)
        # Each object's Gaussian-process features as last fitted: reused on the nights whose
        # new points fall outside its window (the same features, exactly; `FitCache`).
        self.gp_cache = (
            gp_features.FitCache.for_objects(data.ids) if self.spec.gp_features else None
        )
        self.by_night = np.argsort(self.data.night, kind="stable")
        self.sorted_nights = self.data.night[self.by_night]
        self.sorted_first = np.sort(self.data.first_night)
        self.sorted_close = np.sort(self.data.close_night)
        # The nights gridded ahead: those with data up to `last_night` (None: every one).
        nights = np.unique(self.sorted_nights)
        self.nights_ahead = nights if last_night is None else nights[nights <= last_night]
        self._pool: ThreadPoolExecutor | None = None
        # The night gridded ahead, and the event that stops its fit (set on leaving the context:
        # a Ctrl-C waits for the fit's current call, not the whole night).
        self._ahead: tuple[int, Future[_GriddedNight], threading.Event] | None = None

    def __enter__(self) -> NightScorer:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="replay-grid")
        return self

    def __exit__(self, *_: object) -> None:
        pool, self._pool = self._pool, None
        if self._ahead is not None:
            self._ahead[2].set()  # a night not asked for yet is never used
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._ahead = None

    def night(self, night: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """(candidates, rejections, counts) of one night."""
        gridded = None
        if self._ahead is not None:
            # Gridding updates the Gaussian-process cache: one night at a time, in night order.
            ahead, future, _ = self._ahead
            self._ahead = None
            if ahead == night:
                gridded = future.result()
            else:
                future.exception()  # another night's, not asked for: waited for, not used
        if gridded is None:
            gridded = self._grid(night)
        if self._pool is not None:
            i = int(np.searchsorted(self.nights_ahead, night, side="right"))
            if i < self.nights_ahead.size:
                after, stop = int(self.nights_ahead[i]), threading.Event()
                self._ahead = (after, self._pool.submit(self._grid, after, stop), stop)
        return self._score(gridded)

    def _grid(self, night: int, stop: threading.Event | None = None) -> _GriddedNight:
        """The night's objects sorted out (closed, no metadata, not detected yet: rejected) and
        the others gridded with their rows so far. `stop`: see `gridding.grid_chunk`."""
        d = self.data
        lo, hi = np.searchsorted(self.sorted_nights, [night, night + 1])
        new = self.by_night[lo:hi]
        touched = np.unique(d.obj[new])
        counts: dict[str, Any] = {"night": night, "rows": int(new.size)}
        counts["objects_with_data"] = int(touched.size)
        counts["first_seen"] = int((d.first_night[touched] == night).sum())
        rejections: list[pd.DataFrame] = []
        new_rows = np.bincount(d.obj[new], minlength=d.ids.size)

        closed = d.close_night[touched] <= night
        if closed.any():
            objs = touched[closed]
            rejections.append(rejection_frame(d.ids[objs], CLOSED, new_rows[objs]))
        live = touched[~closed]
        found = np.zeros(live.size, bool)
        pos = np.zeros(live.size, np.int64)
        if live.size:
            pos, found = d.metadata.lookup(d.ids[live])
            if (~found).any():
                objs = live[~found]
                rejections.append(
                    rejection_frame(d.ids[objs], streaming.NO_METADATA, new_rows[objs])
                )
        live, pos = live[found], pos[found]
        # Impossible metadata values reject the object, as in `score` (`readers.METADATA_PROBLEMS`).
        problem = d.metadata.problem[pos] if live.size else np.zeros(0, np.int8)
        if problem.any():
            objs = live[problem != 0]
            reasons = [readers.METADATA_PROBLEMS[c] for c in problem[problem != 0]]
            rejections.append(rejection_frame(d.ids[objs], reasons, new_rows[objs]))
            live, pos = live[problem == 0], pos[problem == 0]
        # A broker scores an object from its first detection on: before it, the light curve is
        # non-detections only, which neither the model nor the threshold was fitted on.
        waiting = d.detection_night[live] > night
        if waiting.any():
            objs = live[waiting]
            # Not detected yet, unless a bad value came first: that value is the reason.
            reasons = np.full(objs.size, gridding.NOT_DETECTED, object)
            bad = d.problem_night[objs] <= night
            if bad.any():
                codes = early.not_detected_codes(d.rows_so_far(objs[bad], night)[0])
                reasons[bad] = [gridding.REASONS[c] for c in codes]
            rejections.append(rejection_frame(d.ids[objs], reasons, new_rows[objs]))
            live, pos = live[~waiting], pos[~waiting]

        gridded = _GriddedNight(night, counts, rejections, new_rows, live)
        if live.size:
            so_far, gridded.ends = d.rows_so_far(live, night)
            gridded.lengths = np.diff(np.r_[so_far.starts, len(so_far.rows)])
            gridded.chunk = gridding.Chunk(
                so_far.rows, so_far.starts, d.metadata.values[pos], d.metadata.target[pos]
            )
            gridded.result = gridding.grid_chunk(gridded.chunk, self.spec, self.gp_cache, stop)
        return gridded

    def _score(self, g: _GriddedNight) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """The night's gridded objects scored and ranked; its counts completed."""
        d, night, counts, rejections = self.data, g.night, g.counts, g.rejections
        frame = None
        if g.result is not None:
            result = g.result
            if result.rejected_ids.size:
                reasons = [
                    gridding.rejection_reason(c, self.spec.min_observations)
                    for c in result.rejected_codes
                ]
                objs = np.searchsorted(d.ids, result.rejected_ids)
                rejections.append(rejection_frame(result.rejected_ids, reasons, g.new_rows[objs]))
            if len(result.arrays):
                accepted = ~np.isin(d.ids[g.live], result.rejected_ids)
                first = early.first_detection(g.chunk)[accepted]
                last = d.rows.mjd[g.ends - 1][accepted]
                # Small nights: one thread (OpenMP's start-up in the tree ensembles costs more
                # than it saves on a few objects; measured 3x faster on 2 busy cores).
                threads = 1 if len(result.arrays) < PARALLEL_FROM else None
                with limited_threads(threads):
                    frame, unscorable = self.scorer.table(result.arrays, self.split)
                if len(unscorable):  # non-finite model outputs or a NaN score, as in `score`
                    ids = unscorable["object_id"].to_numpy(np.int64)
                    objs = np.searchsorted(d.ids, ids)
                    rejections.append(rejection_frame(ids, unscorable["reason"], g.new_rows[objs]))
                # The table keeps the order of the gridded objects it scored.
                scored = np.isin(result.arrays.object_id, frame["object_id"].to_numpy())
                frame.insert(1, "night", np.int64(night))
                frame.insert(2, "n_obs", g.lengths[accepted][scored].astype(np.int64))
                frame.insert(3, "days_since_detection", (last - first)[scored])
                if self.age_threshold is not None:  # `--threshold-from`: set on a val replay
                    scoring.flag_by_age(frame, self.age_threshold)
                frame = frame.sort_values("anomaly_score", ascending=False, kind="stable")
                frame.insert(
                    scoring.rank_position(list(frame.columns)),
                    "rank",
                    np.arange(1, len(frame) + 1, dtype=np.int64),
                )
                frame = frame.reset_index(drop=True)
        rejected = (
            pd.concat(rejections, ignore_index=True) if rejections else rejection_frame([], "", [])
        )
        counts["rescored"] = 0 if frame is None else len(frame)
        counts["flagged"] = 0 if frame is None else int(frame["flagged"].sum())
        counts["rejected"] = {str(k): int(v) for k, v in Counter(rejected["reason"]).items()}
        seen = int(np.searchsorted(self.sorted_first, night, side="right"))
        closed_total = int(np.searchsorted(self.sorted_close, night, side="right"))
        counts.update(seen=seen, open=seen - closed_total, closed=closed_total)
        return frame if frame is not None else pd.DataFrame(), rejected, counts


def clear_unfinished(output: Path, finished_through: int) -> None:
    """Remove what an interrupted replay left past its manifest's last finished night: the
    temporary files of an interrupted write, and the files of nights written before a kill
    that came before the manifest named them (those nights are replayed again)."""
    remove_unfinished_writes(output, f"{CANDIDATES}/night=*", f"{REJECTED}/night=*")
    for part in [*output.glob(f"{CANDIDATES}/night=*"), *output.glob(f"{REJECTED}/night=*")]:
        number = part.name.removeprefix("night=")
        if number.lstrip("-").isdigit() and int(number) > finished_through:
            shutil.rmtree(part)


def check_counts(counts: dict[str, Any]) -> None:
    """Every object with data is re-scored or rejected; every seen object is open or closed.

    Raises:
        RuntimeError: the counts do not add up (a bug, never the input's fault).
    """
    rejected = sum(counts["rejected"].values())
    if counts["objects_with_data"] != counts["rescored"] + rejected:
        raise RuntimeError(f"night {counts['night']}: counts do not add up: {counts}")
    if counts["seen"] != counts["open"] + counts["closed"]:
        raise RuntimeError(f"night {counts['night']}: seen != open + closed: {counts}")


def _write_parquet(
    frame: pd.DataFrame, path: Path, checkpoint: Mapping[str, object] | None = None
) -> None:
    """Write atomically and durably (the file, its night folder and that folder's entry): on
    disk before the manifest names the night. With `checkpoint`, the file names it, as a score
    table does (`provenance.write_parquet`)."""
    if checkpoint is None:
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: provenance.write_parquet(frame, handle, checkpoint))
    fsync_folder(path.parent)
    fsync_folder(path.parent.parent)


def write_night(
    out: Path,
    night: int,
    candidates: pd.DataFrame,
    rejected: pd.DataFrame,
    checkpoint: Mapping[str, object],
) -> None:
    """A night's partition files (each atomically). The night is the partition's key
    (`night=<N>` folders, Hive style), not a column of the file, so the folder reads as one
    dataset (`pd.read_parquet(out / "candidates")`) with a `night` column. The candidates name
    the run's `checkpoint` (their latents' space), as `score`'s tables do."""
    if len(candidates):
        candidates = candidates.drop(columns="night", errors="ignore")
        path = out / CANDIDATES / f"night={night}" / "part-0.parquet"
        _write_parquet(candidates, path, checkpoint)
    if len(rejected):
        _write_parquet(rejected, out / REJECTED / f"night={night}" / "part-0.parquet")


def read_manifest(output: Path, fingerprint: str, now: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of an unfinished replay into `output` to resume (None: a new replay).

    Raises:
        UserError: a damaged manifest, one of other inputs or settings, or night files without a
            manifest (another tool's, or a replay's whose manifest was removed).
    """
    path = output / MANIFEST
    if not path.exists():
        written = [f for name in (CANDIDATES, REJECTED) for f in (output / name).rglob("*")]
        if any(f.is_file() for f in written):
            raise UserError(
                f"{output} holds night files but no {MANIFEST}: not a replay this command can "
                "resume; remove it or choose another --output"
            )
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not set(manifest) >= MANIFEST_KEYS:
        raise UserError(
            f"{path} is damaged (not a replay's manifest): remove {output} to replay from the "
            "start, or choose another --output"
        )
    if manifest.get("fingerprint") != fingerprint:
        differs = what_differs(manifest, now)
        raise UserError(
            f"{output} holds a replay of other inputs or settings ({differs}): choose another "
            "--output or remove it (a replay resumes only the inputs it began with: a file grown "
            "by new nights is replayed from its start, into another folder)"
        )
    return manifest


def what_differs(manifest: dict[str, Any], now: dict[str, Any]) -> str:
    """What the manifest records differently from this replay's inputs and settings (names and
    `--close-after`; else their contents, the run's evaluation or `--split`)."""
    then = {key: manifest.get(key, 1 if key == "groups" else None) for key in now}  # 1: before
    differ = [
        f"{key}: {then[key]} then, {value} now" for key, value in now.items() if then[key] != value
    ]
    return "; ".join(differ) or "the same names, but other contents, run or --split"


def read_metadata(scorer: Scorer, metadata_paths: Sequence[Path]) -> pd.DataFrame:
    """The replay's metadata files as `score` reads them: labels optional, classes the run does
    not know noted."""
    metadata = readers.labels_optional(readers.read_metadata_files(metadata_paths))
    note_unknown_classes(metadata, scorer.config.data)
    return metadata


def check_last_night(last_night: int | None, first: int, last: int) -> None:
    """Refuse a `--last-night` that is a Julian date or before the input's first night
    (`first`, `last`: its nights)."""
    if last_night is None:
        return
    if early.looks_like_julian_date(last_night):
        # `--last-night 2459700` replayed the whole input as if the night were given.
        raise UserError(
            f"--last-night {last_night} looks like a Julian date: give the night, floor(MJD - "
            f"0.5) ({int(np.floor(last_night - early.JD_OFFSET - 0.5))}; {first} to {last} here)"
        )
    if last_night < first:
        # `--last-night 10` (ten nights?) replayed nothing and said the output was finished.
        raise UserError(
            f"--last-night {last_night}: before the input's first night, {first} (nights are "
            f"floor(MJD - 0.5): {first} to {last} here)"
        )


@dataclass(frozen=True)
class Job:
    """What a replay is asked to do: its input, output and settings (`replay.replay`'s)."""

    paths: list[Path]
    metadata_paths: list[Path]
    output: Path
    fingerprint: str
    close_after: float | None
    objects: np.ndarray | None
    last_night: int | None
    groups: int
    model: str | None = None  # the run's, `provenance.model_sha256`
    # The split whose objects are replayed (`--split`), and its dataset's fingerprint.
    split: str | None = None
    dataset: str | None = None
    # Thresholds set on a replay of the val split (`--threshold-from`), and that replay's folder.
    age_threshold: AgeThreshold | None = None
    threshold_from: Path | None = None
    jobs: int = 1  # groups replayed at once, each in a process of its own (`--jobs`)
    # Each input's size and modification time when the replay started (`io_utils.file_stamps`):
    # once read, an input written to since is refused (a copy still going, as `score` does).
    stamps: dict[Path, tuple[int, int]] | None = None

    def settings(self) -> dict[str, Any]:
        """What a manifest records of the inputs and settings, named in a refusal to resume."""
        return {
            "inputs": [p.name for p in self.paths],
            "metadata": [p.name for p in self.metadata_paths],
            "close_after_days": self.close_after,
            "groups": self.groups,
            "split": self.split,
            "threshold_from": None if self.threshold_from is None else str(self.threshold_from),
        }


def loaded(data: ReplayInput) -> dict[str, Any]:
    """What a manifest records of the input as loaded: its objects and rows, those rejected at
    load (by reason) and its first and last nights."""
    first, last = data.nights
    return {
        "objects": int(data.ids.size),
        "rows": len(data.rows),
        "reordered_objects": data.reordered,
        "repeating_objects": data.repeating,
        "left_out_objects": data.left_out,
        "rejected_at_load": {
            str(k): int(v) for k, v in data.rejected["reason"].value_counts().items()
        },
        "first_night": first,
        "last_night": last,
    }


def new_manifest(scorer: Scorer, job: Job, input_counts: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a replay not started yet: the input, the settings, the run's model (the
    SHA-256 of its detector record, `provenance.model_sha256`), the dataset whose split was
    replayed and its number of objects, and what was loaded (`loaded`); no night finished.
    `threshold`: the detector's, or with `--threshold-from` the thresholds set on the val
    split's replay (`age_threshold`)."""
    threshold = job.age_threshold or scorer.detector.threshold
    return {
        "fingerprint": job.fingerprint,
        "run": str(scorer.run_dir),
        "model": job.model,
        "dataset": job.dataset,
        "split_objects": None if job.objects is None else int(np.unique(job.objects).size),
        **job.settings(),
        "night_definition": "floor(mjd - 0.5): noon to noon UTC",
        "threshold": threshold.to_json(),
        **input_counts,
        "finished_through": input_counts["first_night"] - 1,
        "empty_nights": 0,
        "nights": [],
    }


def warn_repeating(manifest: dict[str, Any]) -> None:
    """Say at the start, not only at the end, that objects repeat a row (rejected from then on):
    most of them are the same rows given twice (found by a review: a file and its copy replayed
    every night to reject every object)."""
    repeating, objects = int(manifest.get("repeating_objects", 0)), int(manifest["objects"])
    if repeating:
        log.warning(
            "%d of the %d objects have two rows of the same mjd and passband: each is rejected on "
            "every night from then on%s",
            repeating,
            objects,
            " (the same rows given twice: a file and its copy, a .csv beside its .csv.gz?)"
            if 2 * repeating >= objects
            else "",
        )


def start(output: Path, manifest: dict[str, Any], rejected_at_load: pd.DataFrame) -> None:
    """Write a new replay's list of objects rejected at load, then its manifest."""
    with atomic_path(output / REJECTED_AT_LOAD) as tmp:
        rejected_at_load.to_csv(tmp, index=False)
    atomic_write_text(output / MANIFEST, json.dumps(manifest) + "\n")


def stop_night(manifest: dict[str, Any], last_night: int | None) -> int:
    last = int(manifest["last_night"])
    return last if last_night is None else min(last, int(last_night))


def replay_nights(
    scorer: Scorer,
    data: ReplayInput,
    output: Path,
    manifest: dict[str, Any],
    last_night: int | None,
    age_threshold: AgeThreshold | None = None,
    split: str | None = None,
    grid_ahead: bool = True,
) -> list[dict[str, Any]]:
    """Replay `data` into `output` from the night after the manifest's last finished one, writing
    each night's files, then the manifest; returns the counts of the nights replayed. Flagged by
    `age_threshold` where given (`--threshold-from`), else by the detector's threshold; `split`:
    the run's split replayed (`--split`; None: new objects). `grid_ahead`: the next night gridded
    in a thread while one is scored (`NightScorer`; not where processes share the cores)."""
    through = stop_night(manifest, last_night)  # the last night to replay
    night_scorer = NightScorer(data, scorer, age_threshold, split, last_night=through)
    nights = set(np.unique(data.night).tolist())
    with night_scorer if grid_ahead else nullcontext():
        return write_nights(output, manifest, last_night, nights, night_scorer.night, scorer)


def write_nights(
    output: Path,
    manifest: dict[str, Any],
    last_night: int | None,
    nights_with_data: Container[int],
    night_files: Callable[[int], tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]],
    scorer: Scorer,
) -> list[dict[str, Any]]:
    """Write each night from the one after the manifest's last finished night (what a kill left
    past it removed first): its files (`night_files(night)`: candidates, rejections, counts),
    checked, then the manifest naming it; a night without data is counted. Returns the counts
    of the nights written."""
    clear_unfinished(output, int(manifest["finished_through"]))
    start_night = int(manifest["finished_through"]) + 1
    stop = stop_night(manifest, last_night)
    written = []
    for night in range(start_night, stop + 1):
        interrupts.check()  # a Ctrl-C swallowed in JAX's garbage collection: stop between nights
        has_data = night in nights_with_data
        if not has_data:
            manifest["empty_nights"] += 1
        else:
            candidates, rejected, counts = night_files(night)
            check_counts(counts)
            write_night(output, night, candidates, rejected, scorer.checkpoint)
            manifest["nights"].append(counts)
            written.append(counts)
        manifest["finished_through"] = night
        if has_data or night == stop:
            atomic_write_text(output / MANIFEST, json.dumps(manifest) + "\n")
    return written


def rejection_reasons(output: Path) -> Counter[str]:
    """The objects of a replay's nightly rejections, counted by reason (an object rejected for
    two reasons on different nights counts under each)."""
    nightly = pd.read_parquet(output / REJECTED, columns=["object_id", "reason"])
    return Counter(nightly.drop_duplicates()["reason"].astype(str).tolist())


def report(
    manifest: dict[str, Any],
    output: Path,
    start_night: int,
    stop: int,
    replayed: list[dict[str, Any]],
    seconds: float,
) -> None:
    """Log what a replay did (and warn if every object with data was rejected)."""
    if manifest["nights"] and not any(n["rescored"] for n in manifest["nights"]):
        log.warning(
            "no object was scored on any night: every object with data was rejected (objects by "
            "reason: %s; see %s)",
            ", ".join(f"{n} {reason}" for reason, n in rejection_reasons(output).most_common()),
            output / REJECTED,
        )
    if start_night > stop:
        if manifest["objects"]:
            log.info("%s is finished through night %d: nothing to replay", output, start_night - 1)
        return
    rescored = sum(n["rescored"] for n in replayed)
    empty_nights = stop - start_night + 1 - len(replayed)  # this run's, not a resumed one's all
    log.info(
        "replayed nights %d-%d into %s: %d objects re-scored in %.1f s (%.0f/s), %d empty nights",
        start_night,
        stop,
        output,
        rescored,
        seconds,
        rescored / max(seconds, 1e-9),
        empty_nights,
    )
