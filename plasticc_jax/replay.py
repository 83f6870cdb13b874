"""`plasticc-jax replay`: replay light-curve files night by night, as a broker would see them.

Each night, the objects that received observations that night are re-scored with everything known
about them so far (all their observations up to and including that night, gridded and scored as
`score` does: `early` explains why the same code path serves partial light curves), and that
night's candidates are written. Nothing else is re-scored: an object's score changes only when its
light curve does. The input, sorted and indexed by night, is `plasticc_jax.replay_input`.

**Nights.** night = floor(mjd - 0.5): a night runs from noon to noon UTC. LSST (Chile, UTC-3/-4)
observes from about 23h to 11h UTC, and PLAsTiCC's MJDs have no observation between 0.45 and 0.9
of a day, so no observing night is cut in two. Every night from the first to the last of the input
is processed in order; a night without data is counted (`empty_nights`) and has no files.

**Closing** (`close_after`, days; None: never). An object closes once `close_after` nights pass
without an observation of it; later observations of a closed object are rejected for it with the
reason `object closed`, counted, and listed (none are silently dropped). Closing is a property of
the data (the first gap longer than `close_after`), not of the replay's history, so a resumed
replay closes the same objects.

**From the first detection.** As a broker sends alerts only on detections, an object is scored
from the night of its first detection on (its first point flagged `detected` or with flux/flux_err
>= 5, whichever comes first, `early.detected`; the evaluation's stages count days from
`early.first_detection`, which prefers the first flagged point: docs/early.md). On a night
with data before it, the object is listed with the reason `not detected yet` (and re-tried on its
next night with data), unless its rows so far hold a bad value, which is then the reason; an
object never detected is never scored. Before this rule the replay
scored those light curves of non-detections, which the model and the threshold never saw, and
flagged many of them (docs/early.md).

**Bad input.** Rows out of time order within an object (or an object's rows spread through the
file) are sorted: the replay reads the files whole and orders each object's rows by time; the
manifest counts the objects that needed it (`reordered_objects`). An object with a row whose MJD
is not finite, or lies far outside the survey (`gridding.OUTSIDE_SPAN`: a JD given as MJD would
make millions of nights), cannot be placed in a night: it is rejected at load (`rejected_at_load`,
and in `rejected_at_load.csv`), as is an object of the metadata without a single row (`metadata
without light curve`). Any other bad value (NaN flux, bad passband, duplicated rows, too few
observations so far, no metadata) rejects the object for that night, with its reason, as `score`
would; it is re-tried on its next night with data. An object seen for the first time late in the
survey is simply new that night (`first_seen`).

**Outputs** in the output folder:

- `candidates/night=<N>/part-0.parquet`: every object re-scored that night, ranked (`rank` 1 =
  most anomalous that night), with `flagged` (above the run's threshold), `night`, `n_obs` (its
  observations so far) and `days_since_detection` (its latest observation minus its first
  detection, `early.first_detection`); one Parquet dataset partitioned by night. The columns
  are `score`'s (`scoring.Scorer.table`: only the components of the detector's fusion, which
  are all `anomaly_score` needs; an object whose score would be NaN is rejected for the night),
  and so is the file's metadata, which names the run's checkpoint (`scoring.table_checkpoint`);
- `rejected/night=<N>/part-0.parquet`: object_id, reason, n_rows of that night's rejections;
- `manifest.json`, rewritten after each night: the input, the settings, the objects rejected at
  load (by reason) and, with `objects`, those of the input left out (`left_out_objects`),
  `finished_through` (the last finished night) and per night with data its counts: `rows`,
  `objects_with_data`, `first_seen`, `rescored`, `flagged`, `rejected` (by reason), and the
  running totals `seen`, `open`, `closed`. Every night `objects_with_data == rescored +
  sum(rejected)` and `seen == open + closed`, checked before the manifest is written.

**Resume.** A night's files are written atomically (temporary name, then rename), then the
manifest: after an interruption (even kill -9) the manifest names the last night whose files are
complete, and a new run with the same inputs and settings continues from the night after it
(files of an unfinished night are overwritten, temporary files of an interrupted write removed).
Other inputs (light curves or metadata), settings or a run evaluated again are refused, as is an
output folder that holds an input where the replay writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax import (
    early,
    gridding,
    interrupts,
    lightcurve_rows,
    provenance,
    readers,
    runs,
    scoring,
    streaming,
)
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write,
    atomic_write_text,
    check_input_files,
    folder_lock,
    fsync_folder,
    make_output_folder,
    remove_unfinished_writes,
    sha256_file,
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
# Longer than any survey: a larger --close-after would overflow the night arithmetic.
MAX_CLOSE_AFTER = 36_525.0
CLOSED = "object closed"
# Nights with fewer objects to score run the tree ensembles in one thread.
PARALLEL_FROM = 4096


def _fingerprint(
    run_dir: Path,
    paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    close_after: float | None,
    objects: np.ndarray | None,
) -> str:
    """What a replay's outputs depend on: the run (its path, and the checkpoint and detector
    that `models/provenance.json` records), every input file's content and the settings."""
    record = Path(run_dir) / "models" / provenance.RECORD
    blob = {
        "run": str(Path(run_dir).resolve()),
        "model": sha256_file(record) if record.is_file() else None,
        "inputs": [(Path(p).name, sha256_file(Path(p))) for p in [*paths, *metadata_paths]],
        "close_after": close_after,
        "objects": None
        if objects is None
        else hashlib.sha256(np.sort(np.asarray(objects, np.int64)).tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


class NightScorer:
    """Scores one night: the objects with new rows, each with all its rows so far."""

    def __init__(self, data: ReplayInput, scorer: Scorer) -> None:
        self.data, self.scorer = data, scorer
        self.spec = gridding.GridSpec.from_config(scorer.config.data)
        self.by_night = np.argsort(self.data.night, kind="stable")
        self.sorted_nights = self.data.night[self.by_night]
        self.sorted_first = np.sort(self.data.first_night)
        self.sorted_close = np.sort(self.data.close_night)

    def night(self, night: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """(candidates, rejections, counts) of one night."""
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

        frame = None
        if live.size:
            so_far, ends = d.rows_so_far(live, night)
            lengths = np.diff(np.r_[so_far.starts, len(so_far.rows)])
            chunk = gridding.Chunk(
                so_far.rows, so_far.starts, d.metadata.values[pos], d.metadata.target[pos]
            )
            result = gridding.grid_chunk(chunk, self.spec)
            if result.rejected_ids.size:
                reasons = [
                    gridding.rejection_reason(c, self.spec.min_observations)
                    for c in result.rejected_codes
                ]
                objs = np.searchsorted(d.ids, result.rejected_ids)
                rejections.append(rejection_frame(result.rejected_ids, reasons, new_rows[objs]))
            if len(result.arrays):
                accepted = ~np.isin(d.ids[live], result.rejected_ids)
                first = early.first_detection(chunk)[accepted]
                last = d.rows.mjd[ends - 1][accepted]
                # Small nights: one thread (OpenMP's start-up in the tree ensembles costs more
                # than it saves on a few objects; measured 3x faster on 2 busy cores).
                threads = 1 if len(result.arrays) < PARALLEL_FROM else None
                with limited_threads(threads):
                    frame, unscorable = self.scorer.table(result.arrays, SPLIT_NAME)
                if len(unscorable):  # non-finite model outputs or a NaN score, as in `score`
                    ids = unscorable["object_id"].to_numpy(np.int64)
                    objs = np.searchsorted(d.ids, ids)
                    rejections.append(rejection_frame(ids, unscorable["reason"], new_rows[objs]))
                # The table keeps the order of the gridded objects it scored.
                scored = np.isin(result.arrays.object_id, frame["object_id"].to_numpy())
                frame.insert(1, "night", np.int64(night))
                frame.insert(2, "n_obs", lengths[accepted][scored].astype(np.int64))
                frame.insert(3, "days_since_detection", (last - first)[scored])
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


def _refuse_inputs_in_output(output: Path, inputs: Sequence[Path]) -> None:
    """No input may be one of the files a replay writes, nor lie in its night folders."""
    written = [output / MANIFEST, output / REJECTED_AT_LOAD]
    folders = [(output / name).resolve() for name in (CANDIDATES, REJECTED)]
    for path in inputs:
        target = path.resolve()
        if any(target == w.resolve() for w in written) or any(
            target.is_relative_to(f) for f in folders
        ):
            raise UserError(
                f"--output {output}: the replay would overwrite the input {path}; choose "
                "another output folder"
            )


def _remove_nights_after(output: Path, night: int) -> None:
    """Night files past the manifest's last finished night (written, then a kill before the
    manifest named them): the nights are replayed again, and nothing of them may linger."""
    for part in [*output.glob(f"{CANDIDATES}/night=*"), *output.glob(f"{REJECTED}/night=*")]:
        number = part.name.removeprefix("night=")
        if number.lstrip("-").isdigit() and int(number) > night:
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
    table does (`scoring.write_parquet`)."""
    if checkpoint is None:
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: scoring.write_parquet(frame, handle, checkpoint))
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


def replay(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    *,
    close_after: float | None = None,
    objects: np.ndarray | None = None,
    last_night: int | None = None,
) -> dict[str, Any]:
    """Replay the files night by night with a trained, evaluated run; returns the manifest.

    Args:
        run_dir: run directory (after `train` and `evaluate`).
        lightcurve_paths, metadata_paths: the input (any row order; read whole).
        output: the output folder (created; an unfinished replay of the same input resumes).
        close_after: nights without an observation after which an object closes (None: never).
        objects: replay only these object ids (e.g. a prepared split's).
        last_night: stop after this night (None: the input's last).

    Raises:
        UserError: not an evaluated run, a missing file, or an output folder holding a replay
            of other inputs or settings.
    """
    run_dir, output = Path(run_dir), Path(output)
    paths = [Path(p) for p in lightcurve_paths]
    metadata_paths = [Path(p) for p in metadata_paths]
    check_input_files([*paths, *metadata_paths])
    # Whole nights are counted: a fraction below 1 would close an object seen on consecutive
    # nights, as 0 would.
    if close_after is not None and not 1 <= close_after <= MAX_CLOSE_AFTER:
        raise UserError(
            f"--close-after {close_after}: give a number of nights from 1 to "
            f"{MAX_CLOSE_AFTER:g} (leave it out never to close)"
        )
    _refuse_inputs_in_output(output, [*paths, *metadata_paths])
    for path in paths:
        if not lightcurve_rows.has_rows(path):
            raise lightcurve_rows.no_rows_error(path)
    # As `score --output`: not the run itself, none of its files, nothing inside its folders.
    run_files, run_folders = runs.protected_paths(run_dir)
    target = output.resolve()
    if target in {p.resolve() for p in [run_dir, *run_files]} or any(
        target.is_relative_to(f.resolve()) for f in run_folders
    ):
        raise UserError(f"--output {output} is, or lies in, a part of the run {run_dir}")
    created = [f for f in [output, *output.parents] if not f.exists()]  # leaf first
    make_output_folder(output)  # a path where no folder can be made: said before the run loads
    try:
        with folder_lock(run_dir, "replay", shared=True):  # no evaluate rewrites it meanwhile
            fingerprint = _fingerprint(run_dir, paths, metadata_paths, close_after, objects)
            scorer = Scorer.load(run_dir)  # checked: complete, evaluated, its detector
    except UserError:
        for folder in created:  # a refused run leaves no empty folders behind
            folder.rmdir()
        raise
    # One replay an output folder: a second one at once would mix its nights with this one's.
    with folder_lock(output, "replay"):
        now = {
            "inputs": [p.name for p in paths],
            "metadata": [p.name for p in metadata_paths],
            "close_after_days": close_after,
        }
        manifest = _read_manifest(output, fingerprint, now)
        return _replay(
            scorer,
            paths,
            metadata_paths,
            output,
            manifest,
            fingerprint,
            close_after,
            objects,
            last_night,
        )


def _read_manifest(output: Path, fingerprint: str, now: dict[str, Any]) -> dict[str, Any] | None:
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
        differs = _what_differs(manifest, now)
        raise UserError(
            f"{output} holds a replay of other inputs or settings ({differs}): choose another "
            "--output or remove it"
        )
    return manifest


def _what_differs(manifest: dict[str, Any], now: dict[str, Any]) -> str:
    """What the manifest records differently from this replay's inputs and settings (names and
    `--close-after`; else their contents, the run's evaluation or `--split`)."""
    differ = [
        f"{key}: {manifest.get(key)} then, {value} now"
        for key, value in now.items()
        if manifest.get(key) != value
    ]
    return "; ".join(differ) or "the same names, but other contents, run or --split"


def _replay(
    scorer: Scorer,
    paths: list[Path],
    metadata_paths: list[Path],
    output: Path,
    manifest: dict[str, Any] | None,
    fingerprint: str,
    close_after: float | None,
    objects: np.ndarray | None,
    last_night: int | None,
) -> dict[str, Any]:
    """The replay itself, holding the output folder's lock."""
    manifest_path = output / MANIFEST
    run_dir = scorer.run_dir
    detector = scorer.detector
    metadata = readers.labels_optional(readers.read_metadata_files(metadata_paths))
    note_unknown_classes(metadata, scorer.config.data)
    data = ReplayInput(lightcurve_rows.read_files(paths), metadata, close_after, objects)
    first, last = data.nights
    if last_night is not None and len(data.rows) and last_night < first:
        # `--last-night 10` (ten nights?) replayed nothing and said the output was finished.
        raise UserError(
            f"--last-night {last_night}: before the input's first night, {first} (nights are "
            f"floor(MJD - 0.5): {first} to {last} here)"
        )
    if not len(data.rows):
        log.warning(
            "no observations to replay in %s%s",
            ", ".join(map(str, paths)),
            f" ({len(data.rejected)} objects rejected at load)" if len(data.rejected) else "",
        )
    if manifest is None:
        manifest = {
            "fingerprint": fingerprint,
            "run": str(run_dir),
            "inputs": [p.name for p in paths],
            "metadata": [p.name for p in metadata_paths],
            "night_definition": "floor(mjd - 0.5): noon to noon UTC",
            "close_after_days": close_after,
            "threshold": detector.threshold,
            "objects": int(data.ids.size),
            "rows": len(data.rows),
            "reordered_objects": data.reordered,
            "left_out_objects": data.left_out,
            "rejected_at_load": {
                str(k): int(v) for k, v in data.rejected["reason"].value_counts().items()
            },
            "first_night": first,
            "last_night": last,
            "finished_through": first - 1,
            "empty_nights": 0,
            "nights": [],
        }
        with atomic_path(output / REJECTED_AT_LOAD) as tmp:
            data.rejected.to_csv(tmp, index=False)
        atomic_write_text(manifest_path, json.dumps(manifest) + "\n")
    remove_unfinished_writes(output, f"{CANDIDATES}/night=*", f"{REJECTED}/night=*")
    _remove_nights_after(output, int(manifest["finished_through"]))
    start_night = int(manifest["finished_through"]) + 1
    stop = last if last_night is None else min(last, int(last_night))
    if start_night > first:
        log.info("resuming %s after night %d", output, start_night - 1)
    night_scorer = NightScorer(data, scorer)
    has_data = np.zeros(max(last - first + 1, 0), bool)
    has_data[data.night - first] = True
    t0, rescored = time.perf_counter(), 0
    for night in range(start_night, stop + 1):
        interrupts.check()  # a Ctrl-C swallowed in JAX's garbage collection: stop between nights
        if not has_data[night - first]:
            manifest["empty_nights"] += 1
        else:
            candidates, rejected, counts = night_scorer.night(night)
            check_counts(counts)
            write_night(output, night, candidates, rejected, scorer.checkpoint)
            manifest["nights"].append(counts)
            rescored += counts["rescored"]
        manifest["finished_through"] = night
        if has_data[night - first] or night == stop:
            atomic_write_text(manifest_path, json.dumps(manifest) + "\n")
    seconds = time.perf_counter() - t0
    if manifest["nights"] and not any(n["rescored"] for n in manifest["nights"]):
        log.warning(
            "no object was scored on any night: every object with data was rejected (the reasons "
            "are in %s; the same rows given twice, say)",
            output / REJECTED,
        )
    if start_night > stop:
        if len(data.rows):
            log.info("%s is finished through night %d: nothing to replay", output, start_night - 1)
        return manifest
    log.info(
        "replayed nights %d-%d into %s: %d objects re-scored in %.1f s (%.0f/s), %d empty nights",
        start_night,
        stop,
        output,
        rescored,
        seconds,
        rescored / max(seconds, 1e-9),
        manifest["empty_nights"],
    )
    return manifest
