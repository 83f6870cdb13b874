"""Reading PLAsTiCC CSV files: which files count as input, their two formats, chunks of rows.

Formats recognised without flags (plain or gzip, detected by the file's first bytes):

- Kaggle: `training_set.csv`, `training_set_metadata.csv`, `test_set*.csv`,
  `test_set_metadata.csv`; columns `detected`, `ddf`, extra `gal_l`/`gal_b`; empty or NaN for a
  missing value; no `target` in the test metadata (the label becomes -1).
- Unblinded (Zenodo 2539456): `plasticc_{train,test}_lightcurves*.csv.gz`,
  `plasticc_{train,test}_metadata.csv.gz`; columns `detected_bool`, `ddf_bool`; space-padded
  fields; `-9` for a missing value; `true_target` is the label where `target` is absent. The truth
  columns (`true_*`, `tflux_*`, `libid_cadence`) are never read.

`find_inputs` is the one definition of which files of a folder are input. Light-curve files are
read with pyarrow's streaming CSV reader in blocks of about `chunk_rows` rows (`read_rows`), and
`object_chunks` cuts them at object boundaries: PLAsTiCC files are grouped by object, so the
trailing object of a block is carried over to the next and each chunk holds whole objects. Memory
is bounded by the chunk size, not by the input. `split_file` cuts a plain (not gzip) file into
`FilePart`s of whole objects at byte offsets, for reading in parallel (`plasticc_jax.distributed`).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from plasticc_jax import plasticc
from plasticc_jax.config import INPUT_SELECTIONS
from plasticc_jax.errors import UserError, listing

log = logging.getLogger(__name__)

# Columns where the unblinded release writes -9 for "missing" (never a valid value there).
MINUS9_MEANS_MISSING: tuple[str, ...] = (
    "hostgal_specz",
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "mwebv",
)
LIGHTCURVE_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    "mjd": pa.float64(),
    "passband": pa.int64(),
    "flux": pa.float64(),
    "flux_err": pa.float64(),
    "detected": pa.bool_(),
}
_META_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    **{c: pa.float64() for c in plasticc.METADATA_COLUMNS[1:]},
    "target": pa.float64(),
}
# Tokens pyarrow reads as null (its defaults), used when locating a bad value.
_NULL_TOKENS = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan"})
_NULL_TOKENS |= frozenset({"1.#ind", "1.#qnan", "n/a", "na", "nan", "null", "<na>"})
_BOOL_TOKENS = frozenset({"0", "1", "true", "false"})
# Per-object metadata problems (code 0: none), found by `metadata_problems`; the object is
# rejected with the reason. NaN means missing and is not a problem.
METADATA_PROBLEMS: tuple[str, ...] = (
    "",
    *(
        f"metadata {name} not finite or outside [{low:g}, {high:g}]"
        for name, (low, high) in plasticc.METADATA_RANGES.items()
    ),
    "metadata target not a class number",
)


# ---------------------------------------------------------------------------------------------
# Which files are input.


@dataclass(frozen=True)
class InputFiles:
    """The input files of a folder: one format, one selection (train, test or all)."""

    fmt: str
    selection: str
    lightcurves: tuple[Path, ...]
    metadata: tuple[Path, ...]


SELECTIONS: tuple[str, ...] = INPUT_SELECTIONS
_CSV = r"\.csv(?:\.gz)?"
FILE_PATTERNS: dict[str, dict[str, tuple[str, str]]] = {
    # format -> set -> (light-curve regex, metadata regex), matched against file names.
    "unblinded": {
        "train": (rf"plasticc_train_lightcurves.*{_CSV}", rf"plasticc_train_metadata{_CSV}"),
        "test": (rf"plasticc_test_lightcurves.*{_CSV}", rf"plasticc_test_metadata{_CSV}"),
    },
    "kaggle": {
        "train": (rf"training_set{_CSV}", rf"training_set_metadata{_CSV}"),
        # test_set_sample.csv is a subset of test_set.csv: reading both would duplicate objects.
        "test": (rf"test_set(?!_metadata|_sample)[^/]*?{_CSV}", rf"test_set_metadata{_CSV}"),
    },
}


# The same names, as a person would write them (for messages).
EXPECTED_NAMES: dict[str, str] = {
    "train": "training_set.csv + training_set_metadata.csv (Kaggle) or "
    "plasticc_train_lightcurves.csv + plasticc_train_metadata.csv (unblinded)",
    "test": "test_set.csv + test_set_metadata.csv (Kaggle) or "
    "plasticc_test_lightcurves_*.csv + plasticc_test_metadata.csv (unblinded)",
}


def expected_names(selection: str) -> str:
    """What `find_inputs` looks for, in words: `training_set.csv + ... (each may end in .gz)`."""
    sets = ("train", "test") if selection == "all" else (selection,)
    return "; ".join(EXPECTED_NAMES[name] for name in sets) + ", each as .csv or .csv.gz"


def data_files(folder: Path) -> list[str]:
    """Names of the files in `folder` that may be someone's data: all but hidden files and the
    download record (`SOURCE.json`)."""
    if not Path(folder).is_dir():
        return []
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name != "SOURCE.json"
    )


def find_inputs(raw_dir: Path, selection: str = "train") -> InputFiles | None:
    """The recognised input files in `raw_dir`, or None when it holds none.

    Args:
        raw_dir: folder to look in (not recursive).
        selection: `train` (the default data), `test`, or `all` (both sets).

    Raises:
        UserError: for an unknown selection, or a set with light curves but no metadata (or the
            reverse).
    """
    if selection not in SELECTIONS:
        raise UserError(f"data.inputs={selection!r}: choose one of {', '.join(SELECTIONS)}")
    raw_dir = Path(raw_dir)
    names = sorted(p.name for p in raw_dir.iterdir() if p.is_file()) if raw_dir.is_dir() else []
    sets = ("train", "test") if selection == "all" else (selection,)
    found: list[InputFiles] = []
    for fmt, patterns in FILE_PATTERNS.items():
        lcs: list[Path] = []
        metas: list[Path] = []
        for name in sets:
            lc_re, meta_re = patterns[name]
            lc = [raw_dir / n for n in names if re.fullmatch(lc_re, n)]
            meta = [raw_dir / n for n in names if re.fullmatch(meta_re, n)]
            if bool(lc) != bool(meta):
                have, missing = (lc, "metadata") if lc else (meta, "light-curve")
                raise UserError(
                    f"{raw_dir}: found {', '.join(p.name for p in have)} but no {missing} file "
                    f"for the {name} set ({fmt} format); add it or remove the other"
                )
            lcs += lc
            metas += meta
        if lcs:
            found.append(InputFiles(fmt, selection, tuple(lcs), tuple(metas)))
    if not found:
        return None
    if len(found) > 1:
        log.warning(
            "%s holds both formats; using the %s files and ignoring the %s ones",
            raw_dir,
            found[0].fmt,
            found[1].fmt,
        )
    return found[0]


# ---------------------------------------------------------------------------------------------
# Low-level CSV access.


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _input_stream(path: Path) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)


def header(path: Path) -> list[str]:
    """Raw column names of a CSV(.gz) file, as pyarrow sees them: quotes removed (R and pyarrow
    quote every name), a UTF-8 byte-order mark dropped, spaces kept (the unblinded files pad
    them).

    Raises:
        UserError: no such file, an empty file, a header that is not UTF-8, or a truncated or
            corrupt gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as handle:
            line = handle.readline()
    except (OSError, EOFError) as error:
        raise UserError(
            f"{path}: the file is truncated or corrupt ({error}); fetch it again"
        ) from None
    if not line.strip():
        raise UserError(f"{path}: the file is empty (no header line); fetch it again")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = line[error.start : error.end + 8]
        raise UserError(
            f"{path}: line 1 (the header) is not valid UTF-8 (bytes {bad!r}); save the file as "
            "UTF-8 or plain ASCII"
        ) from None
    return next(csv.reader([text.rstrip("\r\n")]))


