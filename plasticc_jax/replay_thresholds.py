"""The thresholds a replay of the run's val split sets (`replay --threshold-from`, and
`score --as-of --threshold-from`): read and checked from that replay's output folder.

A replay re-scores objects at every age, where the detector's threshold (set on complete light
curves, and one partial one each for the `early` preset) does not keep its rate; thresholds set
on the known objects' re-scorings of a replay of the val split, per days since the first
detection and depth (`calibration.AgeThreshold`), do (docs/early.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from plasticc_jax import provenance
from plasticc_jax.calibration import DEPTH_FEATURE, AgeThreshold
from plasticc_jax.errors import UserError
from plasticc_jax.replay_groups import GROUPS
from plasticc_jax.replay_nights import CANDIDATES, MANIFEST
from plasticc_jax.streaming import NO_LIGHTCURVE


def threshold_from(
    val_replay: Path,
    run_dir: Path,
    target_fpr: float,
    model: str | None,
    close_after: float | None,
) -> AgeThreshold:
    """The thresholds set on `val_replay`, a finished replay of the whole val split of the run's
    dataset with this run as evaluated now (`model`) and the same `close_after`: on its known
    objects' re-scorings, per bin of days since the first detection and of depth
    (`AgeThreshold`), for the detector's `target_fpr`.

    Raises:
        UserError: not a replay's output folder, not of the run's whole val split, of another
            run or evaluation or `--close-after`, unfinished, with candidates that are not its
            manifest's, or without a re-scored known object.
    """
    val_replay = Path(val_replay)
    name = f"--threshold-from {val_replay}"
    again = (
        f"replay the val split with this run into a folder of its own (`plasticc-jax replay "
        f"--run {run_dir} --split val ...`) and give that folder"
    )
    if (val_replay / GROUPS).exists():
        raise UserError(f"{name}: that replay in groups is unfinished: run it again to finish it")
    try:
        manifest = json.loads((val_replay / MANIFEST).read_text())
        finished, last = int(manifest["finished_through"]), int(manifest["last_night"])
        counts = [(int(n["night"]), int(n["rescored"])) for n in manifest["nights"]]
        # Objects of the split in the input: loaded, or rejected at load for a bad value (not
        # those of the metadata without a row: a light-curve file of part of the split).
        rejected = manifest.get("rejected_at_load", {})
        loaded_objects = int(manifest.get("objects", 0)) + sum(
            int(n) for reason, n in rejected.items() if reason != NO_LIGHTCURVE
        )
        split_objects = int(manifest.get("split_objects") or 0)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise UserError(f"{name}: not a replay's output folder: {again}") from None
    if "/" in str(manifest.get("fingerprint")):  # a group's folder of a replay in groups
        raise UserError(f"{name}: one group's folder of a replay in groups: give the replay's")
    if "split" not in manifest or "dataset" not in manifest:
        raise UserError(f"{name}: a replay of an earlier release (no split recorded): {again}")
    split = manifest["split"]
    if split != "val":
        what = f"the {split} split" if split else "whole files (no --split)"
        raise UserError(
            f"{name} is a replay of {what}, not of the run's val split (the known objects the "
            f"run is calibrated on): {again}"
        )
    if manifest.get("model") != model:
        raise UserError(
            f"{name}: a replay with another run, or with this one before it was evaluated "
            f"again: {again}"
        )
    if manifest.get("dataset") != provenance.detector_dataset(run_dir):
        raise UserError(
            f"{name}: the val split of another prepared dataset than the run's: {again}"
        )
    if loaded_objects < split_objects:
        raise UserError(
            f"{name} replayed {loaded_objects} of the val split's {split_objects} objects: "
            "replay it from the files the run's dataset was prepared from"
        )
    closed_after = manifest.get("close_after_days")
    if closed_after != close_after and close_after is None:  # `score`, or a replay without it
        raise UserError(
            f"{name} was replayed with --close-after {closed_after}: its thresholds are for "
            "objects closed after that many days, and here none is; replay the val split without "
            "--close-after and give that folder (or give `replay` the same --close-after)"
        )
    if closed_after != close_after:
        replayed = "without --close-after" if closed_after is None else f"with {closed_after}"
        raise UserError(
            f"{name} was replayed {replayed} and this replay has --close-after {close_after}: "
            "give both the same"
        )
    if finished < last:
        raise UserError(f"{name}: that replay is unfinished: run it again to finish it")
    columns = ["night", "anomaly_score", "days_since_detection", DEPTH_FEATURE, "is_anomaly"]
    expected = sum(n for _, n in counts)
    try:
        table = pd.read_parquet(val_replay / CANDIDATES, columns=columns) if expected else None
    except (OSError, ValueError, pa.ArrowException) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{name}: its candidates cannot be read ({first_line})") from None
    nights = {night for night, n in counts if n}
    if table is not None and (
        len(table) != expected or set(table["night"].astype(np.int64).unique()) != nights
    ):
        raise UserError(
            f"{name}: its candidates are not the ones its manifest counts ({len(table)} rows, "
            f"{expected} re-scorings): {again}"
        )
    known = None if table is None else table[~table["is_anomaly"].astype(bool)]
    if known is None or known.empty:
        raise UserError(f"{name}: no known object was re-scored in it")
    return AgeThreshold.fit(
        known["anomaly_score"].to_numpy(),
        known["days_since_detection"].to_numpy(),
        known[DEPTH_FEATURE].to_numpy(),
        target_fpr,
    )


def refuse_output_in(output: Path, val_replay: Path) -> None:
    """An output (a replay's folder, a score table) may not lie in `--threshold-from`'s replay,
    which it would change while it is read."""
    if Path(output).resolve().is_relative_to(Path(val_replay).resolve()):
        raise UserError(f"--output {output} lies in --threshold-from {val_replay}: choose another")
