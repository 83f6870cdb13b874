"""Reading PLAsTiCC tables: metadata and light curves of either format, in canonical columns.

Formats recognised without flags (plain or gzip, detected by the file's first bytes):

- Kaggle: `training_set.csv`, `training_set_metadata.csv`, `test_set*.csv`,
  `test_set_metadata.csv`; columns `detected`, `ddf`, extra `gal_l`/`gal_b`; empty or NaN for a
  missing value; no `target` in the test metadata (the label becomes -1).
- Unblinded (Zenodo 2539456): `plasticc_{train,test}_lightcurves*.csv.gz`,
  `plasticc_{train,test}_metadata.csv.gz`; columns `detected_bool`, `ddf_bool`; space-padded
  fields; `-9` for a missing value; `true_target` is the label where `target` is absent. The truth
  columns (`true_*`, `tflux_*`, `libid_cadence`) are never read.

Which files of a folder are input is `plasticc_jax.inputs`; the columns, the header and read errors
are `plasticc_jax.csv_files`. Metadata is read whole (`read_metadata`), its impossible values
flagged per object (`METADATA_PROBLEMS`); light curves of any size stream in chunks of whole
objects (`plasticc_jax.lightcurve_rows`), and `read_lightcurves` reads a small file whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from plasticc_jax import plasticc
from plasticc_jax.csv_files import (
    FLAG_VALUES,
    NULL_TOKENS,
    arrow_error,
    file_line,
    file_lines,
    header,
    input_stream,
    map_columns,
)
from plasticc_jax.errors import UserError, listing
from plasticc_jax.lightcurve_rows import read_files

log = logging.getLogger(__name__)

# Columns where the unblinded release writes -9 for "missing" (never a valid value there).
MINUS9_MEANS_MISSING: tuple[str, ...] = (
    "hostgal_specz",
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "mwebv",
)
_META_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    **{c: pa.float64() for c in plasticc.METADATA_COLUMNS[1:]},
    # Read as text, converted by `_flag_or_label_values`: the flag may be written true/false
    # (pandas writes booleans so), and a label that is not a number is the object's problem
    # (`score` needs no label), not the whole file's.
    "ddf": pa.string(),
    "target": pa.string(),
}
# Never read by the model (and optional for `grid_lightcurves` too): a file without them is read,
# their values missing.
OPTIONAL_METADATA: tuple[str, ...] = ("ra", "decl", "hostgal_specz")
# Read for extragalactic objects only: a galactic one's (hostgal_photoz 0) are ignored by the
# gridding (`gridding._grid_valid`), so an impossible value of them rejects no galactic object.
GALACTIC_IGNORED: tuple[str, ...] = ("hostgal_photoz_err", "distmod")
TARGET_PROBLEM = "metadata target not a class number"
# Values whose absence would change an object's score unseen, so a missing one is a problem:
# whether it is in the deep fields (not read as 0), and its host's redshift (0 marks a galactic
# object, scored against the galactic classes; a missing one was taken as extragalactic).
DDF_MISSING = "metadata ddf missing"
PHOTOZ_MISSING = "metadata hostgal_photoz missing (0 marks a galactic object)"
MUST_BE_GIVEN: dict[str, str] = {"ddf": DDF_MISSING, "hostgal_photoz": PHOTOZ_MISSING}
# Per-object metadata problems (code 0: none), found by `metadata_problems`; the object is
# rejected with the reason. NaN means missing and is not a problem, except in `MUST_BE_GIVEN`.
METADATA_PROBLEMS: tuple[str, ...] = (
    "",
    *(
        f"metadata {name} not finite or outside [{low:g}, {high:g}]"
        for name, (low, high) in plasticc.METADATA_RANGES.items()
    ),
    TARGET_PROBLEM,
    DDF_MISSING,
    PHOTOZ_MISSING,
)


def read_metadata(path: Path) -> pd.DataFrame:
    """Read a whole metadata file (either format) into canonical columns.

    Returns:
        One row per object: object_id (int64), ra, decl (deg), ddf (1 or 0; NaN where empty),
        hostgal_specz, hostgal_photoz, hostgal_photoz_err, distmod, mwebv (float64, NaN where
        missing: `-9` and empty both mean missing), target (int64; `target`, else
        `true_target`, else -1), problem (int8: the `METADATA_PROBLEMS` code of an impossible
        or missing value, such as an infinite or missing hostgal_photoz, an empty ddf or a label
        `SNIa`, 0 if none; the object is rejected with that reason). Truth columns are not read.

    Raises:
        UserError: unreadable file, missing column, a non-numeric value but in `target` (with
            its line), no rows, a missing or duplicated object_id.
    """
    path = Path(path)
    names = header(path)
    stripped = [h.strip().lower() for h in names]
    label = next((c for c in plasticc.LABEL_COLUMNS if c in stripped), None)
    aliases = {**plasticc.METADATA_ALIASES, **({label: "target"} if label else {})}
    given = {aliases.get(name, name) for name in stripped}
    absent = [c for c in OPTIONAL_METADATA if c not in given]
    wanted = [c for c in plasticc.METADATA_COLUMNS if c not in absent]
    wanted += ["target"] if label else []
    columns = map_columns(path, names, wanted, aliases, "metadata")
    if absent:
        log.info("%s: no %s column: left empty (never a model input)", path, ", ".join(absent))
    types = {c: _META_TYPES[c] for c in columns}
    try:
        table = pa_csv.read_csv(
            input_stream(path),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(columns.values()),
                column_types={columns[c]: t for c, t in types.items()},
            ),
        )
    except (pa.ArrowException, OSError, EOFError) as error:
        raise arrow_error(path, error, columns, types) from None
    ids = table.column(columns["object_id"])
    if not len(ids):
        raise UserError(
            f"{path}: the file has a header but no rows (no object); give the metadata of the "
            "light curves"
        )
    if ids.null_count:
        line = file_line(path, int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]))
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    ids = ids.to_numpy()
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        oid = int(ids[order][repeated[0]])
        lines = listing(file_lines(path, np.flatnonzero(ids == oid)))
        n_repeated = np.unique(ids[order][repeated]).size
        others = f"; {n_repeated - 1:,} other objects too" if n_repeated > 1 else ""
        raise UserError(
            f"{path}: object {oid} appears more than once (lines {lines}){others}; each object "
            "must have one metadata row"
        )
    # Column by column, dropping each Arrow column once converted: the full test set's metadata
    # (3.5 million rows) then peaks at about twice its size, not four times.
    arrays: dict[str, np.ndarray] = {"object_id": ids}
    problem = np.zeros(ids.size, np.int8)
    for name in [*plasticc.METADATA_COLUMNS[1:], "target"]:
        if name == "target" and not label:
            arrays[name] = np.full(ids.size, plasticc.UNKNOWN_TARGET, np.int64)
            continue
        if name in absent:
            arrays[name] = np.full(ids.size, np.nan)
            continue
        column = table.column(columns[name])
        not_number = np.zeros(ids.size, bool)
        if name in ("ddf", "target"):
            values, not_number = _flag_or_label_values(column, flag=name == "ddf")
            if name == "ddf" and not_number.any():
                row = int(np.flatnonzero(not_number)[0])
                line = file_line(path, row)
                raise UserError(
                    f"{path}: bad value in column {columns[name].strip()!r}, line {line}: "
                    f"{column[row].as_py()!r} is not a flag {FLAG_VALUES}; fix or remove that line"
                )
        else:
            values = column.to_numpy(zero_copy_only=False)
        table = table.drop_columns([columns[name]])
        del column
        if name in MINUS9_MEANS_MISSING:
            values = np.where(values == plasticc.MISSING_VALUE, np.nan, values)
        if name in OPTIONAL_METADATA:  # never read by the model: an impossible value is missing
            values = _unread_value_missing(path, name, values)
        # Before the conversions below hide them; hostgal_photoz is read before the columns it
        # decides about (`METADATA_COLUMNS`).
        _flag_read_problems(name, values, arrays.get("hostgal_photoz"), problem)
        if name == "target":  # a label that is not a number (`SNIa`): not a class number
            problem[(problem == 0) & not_number] = METADATA_PROBLEMS.index(TARGET_PROBLEM)
        # A missing or impossible label becomes -1 (the object is scored without it). A ddf
        # stays as read, NaN where empty: the table then says so itself, also where its
        # `problem` column is not read (a caller's own use of it, `streaming.grid_lightcurves`).
        if name == "target":
            usable = is_class_number(values)
            values = np.where(usable, values, plasticc.UNKNOWN_TARGET).astype(np.int64)
        arrays[name] = values
    arrays["problem"] = problem
    del table
    # Arrow's allocator keeps freed pages (measured: 550 MB for 3.5 million rows); hand them back.
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(arrays)


def _flag_or_label_values(column: pa.ChunkedArray, flag: bool) -> tuple[np.ndarray, np.ndarray]:
    """A text column as float64 (NaN where empty or a null token such as `NA`) and the mask of
    values that are not numbers (`SNIa`); with `flag`, true/false (any case) read as 1/0."""
    text = pc.utf8_trim_whitespace(column)
    lower = pc.utf8_lower(text)
    if flag:
        text = pc.if_else(
            pc.equal(lower, "true"), "1", pc.if_else(pc.equal(lower, "false"), "0", text)
        )
    text = pc.if_else(pc.is_in(lower, value_set=pa.array(sorted(NULL_TOKENS))), None, text)
    try:  # the usual case, fast: every value a number or missing
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), np.zeros(len(text), bool)
    except pa.ArrowInvalid:
        values = pd.to_numeric(pd.Series(text.to_numpy(zero_copy_only=False)), errors="coerce")
        values = values.to_numpy(np.float64)
        return values, text.is_valid().to_numpy(zero_copy_only=False) & np.isnan(values)


def _unread_value_missing(path: Path | str, name: str, values: np.ndarray) -> np.ndarray:
    """`values` of a column the model never reads (`OPTIONAL_METADATA`), those outside its
    `plasticc.METADATA_RANGES` read as missing, with a note: they rejected scorable objects
    (`hostgal_specz` -1 or `decl` -99, as some catalogues mark a missing value)."""
    low, high = plasticc.METADATA_RANGES[name]
    with np.errstate(invalid="ignore"):
        outside = ~np.isnan(values) & ~((values >= low) & (values <= high))
    if not outside.any():
        return values
    log.info(
        "%s: %d values of %s outside [%g, %g] read as missing (the model never reads %s)",
        path,
        int(outside.sum()),
        name,
        low,
        high,
        name,
    )
    return np.where(outside, np.nan, values)


def _flag_read_problems(
    name: str, values: np.ndarray, photoz: np.ndarray | None, problem: np.ndarray
) -> None:
    """`_flag_problems` of the values the model reads: none of a column it never reads
    (`OPTIONAL_METADATA`), and of `GALACTIC_IGNORED` only the extragalactic objects' (`photoz`,
    hostgal_photoz, not 0; None: no such column, every object's)."""
    if name in OPTIONAL_METADATA:
        return
    if name in GALACTIC_IGNORED and photoz is not None:
        values = np.where(photoz != 0, values, np.nan)
    _flag_problems(name, values, problem)