def _map_columns(
    path: Path, names: list[str], wanted: Sequence[str], aliases: dict[str, str], kind: str
) -> dict[str, str]:
    """Canonical name -> raw header name, for every wanted column; else a UserError."""
    by_name: dict[str, str] = {}
    for raw in names:
        name = raw.strip()
        by_name.setdefault(aliases.get(name, name), raw)
    missing = [c for c in wanted if c not in by_name]
    if missing:
        found = listing((h.strip() for h in names), limit=12)
        raise UserError(
            f"{path}: missing {kind} column(s) {', '.join(missing)}; found: {found}. Expected the "
            "Kaggle or the unblinded PLAsTiCC format (see README)"
        )
    return {c: by_name[c] for c in wanted}


def _bad_value_rows(values: pd.Series, dtype: pa.DataType) -> np.ndarray:
    """Boolean mask of strings that pyarrow cannot convert to `dtype` (nulls are fine)."""
    text = values.fillna("").astype(str).str.strip()
    null = text.str.lower().isin(_NULL_TOKENS)
    if pa.types.is_boolean(dtype):
        return (~null & ~text.str.lower().isin(_BOOL_TOKENS)).to_numpy()
    if pa.types.is_integer(dtype):  # pyarrow takes integer literals only ("2.0" is an error)
        return (~null & ~text.str.fullmatch(r"[+-]?\d+")).to_numpy()
    return (~null & pd.to_numeric(text.where(~null), errors="coerce").isna()).to_numpy()


