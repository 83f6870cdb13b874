"""The input of a replay (`plasticc_jax.replay`): every row of the light-curve files, sorted by
object and time, with each row's night and what the night-by-night loop needs precomputed from the
data alone (each object's first night, first detection, first bad value and closing night), and
each object's rows up to a night (`ReplayInput.rows_so_far`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax import early, gridding, lightcurve_rows, streaming

NIGHT_OFFSET = 0.5  # night = floor(mjd - NIGHT_OFFSET): noon to noon UTC
_KEY = 1 << 32  # object index * _KEY + night index: one sortable key per row


def night_of(mjd: np.ndarray) -> np.ndarray:
    """(n,) int64 night of each MJD (floor(mjd - 0.5))."""
    return np.floor(np.asarray(mjd, np.float64) - NIGHT_OFFSET).astype(np.int64)


def night_end(night: int) -> float:
    """The last MJD of a night: the rows of the nights up to `night` are those at or before it
    (as `score --as-of` cuts them)."""
    return float(np.nextafter(night + 1 + NIGHT_OFFSET, -np.inf))


class ReplayInput:
    """The input rows sorted by object then time, with their nights and metadata, and what the
    per-night loop needs precomputed (all of it derived from the data alone).

    Attributes:
        rows: sorted rows of the accepted objects; night: (n,) their nights.
        ids: (m,) object ids; starts: (m,) first row of each.
        close_night: (m,) the night from which each object is closed (a large value if never).
        first_night: (m,) the night of its first observation.
        detection_night: (m,) the night of its first detection (a point flagged `detected` or
            with flux/flux_err >= `gridding.DETECTION_SNR`; a large value if never detected).
        reordered: objects whose rows were not in time order in the input, or not consecutive
            in it.
        repeating: objects with two rows of the same mjd and passband (rejected from then on).
        rejected: objects rejected at load (object_id, reason, n_rows): a non-finite MJD, an
            MJD far outside the survey, or metadata without a light curve.
        left_out: objects of the light-curve files or the metadata outside `objects` (not
            replayed).
    """

    def __init__(
        self,
        rows: lightcurve_rows.Rows,
        metadata: pd.DataFrame,
        close_after: float | None,
        objects: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> None:
        # Objects whose rows are out of time order, or spread through the input (their places in
        # it, `positions` or the rows' order, not consecutive), counted before anything is
        # filtered or sorted: a row earlier than the one before it of the same object, in the
        # input's order, or after another object's row.
        positions = np.arange(len(rows)) if positions is None else positions
        order_file = np.argsort(rows.object_id, kind="stable")
        oid, mjd, place = (a[order_file] for a in (rows.object_id, rows.mjd, positions))
        del order_file
        with np.errstate(invalid="ignore"):  # a NaN MJD: its object is rejected at load
            moved = (oid[1:] == oid[:-1]) & ((mjd[1:] < mjd[:-1]) | (place[1:] != place[:-1] + 1))
        reordered = np.unique(oid[1:][moved])
        del oid, mjd, place, moved
        self.left_out = 0
        if objects is not None:
            inside = np.isin(rows.object_id, objects)
            # Of the light curves or the metadata alone (a review: metadata-only objects outside
            # the split were in neither a count nor a list).
            given = np.union1d(rows.object_id, metadata["object_id"].to_numpy(np.int64))
            self.left_out = int(np.setdiff1d(given, objects).size)
            rows = rows if inside.all() else rows.take(inside)
            metadata = metadata[metadata["object_id"].isin(objects)]
        o_file = rows.object_id
        # A time that cannot be placed in a night: not finite, or far outside the survey (a JD
        # given as MJD would make millions of nights).
        non_finite = np.unique(o_file[~np.isfinite(rows.mjd)])
        outside = np.setdiff1d(o_file[gridding.outside_span(rows.mjd)], non_finite)
        bad_ids = np.r_[non_finite, outside]
        counts = pd.Series(o_file[np.isin(o_file, bad_ids)]).value_counts()
        # Metadata objects without a single row are listed too: every input object is accounted.
        no_rows = np.setdiff1d(metadata["object_id"].to_numpy(np.int64), o_file)
        self.rejected = pd.concat(
            [
                rejection_frame(ids, reason, counts.reindex(ids).to_numpy())
                for ids, reason in (
                    (non_finite, gridding.NON_FINITE_MJD),
                    (outside, gridding.OUTSIDE_SPAN),
                )
            ]
            + [rejection_frame(no_rows, streaming.NO_LIGHTCURVE, np.zeros(no_rows.size))],
            ignore_index=True,
        )
        if bad_ids.size:  # no copy of the rows otherwise: they are what the replay's memory holds
            rows = rows.take(~np.isin(o_file, bad_ids))

        order = np.lexsort((rows.passband, rows.mjd, rows.object_id))
        in_order = bool((np.diff(order) == 1).all())  # sorted by object and time, as PLAsTiCC's
        self.rows = rows if in_order else rows.take(order)
        del order
        self.night = night_of(self.rows.mjd)
        n = len(self.rows)
        self.starts = np.flatnonzero(
            np.r_[True, self.rows.object_id[1:] != self.rows.object_id[:-1]]
        )
        self.starts = self.starts if n else np.zeros(0, np.int64)
        self.ids = self.rows.object_id[self.starts]
        self.reordered = int(np.isin(reordered, self.ids).sum())
        self.obj = np.repeat(np.arange(self.ids.size), np.diff(np.r_[self.starts, n]))
        self.first_night = self.night[self.starts] if n else np.zeros(0, np.int64)
        self.base = int(self.night.min()) if n else 0
        self.key = self.obj * _KEY + (self.night - self.base)
        self.close_night = self._close_nights(close_after)
        self.detection_night = self._detection_nights()
        self.problem_night, self.repeating = self._problem_nights()
        self.metadata = streaming.MetaIndex(metadata)

    def _close_nights(self, close_after: float | None) -> np.ndarray:
        never = np.full(self.ids.size, np.iinfo(np.int64).max // 2)
        if close_after is None or not self.ids.size:
            return never
        # The first gap longer than close_after closes the object close_after nights after the
        # observation before it (after its last observation if no gap is that long).
        gap = np.diff(self.night, prepend=self.night[0])
        gap[self.starts] = 0
        hit = np.flatnonzero(gap > close_after)
        first_hit = np.full(self.ids.size, len(self.night))
        np.minimum.at(first_hit, self.obj[hit], hit)
        ends = np.r_[self.starts[1:], len(self.night)]
        last_open = np.minimum(first_hit, ends) - 1
        return self.night[last_open] + math.floor(close_after) + 1

    def _detection_nights(self) -> np.ndarray:
        never = np.full(self.ids.size, np.iinfo(np.int64).max // 2)
        detected = early.detection_rows(self.rows)
        np.minimum.at(never, self.obj[detected], self.night[detected])
        return never

    def _problem_nights(self) -> tuple[np.ndarray, int]:
        """(m,) the night of each object's first row with a bad value or repeating an earlier
        row's mjd and passband (a large value if none): from then on, an object not detected yet
        is rejected for that problem, not as waiting; and the number of objects with a repeated
        row (rejected on every night from it)."""
        never = np.full(self.ids.size, np.iinfo(np.int64).max // 2)
        rows = self.rows  # sorted by object, mjd and passband: a repeated row follows its twin
        repeated = np.zeros(len(rows), bool)
        repeated[1:] = (
            (self.obj[1:] == self.obj[:-1])
            & (rows.mjd[1:] == rows.mjd[:-1])
            & (rows.passband[1:] == rows.passband[:-1])
        )
        bad = (gridding.row_problems(rows) > 0) | repeated
        np.minimum.at(never, self.obj[bad], self.night[bad])
        return never, int(np.unique(self.obj[repeated]).size)

    def rows_so_far(self, objects: np.ndarray, night: int) -> tuple[gridding.Chunk, np.ndarray]:
        """(the objects' rows up to and including `night` as a chunk without metadata, the index
        of each object's last such row + 1)."""
        ends = np.searchsorted(self.key, objects * _KEY + (night - self.base), side="right")
        lengths = ends - self.starts[objects]
        index = np.repeat(ends - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        empty = np.zeros((objects.size, 0), np.float32)
        return gridding.Chunk(self.rows.take(index), starts, empty, np.zeros(objects.size)), ends

    @property
    def nights(self) -> tuple[int, int]:
        """The first and last night of the input (inclusive); (0, -1) without rows."""
        if not len(self.night):
            return 0, -1
        return int(self.night.min()), int(self.night.max())


def rejection_frame(ids: Any, reason: Any, n_rows: Any) -> pd.DataFrame:
    """A frame of rejections: object_id, reason (one or one per object), n_rows."""
    ids = np.asarray(ids, np.int64)
    return pd.DataFrame(
        {
            "object_id": ids,
            "reason": np.broadcast_to(np.asarray(reason, object), ids.shape),
            "n_rows": np.asarray(n_rows, np.int64).reshape(ids.shape),
        }
    )
