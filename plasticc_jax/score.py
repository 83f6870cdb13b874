"""`plasticc-jax score`: score new light-curve files with a trained and evaluated run.

Needs only the run directory: the VAE (checkpoint, config.json, stats.json) and the anomaly
detector that `evaluate` saved in `models/`, which must have been fitted on the run's best
checkpoint (`provenance`: after more training, run `evaluate` again). Inputs stream through in
chunks (`streaming.stream_grids`), so memory stays bounded for files of any size, and each chunk
takes the evaluation's scoring path (`scoring.Scorer.table`); the table is written in two passes
(scores, then ranks over all objects: `plasticc_jax.score_output`) through a scratch folder
beside the output (removed at the end, and by the next run after a kill).

Output: the table at `output` (`.parquet`, or `.csv` / `.csv.gz`), with the columns of the
evaluation table (`scoring.score_table`: split is `new`, rank is among all scored objects, 1 =
most anomalous, `flagged` = above the run's threshold, or with `--as-of` and `--threshold-from`
above thresholds per age and depth set on a replay of the run's val split), and `<output
name>.rejected.csv` listing every input object that could not be scored and why. Every input
object is in exactly one of the two (checked), and no score is NaN. The output may not be one of
the inputs or a file of the run. With `dask`, the work runs on a Dask cluster
(`plasticc_jax.distributed_score`) after the same checks, with the same guarantees, and the table
is a Parquet dataset (a folder) with the same rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from plasticc_jax import interrupts, provenance, readers, runs, scoring
from plasticc_jax.doctor import log_backend
from plasticc_jax.early import check_as_of
from plasticc_jax.errors import UserError
from plasticc_jax.inputs import warn_missing_test_parts
from plasticc_jax.io_utils import (
    check_files_unchanged,
    check_input_files,
    file_stamps,
    folder_lock,
    make_output_folder,
    naming_failed_writes,
    refuse_overwrite,
    scratch_dir,
)
from plasticc_jax.replay_thresholds import refuse_output_in
from plasticc_jax.replay_thresholds import threshold_from as threshold_from_replay
from plasticc_jax.score_output import (
    MANIFEST,
    SCRATCH_PREFIX,
    by_reason,
    check_accounting,
    check_dataset_folder,
    note_unknown_classes,
    output_format,
    refuse_if_none_scored,
    refuse_shared_rejections,
    rejected_path,
    warn_if_flagged_far_above,
    warn_never_detected,
    warn_trained_on,
    write_ranked,
    write_unranked,
)
from plasticc_jax.scoring import Scorer
from plasticc_jax.streaming import concat_rejections, stream_grids

log = logging.getLogger(__name__)


def refuse_output(
    output: Path, inputs: Sequence[Path], run_dir: Path, *, dataset: bool = False
) -> None:
    """`--output` (and its rejections file) may not replace an input or a file of the run, nor
    lie in the run's folders. With `dataset` (`--dask`) the output is a folder: it may not hold
    an input or the run either.

    Raises:
        UserError: the output would overwrite or hold what the command reads or must keep, or
            share its rejection list with another output.
    """
    refuse_shared_rejections(output)
    run_files, run_folders = runs.protected_paths(run_dir)
    kept = [*inputs, *run_files]
    if dataset and output.is_dir():
        target = output.resolve()
        inside = next(
            (p for p in [*kept, *run_folders, run_dir] if p.resolve().is_relative_to(target)),
            None,
        )
        if inside is not None:
            raise UserError(
                f"--output {output} holds {inside}, which this command reads or must keep; "
                "choose another output path"
            )
        outputs = [output / MANIFEST, rejected_path(output)]
    else:
        outputs = [output, rejected_path(output)]
    refuse_overwrite(outputs, kept, run_folders, what="--output")


def check_threshold_from(threshold_from: Path, as_of: float | None, output: Path) -> None:
    """Raise a UserError unless `--threshold-from` comes with `--as-of` (its thresholds are
    per days since the first detection, which only a date gives) and the output is outside it."""
    if as_of is None:
        raise UserError(
            f"--threshold-from {threshold_from} needs --as-of: its thresholds are per days since "
            "the first detection, which a date gives (complete light curves take the run's)"
        )
    refuse_output_in(output, threshold_from)


def score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None = None,
    *,
    dask: str | None = None,
    part_mb: float | None = None,
    as_of: float | None = None,
    threshold_from: Path | None = None,
    then: Callable[[Path], object] | None = None,
) -> Path:
    """Score light-curve files with a trained, evaluated run; returns the output path.

    Args:
        run_dir: run directory (after `train` and `evaluate`).
        lightcurve_paths: light-curve CSV(.gz) files, each grouped by object_id (PLAsTiCC
            Kaggle or unblinded format).
        metadata_paths: their metadata files. Labels, if present (`target`/`true_target`), are
            copied into the table; they never enter the score.
        output: the table; `.parquet`, `.csv` or `.csv.gz` (with `dask`: `.parquet`, a folder).
        workers: threads gridding the input (None: the run's `data.workers`; with `dask`: 1 per
            task).
        dask: run on this Dask cluster (`distributed.connect`: a scheduler address, a scheduler
            file, or `local:N`); None: in this process.
        part_mb: with `dask`, MB of plain CSV per task (`distributed_score.score`).
        as_of: score each object with only its observations up to this MJD
            (`early.grid_as_of`); the table then has `days_since_detection` (as_of minus the
            object's first detection). An object not detected by then, or without enough
            observations by then, is rejected with that reason. Not with `dask`. Works
            with any run; a run trained with partial light curves (`configs/early.py`) is the
            one meant for it (docs/early.md).
        threshold_from: with `as_of`, flag by thresholds set on this replay of the run's val
            split, per days since the first detection and depth
            (`replay_thresholds.threshold_from`, as `replay --threshold-from`), not by the
            detector's threshold.
        then: called with the output once it is written, still under the output's lock
            (`score --review-labels` re-ranks it: no other score may replace it in between).
            With it, the run stays locked (shared) from the start to the end of `then`: it
            reads the run again (the answered objects' features), which an evaluate or train
            finished while scoring would have made another model's than the table's.

    Raises:
        UserError: not a trained and evaluated run (or one whose detector does not belong to its
            checkpoint, or an incomplete one), a missing file, an unknown output format, an
            output that is an input or lies in the run, bad input (naming the file and line),
            or `threshold_from` without `as_of` or not a finished replay of the run's val split.
    """
    run_dir, output = Path(run_dir), Path(output)
    if as_of is not None:
        check_as_of(as_of, "--as-of")
    if threshold_from is not None:
        check_threshold_from(threshold_from, as_of, output)
    fmt = output_format(output)
    if dask is not None and as_of is not None:
        raise UserError("--as-of is not supported with --dask: score in this process instead")
    if dask is not None and fmt != ".parquet":
        raise UserError(
            f"--output {output}: with --dask the table is a Parquet dataset (a folder); give a "
            "name ending in .parquet"
        )
    inputs = [Path(p) for p in [*lightcurve_paths, *metadata_paths]]
    check_input_files(inputs)
    refuse_output(output, inputs, run_dir, dataset=dask is not None)
    # A run folder before anything is made (a review: `make score` before `train` made the
    # run's folder, its output's default place, and left it behind with locks in it).
    if not run_dir.is_dir():
        runs.read_config(run_dir)  # says what is there instead
    make_output_folder(output.parent)
    if dask is not None:
        check_dataset_folder(output)
    # One writer of an output at a time (`make score` writes <run>/scored.parquet whatever the
    # inputs): a second is refused, naming the first, rather than one table installed beside
    # the other's rejection list.
    with folder_lock(output, "score"), contextlib.ExitStack() as run_held:
        if then is not None:  # `_score` and `then` take it again (granted: shared in shared)
            run_held.enter_context(folder_lock(run_dir, "score", shared=True))
        written = _score(
            run_dir,
            lightcurve_paths,
            metadata_paths,
            output,
            workers,
            dask,
            part_mb,
            as_of,
            threshold_from,
        )
        if then is not None:
            then(written)
        return written


def _score(
    run_dir: Path,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    output: Path,
    workers: int | None,
    dask: str | None,
    part_mb: float | None,
    as_of: float | None,
    threshold_from: Path | None,
) -> Path:
    """`score` after its checks, holding the output's lock."""
    fmt = output_format(output)
    warn_missing_test_parts(lightcurve_paths)
    # A file still being written (a copy, a download) would be scored as far as it had got, its
    # last object cut short (a review: scored, exit 0); Dask workers check their parts the same.
    stamps = file_stamps([*lightcurve_paths, *metadata_paths])
    metadata = readers.labels_optional(readers.read_metadata_files(metadata_paths))
    log_backend()
    if dask is not None:
        from plasticc_jax import distributed_score

        # Checked here, as below; the run stays locked (shared) while the workers read it.
        with folder_lock(run_dir, "score", shared=True):
            scorer = Scorer.load(run_dir)
            note_unknown_classes(metadata, scorer.config.data)
            return distributed_score.score(
                dask,
                scorer,
                lightcurve_paths,
                metadata_paths,
                metadata,
                output,
                workers,
                part_mb=part_mb,
            )
    # Read while no evaluate or train rewrites the run (they hold its lock).
    with folder_lock(run_dir, "score", shared=True):
        scorer = Scorer.load(run_dir)
        age_threshold = None
        if threshold_from is not None:  # a replay never closes objects: nor does a date
            model = provenance.model_sha256(run_dir)
            target_fpr = scorer.detector.target_fpr
            age_threshold = threshold_from_replay(threshold_from, run_dir, target_fpr, model, None)
    note_unknown_classes(metadata, scorer.config.data)
    if as_of is not None:
        scorer.warn_if_complete_only(f"score --as-of {as_of:g}", threshold_from)
    if age_threshold is not None:
        log.info("flag thresholds from %s: %s", threshold_from, age_threshold.describe())
    detector = scorer.detector

    start = time.perf_counter()
    n_metadata = len(metadata)
    # The scratch folder lives beside the output (same disk); the outputs are moved into place
    # from it only when complete; a full disk names the output, not a scratch file.
    with scratch_dir(output.parent, SCRATCH_PREFIX) as scratch, naming_failed_writes(output):
        unranked = scratch / "unranked.parquet"
        grids = stream_grids(
            lightcurve_paths,
            metadata_paths,
            scorer.config.data,
            workers,
            metadata=metadata,
            as_of=as_of,
        )
        del metadata  # the gridding's index holds it, sorted: not held twice (a review)
        scores, scored_ids, rejected_parts, never_detected, n_flagged = write_unranked(
            grids,
            scorer,
            unranked,
            days_since_detection=as_of is not None,
            age_threshold=age_threshold,
        )
        check_files_unchanged(stamps)  # every file read to its end by now
        rejected = concat_rejections(rejected_parts)
        check_accounting(n_metadata, [scored_ids], rejected)
        table_path, rejected_tmp = scratch / f"table{fmt}", scratch / "rejected.csv"
        write_ranked(unranked, scoring.ranks(scores), table_path, fmt)
        rejected.to_csv(rejected_tmp, index=False)
        # A Ctrl-C whose exception was swallowed (in JAX's garbage collection): the old output
        # stays, rather than replaced and then reported interrupted (found by an audit).
        interrupts.check()
        # The old rejections go first: a kill below leaves a table without its rejections file,
        # never a table beside another run's rejections.
        rejected_path(output).unlink(missing_ok=True)
        os.replace(table_path, output)
        os.replace(rejected_tmp, rejected_path(output))
    by = f"the thresholds from {threshold_from}" if age_threshold else "the run's threshold"
    log.info(
        "scored %d objects in %.1f s (%d flagged by %s, for a %.2g false-positive rate), "
        "%d rejected%s; wrote %s and %s",
        scores.size,
        time.perf_counter() - start,
        n_flagged,
        by,
        detector.target_fpr,
        len(rejected),
        f" ({by_reason(rejected)})" if len(rejected) else "",
        output,
        rejected_path(output),
    )
    warn_never_detected(never_detected)
    warn_trained_on(run_dir, scored_ids)
    if age_threshold is None:  # (its thresholds were set on partial curves of their own)
        warn_if_flagged_far_above(n_flagged, scores.size, detector.target_fpr)
    refuse_if_none_scored(scores.size, rejected, output, as_of=as_of)
    return output
