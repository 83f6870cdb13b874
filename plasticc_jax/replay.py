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
file) are sorted: the replay reads the files whole (or one group of objects at a time, with
`groups`: `plasticc_jax.replay_groups`) and orders each object's rows by time; the
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
  most anomalous that night), with `flagged` (above the run's threshold; with
  `threshold_from_replay`, above thresholds set per age and depth on a replay of the run's val
  split: `replay_thresholds.threshold_from`, docs/early.md), `night`, `n_obs` (its
  observations so far), `days_since_detection` (its latest observation minus its first
  detection, `early.first_detection`) and `split` (the `split` replayed, else `new`); one
  Parquet dataset partitioned by night. The columns
  are `score`'s (`scoring.Scorer.table`: only the components of the detector's fusion, which
  are all `anomaly_score` needs; an object whose score would be NaN is rejected for the night),
  and so is the file's metadata, which names the run's checkpoint (`provenance.table_checkpoint`);
- `rejected/night=<N>/part-0.parquet`: object_id, reason, n_rows of that night's rejections;
- `manifest.json`, rewritten after each night: the input, the settings (the split replayed, the
  `--threshold-from` folder), the run's `model` and the `threshold` flagged by, the objects
  rejected at load (by reason) and, with `objects`, those of the input left out
  (`left_out_objects`),
  `finished_through` (the last finished night) and per night with data its counts: `rows`,
  `objects_with_data`, `first_seen`, `rescored`, `flagged`, `rejected` (by reason), and the
  running totals `seen`, `open`, `closed`. Every night `objects_with_data == rescored +
  sum(rejected)` and `seen == open + closed`, checked before the manifest is written.
- with `groups` > 1, `groups/`: the working folder of a replay in groups (`replay_groups`),
  removed once the input's last night is merged.

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plasticc_jax import lightcurve_rows, provenance, runs
from plasticc_jax.calibration import AgeThreshold
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import (
    TMP_PREFIX,
    check_files_unchanged,
    check_input_files,
    check_lockable,
    file_stamps,
    folder_lock,
    make_output_folder,
    sha256_file,
)
from plasticc_jax.replay_groups import GROUPS, REMOVING, replay_groups
from plasticc_jax.replay_input import ReplayInput
from plasticc_jax.replay_nights import (
    CANDIDATES,
    MANIFEST,
    REJECTED,
    REJECTED_AT_LOAD,
    Job,
    check_last_night,
    loaded,
    new_manifest,
    read_manifest,
    read_metadata,
    replay_nights,
    report,
    start,
    stop_night,
    warn_repeating,
)
from plasticc_jax.replay_thresholds import refuse_output_in, threshold_from
from plasticc_jax.scoring import Scorer

log = logging.getLogger(__name__)

# Longer than any survey: a larger --close-after would overflow the night arithmetic.
MAX_CLOSE_AFTER = 36_525.0
MAX_GROUPS = 1024  # a file open per group while the rows are split


def _fingerprint(
    run_dir: Path,
    paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    close_after: float | None,
    objects: np.ndarray | None,
    groups: int,
    model: str | None,
    age_threshold: AgeThreshold | None = None,
) -> str:
    """What a replay's outputs depend on: the run (its path, and `model`: the SHA-256 of the
    record of its checkpoint and detector, `provenance.model_sha256`), every input file's
    content and the settings."""
    blob = {
        "run": str(Path(run_dir).resolve()),
        "model": model,
        "inputs": [(Path(p).name, sha256_file(Path(p))) for p in [*paths, *metadata_paths]],
        "close_after": close_after,
        "objects": None
        if objects is None
        else hashlib.sha256(np.sort(np.asarray(objects, np.int64)).tobytes()).hexdigest(),
    }
    if groups > 1:  # a replay of every object at once keeps the fingerprint it always had
        blob["groups"] = groups
    if age_threshold is not None:  # likewise a replay flagged by the detector's threshold
        blob["age_threshold"] = age_threshold.to_json()
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _refuse_inputs_in_output(output: Path, inputs: Sequence[Path]) -> None:
    """No input may be one of the files a replay writes, nor lie in its night folders."""
    written = [output / MANIFEST, output / REJECTED_AT_LOAD]
    folders = [(output / name).resolve() for name in (CANDIDATES, REJECTED, GROUPS)]
    for path in inputs:
        target = path.resolve()
        if any(target == w.resolve() for w in written) or any(
            target.is_relative_to(f) for f in folders
        ):
            raise UserError(
                f"--output {output}: the replay would overwrite the input {path}; choose "
                "another output folder"
            )


