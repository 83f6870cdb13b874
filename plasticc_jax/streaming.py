"""Light-curve files and tables to gridded arrays.

`stream_grids` grids light-curve files chunk by chunk at memory bounded by the chunk size: each
chunk of whole objects (`lightcurve_rows.object_chunks`) is checked in the reading thread
(grouping by object, the metadata join, exclusions) and gridded (`gridding.grid_chunk`) in worker
threads while the next chunk is parsed. An object that reappears after other objects is an error
(the file is not grouped). The output does not depend on the number of workers or on the chunk
size. `grid_lightcurves` does the same for in-memory tables. What is gridded then goes to the
model through `plasticc_jax.batches`.
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from plasticc_jax import early, gridding, lightcurve_rows, plasticc, processes, readers
from plasticc_jax.config import DataConfig
from plasticc_jax.csv_files import file_line, file_lines
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)

# Rejection reasons of the metadata join (the kernel's own are `gridding.REASONS`).
NO_METADATA = "light curve without metadata"
NO_LIGHTCURVE = "metadata without light curve"
# Seconds between the log's progress lines where no progress bar is shown.
PROGRESS_LOG_S = 60.0


# ---------------------------------------------------------------------------------------------
# Metadata lookup and the checks before gridding.


class MetaIndex:
    """Metadata sorted by object_id, for vectorised lookup, plus which objects were seen."""

    def __init__(
        self,
        metadata: pd.DataFrame,
        exclude: np.ndarray | None = None,
        names: Sequence[str] = (),
    ) -> None:
        """`names`: the metadata files' names in rejection lists, by `source` (`source_names`)."""
        order = np.argsort(metadata["object_id"].to_numpy(), kind="stable")
        self.names = list(names) or ["metadata"]
        self.ids = metadata["object_id"].to_numpy()[order]
        # float32: the features are float32 anyway, and this table has one row per input object.
        self.values = np.empty((order.size, len(gridding.META_VALUES)), np.float32)
        with np.errstate(over="ignore"):  # beyond float32: such objects are rejected (`problem`)
            for column, name in enumerate(gridding.META_VALUES):
                self.values[:, column] = metadata[name].to_numpy()[order]
        self.target = metadata["target"].to_numpy(np.int64)[order]
        source = metadata["source"] if "source" in metadata else pd.Series(0, metadata.index)
        self.source = source.to_numpy()[order]
        # Impossible metadata values (`readers.METADATA_PROBLEMS`) reject the object at the join.
        problem = (
            metadata["problem"] if "problem" in metadata else readers.metadata_problems(metadata)
        )
        self.problem = np.asarray(problem, np.int8)[order]
        self.seen = np.zeros(self.ids.size, bool)
        self.excluded = np.zeros(self.ids.size, bool)
        if exclude is not None and len(exclude):
            self.excluded = np.isin(self.ids, exclude)
        self.seen_elsewhere: dict[int, str] = {}  # light-curve objects without metadata
        self.last: tuple[Path, int] | None = None  # the file and object of the last row read
        # The files read, in order, and the one each object was first seen in (-1: not yet),
        # for the message when an object's rows are in two files.
        self.files: list[Path] = []
        self.seen_in = np.full(self.ids.size, -1, np.int32)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(self.ids, ids), max(self.ids.size - 1, 0))
        found = self.ids[pos] == ids if self.ids.size else np.zeros(ids.size, bool)
        return pos, found

    def fresh(self) -> MetaIndex:
        """The same metadata with nothing seen yet (the tables are shared, not copied)."""
        index = copy.copy(self)
        index.seen = np.zeros(self.ids.size, bool)
        index.seen_elsewhere = {}
        index.last = None
        index.files = []
        index.seen_in = np.full(self.ids.size, -1, np.int32)
        return index

    def seen_ids(self) -> np.ndarray:
        """(n,) int64: every light-curve object seen, with or without metadata."""
        elsewhere = np.fromiter(self.seen_elsewhere, np.int64, len(self.seen_elsewhere))
        return np.concatenate([self.ids[self.seen].astype(np.int64), elsewhere])

    def mark_seen(self, ids: np.ndarray) -> None:
        """Mark objects as seen (those without metadata are ignored)."""
        pos, found = self.lookup(np.asarray(ids, np.int64))
        self.seen[pos[found]] = True

    def unseen_rejections(self) -> pd.DataFrame:
        """Metadata objects whose light curve never came (not excluded), in object_id order."""
        unseen = ~self.seen & ~self.excluded
        return _rejections(self.ids[unseen], NO_LIGHTCURVE, self.file_names(unseen))

    def file_names(self, rows: np.ndarray) -> list[str]:
        """The metadata file of each of these rows (an index or mask), as rejection lists name
        it (`names`)."""
        last = len(self.names) - 1
        return [self.names[min(int(s), last)] for s in self.source[rows]]


