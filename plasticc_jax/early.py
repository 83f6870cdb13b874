"""Partial light curves: an object as it was known some days after its first detection.

Pure NumPy, no I/O, vectorised over the objects of a chunk (`gridding.Chunk`), like the gridding
kernel it feeds:

- `first_detection`: the MJD of each object's first detection: its first point with PLAsTiCC's
  `detected` flag; for an object never flagged, its first point with flux/flux_err >= 5
  (`DETECTION_SNR`, the survey's own detection limit); for one without either, its first point.
- `detected`: whether an object has a detection (a flagged point or one with S/N >= 5) at all;
  `score --as-of` and `replay` score an object only from its first detection on.
- `truncate`: keep each object's observations up to a cut time (MJD, one per object).
- `grid_cut` / `grid_stages`: grid the truncated light curves with the same kernel as complete
  ones (`gridding.grid_chunk`), so a partial light curve is centred, like a complete one, on its
  most significant detection *so far* (or, with `data.time_anchor = "first_detection"`, on its
  first detection), and its features are computed from what is known so far.

A partial light curve carries its `stage` (`LightCurveArrays.stage`): the days after the first
detection at which it was cut (inf: the complete light curve). Rows with a non-finite MJD are
kept by every cut, so an object with a bad row is rejected for it (`gridding.REASONS`) whatever
the cut, not silently cleaned.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

import numpy as np

from plasticc_jax import gridding, plasticc
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import DETECTION_SNR, Chunk, GridResult, GridSpec
from plasticc_jax.lightcurve_rows import Rows


def _object_index(starts: np.ndarray, n_rows: int) -> np.ndarray:
    return np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n_rows]))


def _bright(rows: Rows) -> np.ndarray:
    """(n,) bool: rows with flux/flux_err >= `DETECTION_SNR` (the survey's detection limit)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return rows.flux / rows.flux_err >= DETECTION_SNR


def detection_rows(rows: Rows) -> np.ndarray:
    """(n,) bool: the detections, points flagged `detected` or with flux/flux_err >=
    `DETECTION_SNR`: what a broker alerts on."""
    return rows.detected.astype(bool) | _bright(rows)


def _firsts(chunk: Chunk) -> list[np.ndarray]:
    """Per object (m,) the MJD of its first flagged point, of its first point with S/N >=
    `DETECTION_SNR`, and of its first point (inf where none)."""
    rows, starts = chunk.rows, chunk.starts
    o = _object_index(starts, len(rows))
    mjd = np.where(np.isfinite(rows.mjd), rows.mjd, np.inf)
    out = []
    for flags in (rows.detected.astype(bool), _bright(rows), np.ones(len(rows), bool)):
        first = np.full(starts.size, np.inf)
        np.minimum.at(first, o[flags], mjd[flags])
        out.append(first)
    return out


def first_detection(chunk: Chunk) -> np.ndarray:
    """(m,) float64 MJD of each object's first detection (see the module docstring)."""
    out = np.full(chunk.starts.size, np.inf)
    for first in _firsts(chunk):
        out = np.where(np.isinf(out), first, out)
    return out


def detected(chunk: Chunk) -> np.ndarray:
    """(m,) bool: objects with a detection (`detection_rows`) at a finite MJD, as a broker sees
    them: it alerts only on detections."""
    rows = chunk.rows
    hit = np.zeros(chunk.starts.size, bool)
    hit[_object_index(chunk.starts, len(rows))[detection_rows(rows) & np.isfinite(rows.mjd)]] = True
    return hit


def truncate(chunk: Chunk, cut: np.ndarray) -> tuple[Chunk, np.ndarray]:
    """Each object's observations up to `cut` (inclusive). Rows whose MJD is not finite or lies
    far outside the survey (`gridding.outside_span`) are kept by every cut: their object is
    rejected for them whatever the cut, never silently cleaned.

    Args:
        chunk: rows of whole objects, grouped.
        cut: (m,) MJD per object.

    Returns:
        The truncated chunk (objects left without any observation are dropped) and (m,) bool:
        which of the chunk's objects it holds.
    """
    rows, starts = chunk.rows, chunk.starts
    o = _object_index(starts, len(rows))
    with np.errstate(invalid="ignore"):
        in_time = rows.mjd <= np.asarray(cut, np.float64)[o]
    keep = ~np.isfinite(rows.mjd) | gridding.outside_span(rows.mjd) | in_time
    counts = np.bincount(o[keep], minlength=starts.size)
    present = counts > 0
    counts = counts[present]
    new_starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64) if counts.size else counts
    out = Chunk(rows.take(keep), new_starts, chunk.meta[present], chunk.target[present])
    return out, present


def grid_cut(chunk: Chunk, spec: GridSpec, cut: np.ndarray, stage: np.ndarray) -> GridResult:
    """Grid each object's light curve up to `cut` (MJD, (m,)), its rows labelled with `stage`
    ((m,) days after the first detection); an object without any observation up to its cut is
    rejected as having too few observations."""
    part, present = truncate(chunk, cut)
    result = gridding.grid_chunk(part, spec)
    ids = chunk.rows.object_id[chunk.starts] if chunk.starts.size else np.zeros(0, np.int64)
    kept_stage = np.asarray(stage, np.float32)[present]
    # Gridded objects keep the chunk's order: their stages are those of the objects not rejected.
    accepted = ~np.isin(ids[present], result.rejected_ids)
    arrays = dataclasses.replace(result.arrays, stage=kept_stage[accepted])
    empty_code = gridding.REASONS.index(gridding.TOO_FEW)
    return GridResult(
        arrays,
        np.r_[result.rejected_ids, ids[~present]].astype(np.int64),
        np.r_[result.rejected_codes, np.full((~present).sum(), empty_code)].astype(np.int8),
    )