def check_replay_folder(output: Path) -> None:
    """A new replay goes to a folder of its own (new, empty, or a replay's): not to one holding
    other files, such as another command's Parquet dataset, which the replay's files would make
    unreadable as a whole. A replay to resume (its manifest there) is checked by `read_manifest`.

    Raises:
        UserError: `output` holds files that are not a replay's.
    """
    if (output / MANIFEST).exists():
        return
    ours = {MANIFEST, CANDIDATES, REJECTED, REJECTED_AT_LOAD, GROUPS, REMOVING}
    # The lock files other commands leave beside their outputs (`io_utils.lock_path`) are
    # hidden, as Parquet readers take them: they harm no replay, and naming them hid the files
    # that do (a review).
    others = sorted(
        name
        for name in (p.name for p in output.iterdir())
        if name not in ours
        and not name.startswith(TMP_PREFIX)
        and not (name.startswith(".") and name.endswith(".lock"))
    )
    if others:
        raise UserError(
            f"--output {output} is a folder holding other files ({', '.join(others[:3])}): give "
            "a new or empty folder, or remove them"
        )


def replay(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    *,
    close_after: float | None = None,
    objects: np.ndarray | None = None,
    last_night: int | None = None,
    groups: int = 1,
    jobs: int = 1,
    split: str | None = None,
    dataset: str | None = None,
    threshold_from_replay: Path | None = None,
) -> dict[str, Any]:
    """Replay the files night by night with a trained, evaluated run; returns the manifest.

    Args:
        run_dir: run directory (after `train` and `evaluate`).
        lightcurve_paths, metadata_paths: the input (any row order; read whole).
        output: the output folder (created; an unfinished replay of the same input resumes).
        close_after: nights without an observation after which an object closes (None: never).
        objects: replay only these object ids (e.g. a prepared split's).
        last_night: stop after this night (None: the input's last).
        groups: replay the objects in this many groups, one after the other, each night's
            candidates merged afterwards (`replay_groups`): memory holds about 1/groups of the
            rows; 1: every object at once, each night written as it is replayed.
        jobs: replay this many groups at once, each in a process of its own (memory holds
            that many groups' rows).
        split, dataset: the split whose ids `objects` are, and the fingerprint of the prepared
            dataset it is of (recorded: a replay of the run's val split can set the thresholds
            of others).
        threshold_from_replay: flag by thresholds set on this replay of the run's val split
            (`threshold_from`), not by the detector's.

    Raises:
        UserError: not an evaluated run, a missing file, or an output folder holding a replay
            of other inputs or settings.
    """
    run_dir, output = Path(run_dir), Path(output)
    paths = [Path(p) for p in lightcurve_paths]
    metadata_paths = [Path(p) for p in metadata_paths]
    check_input_files([*paths, *metadata_paths])
    if not 1 <= groups <= MAX_GROUPS:
        raise UserError(f"--groups {groups}: give a number from 1 to {MAX_GROUPS}")
    if not 1 <= jobs <= groups:
        raise UserError(
            f"--jobs {jobs}: give a number from 1 to --groups (the groups replayed at once)"
        )
    # Whole nights are counted: a fraction below 1 would close an object seen on consecutive
    # nights, as 0 would.
    if close_after is not None and not 1 <= close_after <= MAX_CLOSE_AFTER:
        raise UserError(
            f"--close-after {close_after}: give a number of nights from 1 to "
            f"{MAX_CLOSE_AFTER:g} (leave it out never to close)"
        )
    if close_after is not None:  # 20 and 20.0 the same replay (the command line gives a float)
        close_after = float(close_after)
    _refuse_inputs_in_output(output, [*paths, *metadata_paths])
    if threshold_from_replay is not None:
        refuse_output_in(output, threshold_from_replay)
    for path in paths:
        if not lightcurve_rows.has_rows(path):
            raise lightcurve_rows.no_rows_error(path)
    # As `score --output`: not the run itself, none of its files, nothing inside its folders.
    run_files, run_folders = runs.protected_paths(run_dir)
    target = output.resolve()
    if target in {p.resolve() for p in [run_dir, *run_files]} or any(
        target.is_relative_to(f.resolve()) for f in run_folders
    ):
        raise UserError(
            f"--output {output} is, or lies in, a part of the run {run_dir}: choose another "
            "--output"
        )
    created = [f for f in [output, *output.parents] if not f.exists()]  # leaf first
    make_output_folder(output)  # a path where no folder can be made: said before the run loads
    try:
        check_lockable(output)  # its lock lies beside it: said before the run loads too
        check_replay_folder(output)
        stamps = file_stamps([*paths, *metadata_paths])  # before they are hashed
        with folder_lock(run_dir, "replay", shared=True):  # no evaluate rewrites it meanwhile
            scorer = Scorer.load(run_dir)  # checked: complete, evaluated, its detector
            model = provenance.model_sha256(run_dir)
            age_threshold = None
            if threshold_from_replay is not None:
                threshold_from_replay = Path(threshold_from_replay).resolve()
                age_threshold = threshold_from(
                    threshold_from_replay,
                    run_dir,
                    scorer.detector.target_fpr,
                    model,
                    close_after,
                )
            fingerprint = _fingerprint(
                run_dir, paths, metadata_paths, close_after, objects, groups, model, age_threshold
            )
        scorer.warn_if_complete_only("replay", threshold_from_replay)
        if age_threshold is not None:
            log.info("flag thresholds from %s: %s", threshold_from_replay, age_threshold.describe())
        # One replay an output folder: a second one at once would mix its nights with this one's.
        with folder_lock(output, "replay"):
            job = Job(
                paths,
                metadata_paths,
                output,
                fingerprint,
                close_after,
                objects,
                last_night,
                groups,
                model,
                split,
                dataset,
                age_threshold,
                threshold_from_replay,
                jobs,
                stamps,
            )
            manifest = read_manifest(output, fingerprint, job.settings())
            held = [output / n for n in (GROUPS, REMOVING) if (output / n).exists()]
            if groups == 1 and held:
                raise UserError(
                    f"{output} holds {held[0]}, the working folder of a replay in groups: give its "
                    "--groups again to resume or finish it, or choose another --output"
                )
            return (replay_groups if groups > 1 else _replay)(scorer, job, manifest)
    except UserError:
        # A refused run leaves no empty folders behind (refused before the run loads, or once
        # the input is read: `--last-night` before the data, say).
        remove_empty(created)
        raise


def remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (the ones this replay created, leaf first) still empty."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _replay(scorer: Scorer, job: Job, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The replay of every object at once, holding the output folder's lock."""
    metadata = read_metadata(scorer, job.metadata_paths)
    data = ReplayInput(
        lightcurve_rows.read_files(job.paths), metadata, job.close_after, job.objects
    )
    check_files_unchanged(job.stamps)
    first, last = data.nights
    if len(data.rows):
        check_last_night(job.last_night, first, last)
    else:
        log.warning(
            "no observations to replay in %s%s",
            ", ".join(map(str, job.paths)),
            f" ({len(data.rejected)} objects rejected at load)" if len(data.rejected) else "",
        )
    if manifest is None:
        manifest = new_manifest(scorer, job, loaded(data))
        start(job.output, manifest, data.rejected)
        warn_repeating(manifest)
    t0 = time.perf_counter()
    start_night = int(manifest["finished_through"]) + 1
    if start_night > first:
        log.info("resuming %s after night %d", job.output, start_night - 1)
    nights = replay_nights(
        scorer, data, job.output, manifest, job.last_night, job.age_threshold, job.split
    )
    stop = stop_night(manifest, job.last_night)
    report(manifest, job.output, start_night, stop, nights, time.perf_counter() - t0)
    return manifest