def _invalid_utf8(values: pd.Series) -> np.ndarray:
    """Boolean mask of byte strings that are not valid UTF-8."""

    def invalid(value: bytes | None) -> bool:
        if value is None:
            return False
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    return np.fromiter((invalid(v) for v in values), bool, len(values))


def _locate_bad_value(path: Path, columns: dict[str, str], types: dict[str, pa.DataType]) -> str:
    """Find the first value that fails conversion: `column 'c', line n: 'value'`."""
    # As bytes: a value that is not UTF-8 would stop a string reader without saying where.
    raw_types = {raw: pa.binary() for raw in columns.values()}
    reader = pa_csv.open_csv(
        _input_stream(path),
        convert_options=pa_csv.ConvertOptions(
            include_columns=list(columns.values()), column_types=raw_types
        ),
    )
    rows_before = 0
    for batch in reader:
        frame = batch.to_pandas()
        for canonical, raw in columns.items():
            not_utf8 = np.flatnonzero(_invalid_utf8(frame[raw]))
            if not_utf8.size:
                line = rows_before + int(not_utf8[0]) + 2
                value = frame[raw].iloc[not_utf8[0]]
                return f"column {canonical!r}, line {line}: {value!r} is not valid UTF-8"
            frame[raw] = frame[raw].map(lambda v: None if v is None else v.decode())
            bad = np.flatnonzero(_bad_value_rows(frame[raw], types[canonical]))
            if bad.size:
                line = rows_before + int(bad[0]) + 2  # line 1 is the header
                value = frame[raw].iloc[bad[0]]
                kind = types[canonical]
                return f"column {canonical!r}, line {line}: {value!r} is not a valid {kind}"
        rows_before += batch.num_rows
    return "a value could not be converted"


def _arrow_error(
    path: Path, error: Exception, columns: dict[str, str], types: dict[str, pa.DataType]
) -> UserError:
    """Turn a pyarrow read error into a UserError naming the file (and line, where it can)."""
    text = str(error)
    if isinstance(error, pa.ArrowInvalid) and "conversion error" in text:
        try:
            where = _locate_bad_value(path, columns, types)
        except (pa.ArrowException, OSError):
            where = text
        return UserError(f"{path}: non-numeric value in {where}; fix or remove that line")
    if isinstance(error, pa.ArrowInvalid) and "Empty CSV file" in text:
        return UserError(f"{path}: the file is empty; fetch it again")
    if isinstance(error, OSError | EOFError) and not isinstance(error, pa.ArrowInvalid):
        return UserError(f"{path}: the file is truncated or corrupt ({text}); fetch it again")
    return UserError(f"{path}: cannot parse the CSV ({text})")


# ---------------------------------------------------------------------------------------------
# Metadata.