# The dates `as_of` takes: the survey's span with the margin observations may lie in. Before
# it nothing is observed yet, after it everything is: either is a mistake (a JD, a typo).
AS_OF_SPAN = (
    plasticc.MJD_MIN - plasticc.MJD_MARGIN_DAYS,
    plasticc.MJD_MAX + plasticc.MJD_MARGIN_DAYS,
)
JD_OFFSET = 2_400_000.5  # JD = MJD + 2400000.5


def looks_like_julian_date(value: float) -> bool:
    """Whether an MJD or night (`value`) is a Julian date of the survey's span instead.
    Compared, not subtracted: an int too large for a float is finite, and no Julian date."""
    low, high = AS_OF_SPAN
    return low + JD_OFFSET <= value <= high + JD_OFFSET


def check_as_of(as_of: object, name: str) -> None:
    """Raise a UserError, naming the setting `name` (`--as-of`), unless `as_of` is a finite MJD
    within the survey's span (a Julian date is named as one)."""
    real = isinstance(as_of, numbers.Real) and not isinstance(as_of, bool | np.bool_)
    # math.isfinite overflows on a huge int, which is finite.
    if not real or not (isinstance(as_of, numbers.Integral) or math.isfinite(as_of)):
        raise UserError(f"{name} {as_of!r}: give a finite MJD (a number of days)")
    if looks_like_julian_date(as_of):
        raise UserError(
            f"{name} {as_of:g} looks like a Julian date: give the MJD, JD - 2400000.5 "
            f"({as_of - JD_OFFSET:g})"
        )
    low, high = AS_OF_SPAN
    if not low <= as_of <= high:
        huge = isinstance(as_of, numbers.Integral) and abs(as_of) >= 1e300
        shown = f"{str(as_of)[:12]}..." if huge else f"{as_of:g}"
        raise UserError(
            f"{name} {shown} is outside the survey (MJD {low:g}-{high:g}): before it nothing "
            "is observed yet, after it everything is (score without it)"
        )


def grid_as_of(chunk: Chunk, spec: GridSpec, as_of: float) -> GridResult:
    """Grid every object with its observations up to MJD `as_of`; its `stage` is the days from
    its first detection then to `as_of`. An object not detected by then is rejected
    (`gridding.NOT_DETECTED`), as `replay` does: a broker scores an object from its first
    detection on; unless its rows so far hold a bad value, which is named instead
    (`not_detected_codes`)."""
    part, present = truncate(chunk, np.full(chunk.starts.size, float(as_of)))
    seen = np.zeros(chunk.starts.size, bool)
    seen[present] = detected(part)
    known_then = part.take(seen[present])
    stage = as_of - first_detection(known_then)
    result = grid_cut(known_then, spec, np.full(known_then.starts.size, float(as_of)), stage)
    # Objects without a single row by then (not in `part`): nothing was seen of them yet.
    codes = np.full(chunk.starts.size, gridding.REASONS.index(gridding.NOT_DETECTED), np.int8)
    codes[np.flatnonzero(present)[~seen[present]]] = not_detected_codes(part.take(~seen[present]))
    waiting = chunk.rows.object_id[chunk.starts][~seen] if chunk.starts.size else np.zeros(0)
    return GridResult(
        result.arrays,
        np.r_[result.rejected_ids, waiting].astype(np.int64),
        np.r_[result.rejected_codes, codes[~seen]].astype(np.int8),
    )


def not_detected_codes(chunk: Chunk) -> np.ndarray:
    """(m,) int8 rejection codes of objects not detected yet: their rows' first problem
    (`gridding.invalid_objects`: a bad value, a duplicated observation) if any, else
    `gridding.NOT_DETECTED`."""
    o = _object_index(chunk.starts, len(chunk.rows))
    codes = gridding.invalid_objects(chunk.rows, o, chunk.starts.size)
    codes[codes == 0] = gridding.REASONS.index(gridding.NOT_DETECTED)
    return codes


def grid_stages(chunk: Chunk, spec: GridSpec, stages: Sequence[float]) -> GridResult:
    """The complete light curves (`gridding.grid_chunk`; its rejections are the chunk's), and
    each object cut at every stage (days after its first detection): each object's rows
    together, its complete row first.

    A cut that leaves an object too few observations (`spec.min_observations`) adds no row for
    that stage: the object could not have been scored then. A cut that keeps all of an object's
    observations adds a copy of its complete row, so every object scorable at a stage has a row
    there.
    """
    result = gridding.grid_chunk(chunk, spec)
    finite = [float(d) for d in stages if np.isfinite(d)]
    if not finite or not chunk.starts.size:
        return result
    parts = [result.arrays]
    accepted = ~np.isin(chunk.rows.object_id[chunk.starts], result.rejected_ids)
    if not accepted.any():
        return result
    sub = chunk.take(accepted)
    first = first_detection(sub)
    for days in finite:
        stage = np.full(sub.starts.size, days, np.float32)
        parts.append(grid_cut(sub, spec, first + days, stage).arrays)
    arrays = type(result.arrays).concatenate(parts)
    # Each object's rows together, complete first then by stage: the output does not depend
    # on how objects are grouped into chunks.
    ids = chunk.rows.object_id[chunk.starts]
    by_id = np.argsort(ids, kind="stable")
    position = by_id[np.searchsorted(ids[by_id], arrays.object_id)]
    stage = np.where(np.isinf(arrays.stage), -1.0, arrays.stage)
    arrays = arrays.take(np.lexsort((stage, position)))
    return GridResult(arrays, result.rejected_ids, result.rejected_codes)