def _rejections(
    ids: np.ndarray, reasons: Sequence[str] | str, source: Sequence[str] | str
) -> pd.DataFrame:
    """A rejection table (object_id, reason, source); building an empty one is skipped (it costs
    about 0.3 ms per chunk, measured 15% of the whole stream)."""
    if not len(ids):
        return _NO_REJECTIONS
    return pd.DataFrame(
        {"object_id": np.asarray(ids, np.int64), "reason": reasons, "source": source}
    )


_NO_REJECTIONS = pd.DataFrame(
    {
        "object_id": np.zeros(0, np.int64),
        "reason": np.zeros(0, object),
        "source": np.zeros(0, object),
    }
)


def concat_rejections(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One rejection frame (object_id, reason, source) of several, also of none."""
    if not parts:
        return _NO_REJECTIONS.copy()
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def source_names(paths: Sequence[Path]) -> list[str]:
    """How rejection lists name the input files: by file name, or by the paths as given where
    two files have the same name."""
    names = [Path(p).name for p in paths]
    unique = len({Path(p).name for p in set(paths)}) == len(set(paths))
    return names if unique else [str(p) for p in paths]


def _plan(
    rows: lightcurve_rows.Rows, path: Path, source: str, index: MetaIndex
) -> tuple[gridding.Chunk, pd.DataFrame, np.ndarray]:
    """Checks of one chunk before gridding (in order, in the reading thread): grouping by object,
    the metadata join, exclusions. Returns the chunk to grid, the objects without metadata (their
    `source`: the file's name in rejection lists) or with impossible metadata values (named by
    their metadata file, `MetaIndex.names`), and every object id of the chunk in input order."""
    ids = rows.object_id
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_ids = ids[starts]
    unique, counts = np.unique(run_ids, return_counts=True)
    if (counts > 1).any():
        oid = int(unique[counts > 1][0])
        lines = file_lines(path, rows.first_row + starts[run_ids == oid][:2])
        raise UserError(
            f"{path}: rows of object {oid} are not contiguous (lines {lines[0]} and {lines[1]}); "
            "light-curve files must be grouped by object_id (sort the file by object_id)"
        )
    pos, found = index.lookup(run_ids)
    again = found.copy()
    again[found] = index.seen[pos[found]]
    lost = run_ids[~found]
    if lost.size:
        again_lost = [int(i) for i in lost if int(i) in index.seen_elsewhere]
        if again_lost:
            again[np.flatnonzero(run_ids == again_lost[0])] = True
    if not index.files or index.files[-1] != path:
        index.files.append(path)
    if again.any():
        oid = int(run_ids[again][0])
        row = rows.first_row + int(starts[again][0])
        if row == 0 and index.last is not None and index.last[1] == oid and index.last[0] != path:
            raise UserError(  # a file cut by lines: the object goes on from the previous one
                f"{path}: object {oid} goes on from the end of {index.last[0]}: an object's rows "
                "must all be in one file (cut files at object boundaries, or join them again)"
            )
        at = int(np.flatnonzero(run_ids == oid)[0])
        first = index.files[index.seen_in[pos[at]]] if found[at] else None
        other = first if first is not None else index.seen_elsewhere.get(oid)
        if other is not None and str(other) not in (str(path), path.name):
            raise UserError(
                f"{path}: object {oid} (line {file_line(path, row)}) is also in {other}: an "
                "object's rows must all be in one file (the same file given twice, or a "
                "decompressed copy beside its .gz?)"
            )
        raise UserError(
            f"{path}: object {oid} reappears at line {file_line(path, row)} after rows of other "
            "objects; light-curve files must be grouped by object_id (sort the file by "
            "object_id), and an object must not be in two files"
        )
    index.seen[pos[found]] = True
    index.seen_in[pos[found]] = len(index.files) - 1
    if run_ids.size:
        index.last = (path, int(run_ids[-1]))
    for oid in lost:
        index.seen_elsewhere[int(oid)] = source
    keep = found.copy()
    keep[found] = ~index.excluded[pos[found]]
    rejected = _rejections(lost, NO_METADATA, source)
    problem = np.zeros(run_ids.size, np.int8)
    problem[keep] = index.problem[pos[keep]]
    if problem.any():
        bad = np.flatnonzero(problem)
        reasons = [readers.METADATA_PROBLEMS[c] for c in problem[bad]]
        # Named by the metadata file that holds the value (a review: by the light curves').
        bad_meta = _rejections(run_ids[bad], reasons, index.file_names(pos[bad]))
        rejected = pd.concat([rejected, bad_meta], ignore_index=True) if len(lost) else bad_meta
        keep[bad] = False
    if not keep.all():
        rows, starts = gridding.take_objects(rows, starts, keep)
        pos = pos[keep]
    else:
        pos = pos[found]
    chunk = gridding.Chunk(rows, starts, index.values[pos], index.target[pos])
    return chunk, rejected, run_ids


def _finish(
    result: gridding.GridResult,
    rejected: pd.DataFrame,
    order: np.ndarray,
    source: str,
    min_obs: int,
) -> tuple[LightCurveArrays, pd.DataFrame]:
    """The gridded objects, and all the chunk's rejections in input order (`order`: its object
    ids), so that where the input is cut into chunks or parts never reorders them."""
    reasons = [gridding.rejection_reason(c, min_obs) for c in result.rejected_codes]
    own = _rejections(result.rejected_ids, reasons, source)
    if not len(rejected) or not len(own):
        return result.arrays, own if len(own) else rejected
    both = pd.concat([rejected, own], ignore_index=True)
    sorter = np.argsort(order, kind="stable")
    position = sorter[np.searchsorted(order, both["object_id"].to_numpy(), sorter=sorter)]
    return result.arrays, both.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Files and tables to gridded arrays.


def stream_grids(
    lightcurve_paths: Sequence[Path | lightcurve_rows.FilePart],
    metadata_paths: Sequence[Path],
    data: DataConfig,
    workers: int | None = None,
    *,
    metadata: pd.DataFrame | None = None,
    exclude: np.ndarray | None = None,
    file_rows: list[int] | None = None,
    index: MetaIndex | None = None,
    stages: Sequence[float] = (),
    as_of: float | None = None,
) -> Iterator[tuple[LightCurveArrays, pd.DataFrame]]:
    """Grid light-curve files chunk by chunk, in file order, at memory bounded by the chunk size.

    Args:
        lightcurve_paths: light-curve CSV(.gz) files, each grouped by object_id, or parts of
            them (`lightcurve_rows.FilePart`).
        metadata_paths: their metadata files (read whole; small).
        data: grid and chunk settings (`n_time_bins`, `window_*`, `min_observations`,
            `chunk_rows`, `workers`).
        workers: chunks gridded at once, in threads, while the next chunk is read (None:
            `data.workers`; 1: read and grid in turn). The output is the same for any number.
        metadata: already-read metadata (`readers.read_metadata_files`), instead of reading the
            paths.
        exclude: object ids to skip silently (the caller accounts for them).
        file_rows: if given, receives the number of data rows of each light-curve file (part).
        index: the metadata as a `MetaIndex` (instead of `metadata`, `metadata_paths` and
            `exclude`), whose `seen` marks this call updates; the objects it never sees are then
            the caller's to report (`MetaIndex.unseen_rejections`): the last item is not yielded.
        stages: also yield each object cut at these days after its first detection, after the
            chunk's complete objects (`early.grid_stages`; their `stage` column says which).
        as_of: grid only the observations up to this MJD (`early.grid_as_of`); an object with
            none is rejected (too few observations).

    Yields:
        (arrays, rejections) per chunk, in input order: the gridded objects (`is_anomaly` False:
        labels are the caller's), and a frame (object_id, reason, source) of the objects
        rejected, also in input order. After the last chunk, one more item with no objects lists
        the metadata objects that had no light curve.
    """
    own_index = index is None
    if index is None:
        if metadata is None:
            metadata = readers.read_metadata_files(metadata_paths)
        index = MetaIndex(metadata, exclude, source_names(metadata_paths))
    del metadata  # the index holds what is needed, sorted
    spec = gridding.GridSpec.from_config(data)
    if as_of is not None:
        grid = functools.partial(early.grid_as_of, as_of=float(as_of))
    elif stages:
        grid = functools.partial(early.grid_stages, stages=tuple(stages))
    else:
        grid = gridding.grid_chunk
    workers = data.workers if workers is None else workers
    chunk_rows = max(int(data.chunk_rows), 1)

    def planned() -> Iterator[tuple[gridding.Chunk, pd.DataFrame, np.ndarray, str, int]]:
        paths = [
            s.path if isinstance(s, lightcurve_rows.FilePart) else Path(s) for s in lightcurve_paths
        ]
        for source, path, name in zip(lightcurve_paths, paths, source_names(paths), strict=True):
            n_rows = 0
            for rows in lightcurve_rows.object_chunks(source, chunk_rows):
                n_rows += len(rows)
                chunk, rejected, order = _plan(rows, path, name, index)
                yield chunk, rejected, order, name, len(rows)
            if not n_rows and not isinstance(source, lightcurve_rows.FilePart):
                raise lightcurve_rows.no_rows_error(path)
            if file_rows is not None:
                file_rows.append(n_rows)

    processes.thread_lock_for_progress_bars()  # this process's first bar, in a Dask worker
    progress = tqdm(unit=" rows", unit_scale=True, desc="gridding", disable=None, leave=False)
    # Where the bar is off (the output goes to a file, not a terminal), a log line now and then:
    # a review's log said nothing for minutes between the start and the end of a large score.
    gridded, said = 0, time.monotonic()

    def finished(
        item: tuple[Future, pd.DataFrame, np.ndarray, str, int],
    ) -> tuple[LightCurveArrays, pd.DataFrame]:
        nonlocal gridded, said
        future, rej, order, src, count = item
        progress.update(count)
        gridded += count
        if progress.disable and time.monotonic() - said >= PROGRESS_LOG_S:
            log.info("gridded %s rows so far (%s)", f"{gridded:,}", src)
            said = time.monotonic()
        return _finish(future.result(), rej, order, src, spec.min_observations)

    with progress, ThreadPoolExecutor(max(workers, 1)) as pool:
        # Threads, not processes: parsing (pyarrow) and gridding (NumPy) run in C without the GIL,
        # so they overlap; processes would pickle every chunk (measured slower).
        # A bounded queue of chunks in flight keeps memory flat and the order fixed.
        queue: collections.deque[tuple[Future, pd.DataFrame, np.ndarray, str, int]]
        queue = collections.deque()  # (future, rejected, order, source, rows)
        for chunk, *rest in planned():
            queue.append((pool.submit(grid, chunk, spec), *rest))
            while len(queue) > max(workers - 1, 0):
                yield finished(queue.popleft())
        while queue:
            yield finished(queue.popleft())

    if own_index:  # metadata objects whose light curve never came
        yield gridding.empty_arrays(spec.n_time_bins), index.unseen_rejections()


# Beyond this, a float64 no longer holds every integer: object ids are read as integers.
_EXACT_IN_FLOAT = 2**53
_INT64 = np.iinfo(np.int64)


def _numbers(frame: pd.DataFrame, column: str, what: str, whole: bool = False) -> np.ndarray:
    """A column as float64 (int64 if `whole`), or a UserError naming its first bad value: text,
    or (`whole`) a missing or fractional value, or one a float cannot hold exactly."""
    values = frame[column]
    if values.dtype.kind in "mM" or isinstance(values.dtype, pd.PeriodDtype):
        raise UserError(  # pd.to_numeric would give their nanoseconds
            f"{what}: column {column!r} holds dates or durations ({values.dtype}): give numbers"
            + (" (MJD in days: Time(dates).mjd with astropy)" if column == "mjd" else "")
        )
    if whole and not pd.api.types.is_bool_dtype(values):
        numeric = pd.api.types.is_numeric_dtype(values)
        exact = values if numeric else pd.to_numeric(values, errors="coerce")
        if pd.api.types.is_integer_dtype(exact) and not exact.isna().any():
            beyond = np.asarray((exact > _INT64.max) | (exact < _INT64.min))  # uint64
            if beyond.any():
                _bad_value(values, beyond, column, what, "a whole number within int64")
            return exact.to_numpy(np.int64)  # read as integers: exact at any size
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad = np.isnan(numbers.to_numpy()) & values.notna().to_numpy()
    if whole:
        number = numbers.to_numpy()
        bad |= ~np.isfinite(number) | (number % 1 != 0) | (np.abs(number) > _EXACT_IN_FLOAT)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        wanted = (
            "a whole number" + _whole_hint(column, values.iloc[first], numbers.iat[first])
            if whole
            else "a number"
        )
        _bad_value(values, bad, column, what, wanted)
    return numbers.to_numpy(np.int64 if whole else np.float64)


def _whole_hint(column: str, value: object, number: float) -> str:
    """What to give instead of a bad value of a column of whole numbers (`_numbers`)."""
    if pd.isna(value):  # type: ignore[call-overload]
        return ", not a missing value"
    if isinstance(value, str) and np.isnan(number):
        if column == "passband":
            return ": write 0-5 for u, g, r, i, z, y"
        return (
            ": ids are integers here (map names such as this one to integers, and keep the mapping)"
        )
    if np.isfinite(number) and abs(number) > _EXACT_IN_FLOAT:
        return " (one beyond 2**53 as an integer, not a float)"
    return ""


def _labels(meta: pd.DataFrame) -> np.ndarray:
    """(n,) int64 labels of a caller's metadata for scoring, which needs none: missing, or not a
    class number (90.5, `SNIa`), is -1, the latter with a warning (as `readers.labels_optional`
    does for files)."""
    if "target" not in meta:
        return np.full(len(meta), plasticc.UNKNOWN_TARGET, np.int64)
    given = meta["target"].notna().to_numpy()
    numbers = pd.to_numeric(meta["target"], errors="coerce").to_numpy(np.float64)
    usable = readers.is_class_number(numbers)
    if (given & ~usable).any():
        readers.warn_unlabelled(meta["object_id"].to_numpy()[given & ~usable])
    return np.where(usable, numbers, plasticc.UNKNOWN_TARGET).astype(np.int64)


def object_ids(frame: pd.DataFrame, what: str) -> np.ndarray:
    """(n,) int64 `object_id` of a caller's table, read exactly (see `_numbers`)."""
    return _numbers(frame, "object_id", what, whole=True)


def _bad_value(values: pd.Series, bad: np.ndarray, column: str, what: str, wanted: str) -> None:
    first = int(np.flatnonzero(bad)[0])
    value = values.iloc[first]
    shown = repr(value) if isinstance(value, str) else str(value)
    raise UserError(
        f"{what}: column {column!r}, row {first} (index {values.index[first]}): {shown} "
        f"is not {wanted} ({int(bad.sum())} such rows)"
    )


def _flags(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """A detection flag column as bool, as the CSV reader takes it: true/false or 1/0 (text,
    numbers or booleans). Anything else, a missing value included, is a UserError (text such as
    "0" would otherwise be truthy, and a missing flag read as "not detected" changes the score)."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values) and not values.isna().any():
        return values.to_numpy(bool)
    if pd.api.types.is_numeric_dtype(values):
        number = values.to_numpy(np.float64, na_value=np.nan)
        flag, off = number == 1, number == 0
    else:
        text = values.astype("string").str.strip().str.lower()
        flag = text.isin(["1", "true"]).fillna(False).to_numpy(bool)
        off = text.isin(["0", "false"]).fillna(False).to_numpy(bool)
    bad = ~(flag | off)
    if bad.any():
        _bad_value(values, bad, column, what, "a detection flag (true/false or 1/0)")
    return flag


def lower_names(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """`frame` with its column names stripped and in lower case, as the CSV readers take them
    (`OBJECT_ID`); `what` names the table in the message.

    Raises:
        UserError: two columns of one name but for case or spaces (`MJD` and `mjd`).
    """
    lowered = [str(column).strip().lower() for column in frame.columns]
    if lowered == list(frame.columns):
        return frame
    twice = sorted({c for c in lowered if lowered.count(c) > 1})
    if twice:
        raise UserError(
            f"{what} has the column {twice[0]!r} twice (names differing only in capitals or "
            "spaces): give it once"
        )
    return frame.set_axis(lowered, axis=1)


def grid_lightcurves(
    lightcurves: pd.DataFrame,
    metadata: pd.DataFrame,
    data: DataConfig,
    *,
    as_of: float | None = None,
    caller: str = "grid_lightcurves",
) -> tuple[LightCurveArrays, pd.DataFrame]:
    """Grid in-memory tables (any row order) in this thread.

    Args:
        lightcurves: columns object_id, mjd, passband, flux, flux_err, detected (or
            `detected_bool`), their names in any case (`OBJECT_ID`), as the CSV readers take
            them.
        metadata: canonical metadata (`readers.read_metadata`); `ddf_bool`, names in any case
            and `-9` are accepted too.
        data: grid settings.
        as_of: grid only the observations up to this MJD, as `stream_grids` does
            (`early.grid_as_of`: the arrays' `stage` is the days since the first detection
            then; an object not detected by then is rejected).
        caller: the public function that errors about the tables name (`score_dataframe`).

    Returns:
        The gridded objects (sorted by object_id; `is_anomaly` False) and the rejections
        (object_id, reason, source).
    """
    if as_of is not None:
        early.check_as_of(as_of, f"{caller}: as_of")
    for frame, what in ((lightcurves, "light curves"), (metadata, "metadata")):
        if not isinstance(frame, pd.DataFrame):
            raise UserError(
                f"{caller}: the {what} are a {type(frame).__name__}: give a pandas "
                "DataFrame (pd.DataFrame(...) of it)"
            )
    lightcurves = lower_names(lightcurves, f"{caller}: the light curves")
    metadata = lower_names(metadata, f"{caller}: the metadata")
    for frame, aliases, what in (
        (lightcurves, plasticc.LIGHTCURVE_ALIASES, "light curves"),
        (metadata, plasticc.METADATA_ALIASES, "metadata"),
    ):
        both = [(a, c) for a, c in aliases.items() if a in frame and c in frame]
        if both:
            raise UserError(
                f"{caller}: the {what} have both {both[0][0]!r} and {both[0][1]!r}, two "
                "names of one column (the two PLAsTiCC formats): keep one"
            )
    lcs = lightcurves.rename(columns=plasticc.LIGHTCURVE_ALIASES)
    # `problem` and `source` are this package's own columns (`readers.read_metadata`): a
    # caller's columns of those names mean something else; the problems are found again from
    # the values below.
    meta = metadata.rename(columns=plasticc.METADATA_ALIASES).drop(
        columns=["problem", "source"], errors="ignore"
    )
    missing = [c for c in plasticc.LIGHTCURVE_COLUMNS if c not in lcs]
    missing_meta = [c for c in ("object_id", *gridding.META_VALUES) if c not in meta]
    if missing or missing_meta:
        raise UserError(
            f"{caller}: missing columns {missing + missing_meta}; light curves have "
            f"{list(lightcurves.columns)}, metadata {list(metadata.columns)}"
        )
    object_id = _numbers(lcs, "object_id", "light curves", whole=True)
    meta["object_id"] = _numbers(meta, "object_id", "metadata", whole=True)
    if lcs["mjd"].dtype in (np.float32, np.float16):
        # float32 holds an MJD near 60,000 to 4 minutes: points move across the grid's bins.
        log.warning(
            "the light curves' mjd column is %s, whose rounding moves dates by minutes: pass "
            "float64 dates (as read from the file) for the scores of the full-precision dates",
            lcs["mjd"].dtype,
        )
    if "ddf" in meta and not pd.api.types.is_numeric_dtype(meta["ddf"]):  # true/false, as in CSV
        flag = meta["ddf"].astype(str).str.strip().str.lower()
        meta["ddf"] = meta["ddf"].mask(flag == "true", 1).mask(flag == "false", 0)
    for column in [*gridding.META_VALUES, "ra", "decl", "hostgal_specz"]:
        if column in meta:
            meta[column] = _numbers(meta, column, "metadata")
    for column in readers.MINUS9_MEANS_MISSING:
        if column in meta:
            meta[column] = meta[column].mask(meta[column] == plasticc.MISSING_VALUE)
    meta["target"] = _labels(meta)
    if meta["object_id"].duplicated().any():
        oid = int(meta["object_id"][meta["object_id"].duplicated()].iloc[0])
        raise UserError(f"{caller}: object {oid} appears more than once in the metadata")
    order = np.argsort(object_id, kind="stable")
    rows = lightcurve_rows.Rows(
        object_id[order],
        _numbers(lcs, "mjd", "light curves")[order],
        _numbers(lcs, "passband", "light curves", whole=True)[order],
        _numbers(lcs, "flux", "light curves")[order],
        _numbers(lcs, "flux_err", "light curves")[order],
        _flags(lcs, "detected", "light curves")[order],
        0,
    )
    spec = gridding.GridSpec.from_config(data)
    index = MetaIndex(meta)
    parts: list[pd.DataFrame] = []
    arrays = gridding.empty_arrays(spec.n_time_bins)
    if len(rows):
        chunk, rejected, order = _plan(rows, Path("lightcurves"), "lightcurves", index)
        if as_of is None:
            result = gridding.grid_chunk(chunk, spec)
        else:
            result = early.grid_as_of(chunk, spec, float(as_of))
        arrays, rejected = _finish(result, rejected, order, "lightcurves", spec.min_observations)
        parts.append(rejected)
    unseen = ~index.seen
    parts.append(_rejections(index.ids[unseen], NO_LIGHTCURVE, "metadata"))
    return arrays, pd.concat(parts, ignore_index=True)