def read_metadata(path: Path) -> pd.DataFrame:
    """Read a whole metadata file (either format) into canonical columns.

    Returns:
        One row per object: object_id (int64), ra, decl (deg), ddf (int8), hostgal_specz,
        hostgal_photoz, hostgal_photoz_err, distmod, mwebv (float64, NaN where missing: `-9` and
        empty both mean missing), target (int64; `target`, else `true_target`, else -1),
        problem (int8: the `METADATA_PROBLEMS` code of an impossible value, such as an infinite
        hostgal_photoz, 0 if none; the object is rejected with that reason). Truth columns are
        not read.

    Raises:
        UserError: unreadable file, missing column, non-numeric value (with its line), no rows,
            a missing or duplicated object_id.
    """
    path = Path(path)
    names = header(path)
    stripped = [h.strip() for h in names]
    label = next((c for c in plasticc.LABEL_COLUMNS if c in stripped), None)
    aliases = {**plasticc.METADATA_ALIASES, **({label: "target"} if label else {})}
    wanted = list(plasticc.METADATA_COLUMNS) + (["target"] if label else [])
    columns = _map_columns(path, names, wanted, aliases, "metadata")
    types = {c: _META_TYPES[c] for c in columns}
    try:
        table = pa_csv.read_csv(
            _input_stream(path),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(columns.values()),
                column_types={columns[c]: t for c, t in types.items()},
            ),
        )
    except (pa.ArrowException, OSError, EOFError) as error:
        raise _arrow_error(path, error, columns, types) from None
    ids = table.column(columns["object_id"])
    if not len(ids):
        raise UserError(
            f"{path}: the file has a header but no rows (no object); give the metadata of the "
            "light curves"
        )
    if ids.null_count:
        line = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]) + 2
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    ids = ids.to_numpy()
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        oid = int(ids[order][repeated[0]])
        lines = listing(np.flatnonzero(ids == oid) + 2)
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
        values = table.column(columns[name]).to_numpy(zero_copy_only=False)
        table = table.drop_columns([columns[name]])
        if name in MINUS9_MEANS_MISSING:
            values = np.where(values == plasticc.MISSING_VALUE, np.nan, values)
        _flag_problems(name, values, problem)  # before the conversions below hide them
        # A missing or impossible flag or label becomes 0 or -1 (the object is rejected anyway
        # if it is impossible).
        if name == "ddf":
            values = np.where(values == 1, 1, 0).astype(np.int8)
        elif name == "target":
            usable = _is_class_number(values)
            values = np.where(usable, values, plasticc.UNKNOWN_TARGET).astype(np.int64)
        arrays[name] = values
    arrays["problem"] = problem
    del table
    # Arrow's allocator keeps freed pages (measured: 550 MB for 3.5 million rows); hand them back.
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(arrays)


def _flag_problems(name: str, values: np.ndarray, problem: np.ndarray) -> None:
    """Set the `METADATA_PROBLEMS` code of the rows whose `name` value is impossible (in place;
    the first problem of a row wins). NaN is a missing value, not a problem."""
    given = ~np.isnan(values)
    if name == "target":
        bad = given & ~_is_class_number(values)
        code = len(METADATA_PROBLEMS) - 1
    elif name in plasticc.METADATA_RANGES:
        low, high = plasticc.METADATA_RANGES[name]
        bad = given & ~((values >= low) & (values <= high))
        if name == "ddf":
            bad |= given & (values != np.round(values))
        code = list(plasticc.METADATA_RANGES).index(name) + 1
    else:
        return
    problem[(problem == 0) & bad] = code