def _flag_problems(name: str, values: np.ndarray, problem: np.ndarray) -> None:
    """Set the `METADATA_PROBLEMS` code of the rows whose `name` value is impossible (in place;
    the first problem of a row wins). NaN is a missing value, not a problem, except for the
    columns of `MUST_BE_GIVEN`."""
    given = ~np.isnan(values)
    if name in MUST_BE_GIVEN:
        problem[(problem == 0) & ~given] = METADATA_PROBLEMS.index(MUST_BE_GIVEN[name])
    if name == "target":
        bad = given & ~is_class_number(values)
        code = METADATA_PROBLEMS.index(TARGET_PROBLEM)
    elif name in plasticc.METADATA_RANGES:
        low, high = plasticc.METADATA_RANGES[name]
        bad = given & ~((values >= low) & (values <= high))
        if name == "ddf":
            bad |= given & (values != np.round(values))
        code = list(plasticc.METADATA_RANGES).index(name) + 1
    else:
        return
    problem[(problem == 0) & bad] = code


def is_class_number(values: np.ndarray) -> np.ndarray:
    """Whether each label can be a class number (a whole number within int32; NaN is not)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(values) < 2**31) & (values == np.round(values))


def metadata_problems(metadata: pd.DataFrame) -> np.ndarray:
    """(n,) int8 `METADATA_PROBLEMS` codes of canonical metadata columns (`-9` already missing),
    for tables that did not come through `read_metadata`."""
    problem = np.zeros(len(metadata), np.int8)
    photoz = (
        metadata["hostgal_photoz"].to_numpy(np.float64) if "hostgal_photoz" in metadata else None
    )
    for name in [*plasticc.METADATA_COLUMNS[1:], "target"]:
        if name in metadata:
            _flag_read_problems(name, metadata[name].to_numpy(np.float64), photoz, problem)
    return problem


def labels_optional(metadata: pd.DataFrame, warn: bool = True) -> pd.DataFrame:
    """The metadata for scoring, which needs no label: an object whose label is not a class
    number (`target` or `true_target` 90.5, 1e300, `SNIa`) is scored without one (its target is -1
    already) instead of rejected, with a warning. `prepare` keeps rejecting it: it trains on
    labels. `warn=False`: no warning (a Dask worker; the driver warns once)."""
    bad = metadata["problem"].to_numpy() == METADATA_PROBLEMS.index(TARGET_PROBLEM)
    if not bad.any():
        return metadata
    if warn:
        warn_unlabelled(metadata["object_id"].to_numpy()[bad])
    metadata = metadata.copy()
    metadata.loc[bad, "problem"] = 0
    return metadata


def warn_unlabelled(object_ids: np.ndarray) -> None:
    """The warning that these objects, whose label is not a class number, are scored without."""
    log.warning(
        "%d objects have a label that is not a class number (object %d first): scored without "
        "a label",
        object_ids.size,
        int(object_ids[0]),
    )


def read_metadata_files(paths: Sequence[Path]) -> pd.DataFrame:
    """Read and concatenate metadata files; adds `source` (index into `paths`)."""
    frames = []
    for index, path in enumerate(paths):
        frame = read_metadata(path)
        frame["source"] = np.int32(index)
        frames.append(frame)
    if len(frames) == 1:
        metadata = frames[0]
    else:
        metadata = pd.concat(frames, ignore_index=True) if frames else _empty_metadata()
    duplicated = metadata["object_id"].duplicated()
    if duplicated.any():
        oid = int(metadata["object_id"][duplicated].iloc[0])
        files = [str(paths[i]) for i in metadata["source"][metadata["object_id"] == oid]]
        raise UserError(f"object {oid} is in more than one metadata file: {', '.join(files)}")
    return metadata


def _empty_metadata() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in plasticc.METADATA_COLUMNS})
    frame["object_id"] = frame["object_id"].astype(np.int64)
    frame["target"] = pd.Series(dtype=np.int64)
    frame["problem"] = pd.Series(dtype=np.int8)
    frame["source"] = pd.Series(dtype=np.int32)
    return frame


def read_lightcurves(path: Path) -> pd.DataFrame:
    """Read a (small) light-curve file whole, in canonical columns.

    Returns:
        object_id (int64), mjd (days), passband (int64, 0-5 = ugrizy), flux, flux_err (FLUXCAL,
        float64), detected (bool); rows in file order.
    """
    rows = read_files([Path(path)], 1 << 62)
    return pd.DataFrame({c: getattr(rows, c) for c in plasticc.LIGHTCURVE_COLUMNS})