def _is_class_number(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (np.abs(values) < 2**31) & (values == np.round(values))


def metadata_problems(metadata: pd.DataFrame) -> np.ndarray:
    """(n,) int8 `METADATA_PROBLEMS` codes of canonical metadata columns (`-9` already missing),
    for tables that did not come through `read_metadata`."""
    problem = np.zeros(len(metadata), np.int8)
    for name in [*plasticc.METADATA_COLUMNS[1:], "target"]:
        if name in metadata:
            _flag_problems(name, metadata[name].to_numpy(np.float64), problem)
    return problem


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


# ---------------------------------------------------------------------------------------------
# Light curves: chunks of whole objects.


@dataclass
class Rows:
    """Light-curve rows as NumPy arrays (canonical columns), with their place in the file."""

    object_id: np.ndarray
    mjd: np.ndarray
    passband: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray
    first_row: int  # index of the first row in its file (0 = the line after the header)

    def __len__(self) -> int:
        return int(self.object_id.shape[0])

    def slice(self, start: int, stop: int | None = None) -> Rows:
        cut = slice(start, stop)
        return Rows(
            self.object_id[cut],
            self.mjd[cut],
            self.passband[cut],
            self.flux[cut],
            self.flux_err[cut],
            self.detected[cut],
            self.first_row + start,
        )

    def take(self, index: np.ndarray) -> Rows:
        return Rows(
            self.object_id[index],
            self.mjd[index],
            self.passband[index],
            self.flux[index],
            self.flux_err[index],
            self.detected[index],
            self.first_row,
        )

    @staticmethod
    def concatenate(parts: list[Rows]) -> Rows:
        names = ("object_id", "mjd", "passband", "flux", "flux_err", "detected")
        arrays = [np.concatenate([getattr(p, n) for p in parts]) for n in names]
        return Rows(*arrays, parts[0].first_row)


def _rows_from_tables(path: Path, tables: list[pa.Table], first_row: int) -> Rows:
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = table.column("object_id")
    if ids.null_count:
        missing = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        line = first_row + int(missing[0]) + 2
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    # Nulls: a missing passband is out of range (-1), a missing detection flag is "not detected",
    # missing floats are NaN (and rejected per object).
    passband = table.column("passband").fill_null(-1)
    return Rows(
        ids.to_numpy(),
        table.column("mjd").to_numpy(zero_copy_only=False),
        passband.to_numpy(),
        table.column("flux").to_numpy(zero_copy_only=False),
        table.column("flux_err").to_numpy(zero_copy_only=False),
        table.column("detected").fill_null(False).to_numpy(zero_copy_only=False),
        first_row,
    )


@dataclass(frozen=True)
class FilePart:
    """Whole objects of one light-curve file: the data lines in bytes [start, stop), or all of it.

    Attributes:
        path: the file.
        start, stop: byte offsets of the part's first data line and of the end of its last line;
            both None for the whole file (a gzip file cannot be cut: it is read from its start).
        first_row: index of the part's first row in the file (0 = the line after the header);
            line numbers in error messages count from it (`count_rows` finds it).
    """

    path: Path
    start: int | None = None
    stop: int | None = None
    first_row: int = 0

    @property
    def n_bytes(self) -> int:
        """Bytes of the file that the part reads (the whole file's size for a whole file)."""
        return self.path.stat().st_size if self.start is None else self.stop - self.start


class _ByteRange(io.RawIOBase):
    """Bytes [start, stop) of a file, as a stream."""

    def __init__(self, path: Path, start: int, stop: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 (closed with the stream)
        self._file.seek(start)
        self._left = stop - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._file.readinto(memoryview(buffer)[: self._left])
        self._left -= n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def _object_id_field(line: bytes, column: int) -> bytes | None:
    """The object_id field of a data line, stripped; None for a blank line."""
    if not line.strip():
        return None
    fields = line.split(b",", column + 1)
    return fields[column].strip() if len(fields) > column else b""


def split_file(path: Path, part_bytes: int) -> list[FilePart]:
    """Cut a light-curve file, grouped by object_id, into parts of about `part_bytes` bytes that
    hold whole objects.

    Each cut is placed at `part_bytes` past the previous one, then moved forward past the end of
    the object it falls in (the first line whose object_id differs from the line before it): a
    few lines read per cut, never the whole file. A gzip file is one part (it cannot be entered
    in the middle); so is a file smaller than `part_bytes`.

    Args:
        path: a light-curve CSV(.gz) file.
        part_bytes: the target size of a part (bytes of CSV).

    Returns:
        The parts in file order; together they hold every data line once. `first_row` is 0 for
        all (see `count_rows`).

    Raises:
        UserError: an unreadable file or a missing column (as `read_rows`).
    """
    path = Path(path)
    raw_names = header(path)
    columns = _map_columns(
        path, raw_names, plasticc.LIGHTCURVE_COLUMNS, plasticc.LIGHTCURVE_ALIASES, "light-curve"
    )
    if is_gzip(path):
        return [FilePart(path)]
    id_column = raw_names.index(columns["object_id"])
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.readline()
        cuts = [handle.tell()]
        while cuts[-1] + part_bytes < size:
            handle.seek(cuts[-1] + part_bytes - 1)
            handle.readline()  # to the start of the next line
            first = _object_id_field(handle.readline(), id_column)
            while True:
                start = handle.tell()
                line = handle.readline()
                if not line:
                    break
                field = _object_id_field(line, id_column)
                if first is None:
                    first = field
                elif field is not None and field != first:
                    break
            if start >= size:
                break
            cuts.append(start)
    cuts.append(size)
    return [FilePart(path, a, b) for a, b in itertools.pairwise(cuts)]


def count_rows(part: FilePart) -> int:
    """Data rows of the file before the part: its `first_row` (reads the bytes before it)."""
    if not part.start:
        return 0
    with open(part.path, "rb") as handle:
        handle.readline()
        rows, left = 0, part.start - handle.tell()
        while left > 0:
            block = handle.read(min(left, 1 << 20))
            if not block:
                break
            rows += block.count(b"\n")
            left -= len(block)
    return rows


def read_rows(source: Path | FilePart, chunk_rows: int) -> Iterator[Rows]:
    """Yield a light-curve file (or a part of one) as blocks of at least `chunk_rows` rows (the
    last may be fewer)."""
    part = source if isinstance(source, FilePart) else FilePart(Path(source))
    path = part.path
    raw_names = header(path)
    columns = _map_columns(
        path, raw_names, plasticc.LIGHTCURVE_COLUMNS, plasticc.LIGHTCURVE_ALIASES, "light-curve"
    )
    # About 40 bytes per row. Blocks of 1 MiB parse fastest (measured: 32 MiB is 2x slower) and
    # are gathered up to chunk_rows.
    block_size = int(np.clip(chunk_rows * 48, 1 << 16, 1 << 20))
    options = pa_csv.ConvertOptions(
        include_columns=list(columns.values()),
        column_types={columns[c]: t for c, t in LIGHTCURVE_TYPES.items()},
    )
    names = {raw: c for c, raw in columns.items()}
    if part.start is None:
        stream, read_options = _input_stream(path), pa_csv.ReadOptions(block_size=block_size)
    elif part.start == part.stop:
        return
    else:  # data lines only: the header's names are given
        stream = io.BufferedReader(_ByteRange(path, part.start, part.stop), 1 << 20)
        read_options = pa_csv.ReadOptions(block_size=block_size, column_names=raw_names)
    try:
        reader = pa_csv.open_csv(stream, read_options=read_options, convert_options=options)
        pending: list[pa.Table] = []
        n_pending, first_row = 0, part.first_row
        for batch in reader:
            table = pa.Table.from_batches([batch])
            pending.append(table.rename_columns([names[n] for n in table.column_names]))
            n_pending += batch.num_rows
            if n_pending >= chunk_rows:
                yield _rows_from_tables(path, pending, first_row)
                first_row += n_pending
                pending, n_pending = [], 0
        if pending:
            yield _rows_from_tables(path, pending, first_row)
    except (pa.ArrowException, OSError, EOFError) as error:
        raise _arrow_error(path, error, columns, LIGHTCURVE_TYPES) from None


def object_chunks(source: Path | FilePart, chunk_rows: int) -> Iterator[Rows]:
    """Blocks of rows cut at object boundaries: the trailing object moves to the next block."""
    carry: Rows | None = None
    for rows in read_rows(source, chunk_rows):
        if carry is not None:
            rows = Rows.concatenate([carry, rows])
        ids = rows.object_id
        # Start of the trailing run of the last object id.
        changes = np.flatnonzero(ids[1:] != ids[:-1])
        if changes.size == 0:
            carry = rows  # one object so far: keep reading
            continue
        cut = int(changes[-1]) + 1
        yield rows.slice(0, cut)
        carry = rows.slice(cut)
    if carry is not None and len(carry):
        yield carry


def read_lightcurves(path: Path) -> pd.DataFrame:
    """Read a (small) light-curve file whole, in canonical columns.

    Returns:
        object_id (int64), mjd (days), passband (int64, 0-5 = ugrizy), flux, flux_err (FLUXCAL,
        float64), detected (bool); rows in file order.
    """
    parts = list(read_rows(Path(path), 1 << 62))
    rows = Rows.concatenate(parts) if parts else None
    columns = plasticc.LIGHTCURVE_COLUMNS
    if rows is None:
        types = LIGHTCURVE_TYPES
        return pd.DataFrame({c: pd.Series(dtype=types[c].to_pandas_dtype()) for c in columns})
    return pd.DataFrame({c: getattr(rows, c) for c in columns})
