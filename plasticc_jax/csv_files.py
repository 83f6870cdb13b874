"""Opening PLAsTiCC CSV files: plain or gzip, the header, canonical column names, read errors.

Whether a file is gzip is told by its first bytes, not its name. `header` reads the raw column
names, `map_columns` maps them to canonical ones (a UserError names the columns missing), and
`arrow_error` turns a pyarrow read error into a UserError naming the file and, for a value that
does not convert, its column and line. The readers of both tables build on these
(`plasticc_jax.readers`, `plasticc_jax.lightcurve_rows`).
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from plasticc_jax.errors import UserError, listing

# What reading a damaged file raises: a gzip stream's broken deflate data is a `zlib.error`, not
# an OSError.
UNREADABLE = (OSError, EOFError, zlib.error)


def corrupt(path: Path, error: BaseException | str) -> UserError:
    """The one-line answer to a file that cannot be read to its end."""
    return UserError(f"{path}: the file is truncated or corrupt ({error}); fetch it again")


# Tokens pyarrow reads as null (its defaults), in lower case: a text column's missing values
# (`readers`).
NULL_TOKENS = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan"})
NULL_TOKENS |= frozenset({"1.#ind", "1.#qnan", "n/a", "na", "nan", "null", "<na>"})
# What pyarrow's CSV reader reads as a missing value: exactly these.
_PYARROW_NULLS = frozenset(pa_csv.ConvertOptions().null_values)
# What pyarrow reads as a flag: exactly these (no spaces around, no other case).
_BOOL_TOKENS = frozenset(pa_csv.ConvertOptions().true_values)
_BOOL_TOKENS |= frozenset(pa_csv.ConvertOptions().false_values)
FLAG_VALUES = "(1/0 or true/false)"  # what a flag column may hold, for messages


# Formats that are not CSV, told by their first bytes (a Parquet file given as light curves).
_OTHER_FORMATS: dict[bytes, str] = {
    b"PAR1": "a Parquet file",
    **{b"BZh" + bytes([level]): "bzip2-compressed" for level in b"123456789"},
    b"\xfd7zXZ\x00": "xz-compressed",
    b"PK\x03\x04": "a zip archive",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"\x89HDF": "an HDF5 file",
}


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, read by Python and decompressed when gzip (pyarrow: `input_stream`)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def input_stream(path: Path) -> pa.NativeFile:
    """The file's bytes as a pyarrow stream, decompressed when it is gzip."""
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
    with open(path, "rb") as handle:
        start = handle.read(8)
    other = next((what for magic, what in _OTHER_FORMATS.items() if start.startswith(magic)), None)
    if other:
        raise UserError(
            f"{path}: {other}, not a CSV file: light curves and metadata are read as CSV, plain "
            "or gzipped (convert or decompress it first)"
        )
    try:
        with open_bytes(path) as handle:
            line = handle.readline()
    except UNREADABLE as error:
        raise corrupt(path, error) from None
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = line[error.start : error.end + 8]
        raise UserError(
            f"{path}: line 1 (the header) is not valid UTF-8 (bytes {bad!r}); save the file as "
            "UTF-8 or plain ASCII"
        ) from None
    if not text.strip():
        try:
            empty = next(_data_lines(path), None) is None
        except UNREADABLE as error:
            raise corrupt(path, error) from None
        if empty:
            raise UserError(f"{path}: the file is empty (no header line); fetch or write it again")
        raise UserError(
            f"{path}: line 1 is blank: the header must be the first line (remove the blank "
            "line or lines before it)"
        )
    text = text.rstrip("\r\n")
    if "\r" in text:  # pyarrow reads lines ended by CR alone as one line: say so, not csv's error
        raise UserError(
            f"{path}: its lines end in a carriage return alone (an old Mac or Excel 'CSV "
            "(Macintosh)' file): save it with LF or CRLF line ends"
        )
    if "\x00" in text:
        raise UserError(
            f"{path}: line 1 (the header) holds NUL bytes: the file looks like UTF-16 (or "
            "another two-byte encoding); save it as UTF-8 or plain ASCII"
        )
    try:
        return next(csv.reader([text]))
    except csv.Error as error:
        raise UserError(f"{path}: line 1 (the header) cannot be read as CSV ({error})") from None


def _data_lines(path: Path) -> Iterator[int]:
    """The line number (1: the header) of each data row after line 1, as pyarrow counts rows:
    blank lines are not rows."""
    with open_bytes(path) as handle:
        handle.readline()
        for number, line in enumerate(handle, start=2):
            if line.rstrip(b"\r\n"):
                yield number


def file_lines(path: Path, rows: Sequence[int] | np.ndarray) -> list[int]:
    """The line of the file of each data row in `rows` (0: the first row after the header, as
    pyarrow counts them, skipping blank lines), for messages. Reads the file up to the last of
    them (a few seconds a gigabyte: only when an error names a line)."""
    wanted = {int(r) for r in rows}
    found: dict[int, int] = {}
    if wanted:
        last = max(wanted)
        try:
            for row, line in enumerate(_data_lines(path)):
                if row in wanted:
                    found[row] = line
                if row >= last:
                    break
        except UNREADABLE:
            pass  # a damaged file: the rows' own numbers below
    return [found.get(int(r), int(r) + 2) for r in rows]


def file_line(path: Path, row: int) -> int:
    """`file_lines` of one row."""
    return file_lines(path, [row])[0]


def map_columns(
    path: Path, names: list[str], wanted: Sequence[str], aliases: dict[str, str], kind: str
) -> dict[str, str]:
    """Canonical name -> raw header name, for every wanted column (names compared without case
    and surrounding spaces); else a UserError."""
    by_name: dict[str, str] = {}
    for raw in names:
        name = raw.strip().lower()  # `OBJECT_ID,MJD,...` too (an audit found them refused)
        canonical = aliases.get(name, name)
        if canonical in by_name and canonical in wanted:
            twice = listing([by_name[canonical].strip(), name], limit=2)
            raise UserError(
                f"{path}: the {kind} column {canonical!r} appears twice in the header ({twice}); "
                "keep one"
            )
        by_name[canonical] = raw
    missing = [c for c in wanted if c not in by_name]
    separator = next((sep for sep in (";", "\t", "|") if len(names) == 1 and sep in names[0]), None)
    if missing and separator:
        shown = "tabs" if separator == "\t" else repr(separator)
        raise UserError(
            f"{path}: the columns are separated by {shown}, not commas: write the {kind} file as "
            "a comma-separated CSV (as the Kaggle and unblinded PLAsTiCC files are)"
        )
    if missing:
        found = listing((h.strip() for h in names), limit=12)
        # Each missing column with its other format's name (`ddf (or ddf_bool)`).
        other = {c: a for a, c in aliases.items()}
        named = [f"{c} (or {other[c]})" if c in other else c for c in missing]
        # The other kind of file given in its place (the two arguments swapped).
        other_kind = {
            "metadata": ("light-curve", {"mjd", "flux"}),
            "light-curve": ("metadata", {"hostgal_photoz", "mwebv"}),
        }
        swapped = ""
        if kind in other_kind and other_kind[kind][1] <= set(by_name):
            swapped = f" It looks like a {other_kind[kind][0]} file: were the two kinds swapped?"
        raise UserError(
            f"{path}: missing {kind} column(s) {', '.join(named)}; found: {found}. Expected the "
            f"Kaggle or the unblinded PLAsTiCC format (see README).{swapped}"
        )
    return {c: by_name[c] for c in wanted}


def _bad_value_rows(values: pd.Series, dtype: pa.DataType) -> np.ndarray:
    """Boolean mask of strings that pyarrow cannot convert to `dtype` (nulls are fine)."""
    if pa.types.is_string(dtype):  # read as text, converted later (`readers`): never a bad value
        return np.zeros(len(values), bool)
    raw = values.fillna("").astype(str)
    # As pyarrow reads them: a null is one of its tokens exactly (a field of spaces is no null),
    # and a number may have spaces around it.
    null = raw.isin(_PYARROW_NULLS)
    text = raw.str.strip()
    if pa.types.is_boolean(dtype):
        return (~null & ~raw.isin(_BOOL_TOKENS)).to_numpy()
    if pa.types.is_integer(dtype):  # integer literals only ("2.0" and "+1" are errors)
        info = np.iinfo(dtype.to_pandas_dtype())  # ... that fit the type (ids beyond int64)
        whole = (None if n else _whole_number(v) for v, n in zip(text, null, strict=True))
        fits = (w is not None and info.min <= w <= info.max for w in whole)
        return ~null.to_numpy() & ~np.fromiter(fits, bool, len(text))
    not_number = pd.to_numeric(text.where(~null & (text != "")), errors="coerce").isna()
    nan = text.str.lower().str.fullmatch(r"[+-]?nan")  # a number to pyarrow
    return (~null & not_number & ~nan).to_numpy()


def _whole_number(text: str) -> int | None:
    """The integer pyarrow reads from a field (decimal, or hexadecimal after 0x), else None."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?0[xX][\da-fA-F]+", text):
        return int(text, 16)
    return None


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


def _locate_bad_value(
    path: Path, columns: dict[str, str], types: dict[str, pa.DataType]
) -> str | None:
    """Find the first value that fails conversion: `column 'c', line n: 'value'` (None: not
    found)."""
    # As bytes: a value that is not UTF-8 would stop a string reader without saying where.
    raw_types = {raw: pa.binary() for raw in columns.values()}
    reader = pa_csv.open_csv(
        input_stream(path),
        convert_options=pa_csv.ConvertOptions(
            include_columns=list(columns.values()), column_types=raw_types
        ),
    )
    rows_before = 0
    for batch in reader:
        frame = batch.to_pandas()
        for canonical, raw in columns.items():
            name = raw.strip()  # as the file writes it (`ddf_bool`, not `ddf`)
            not_utf8 = np.flatnonzero(_invalid_utf8(frame[raw]))
            if not_utf8.size:
                line = file_line(path, rows_before + int(not_utf8[0]))
                value = frame[raw].iloc[not_utf8[0]]
                return f"column {name!r}, line {line}: {value!r} is not valid UTF-8"
            frame[raw] = frame[raw].map(lambda v: None if v is None else v.decode())
            bad = np.flatnonzero(_bad_value_rows(frame[raw], types[canonical]))
            if bad.size:
                line = file_line(path, rows_before + int(bad[0]))
                value = frame[raw].iloc[bad[0]]
                kind = types[canonical]
                if not value.strip():
                    return (
                        f"column {name!r}, line {line}: {value!r} holds only spaces, which is no "
                        "missing value: leave the field empty"
                    )
                if pa.types.is_integer(kind) and re.fullmatch(r"\s*[+-]?\d+\.0*\s*", value):
                    # pandas writes an integer column with a missing value as floats ("2.0").
                    return (
                        f"column {name!r}, line {line}: {value!r} is written as a decimal "
                        "number where a whole number is expected (write it as an integer, e.g. "
                        "with pandas: astype('Int64') before to_csv)"
                    )
                if pa.types.is_integer(kind) and re.fullmatch(r"\s*\+\d+\s*", value):
                    return (
                        f"column {name!r}, line {line}: {value!r} has a plus sign, which is not "
                        "read in a whole number: write the number alone"
                    )
                if pa.types.is_integer(kind) and _whole_number(value.strip()) is not None:
                    return (
                        f"column {name!r}, line {line}: {value!r} is too large (at most "
                        f"{np.iinfo(kind.to_pandas_dtype()).max})"
                    )
                if pa.types.is_boolean(kind):
                    what = "is not a flag"
                    if re.fullmatch(r"\s*[01]\.0*\s*", value):
                        what = "is written as a decimal number where a flag is expected"
                    elif value.strip() in _BOOL_TOKENS:
                        what = "has spaces around it: write the flag alone"
                    elif value.strip().lower() in ("true", "false"):
                        what = "is in a case that is not read: write it in lower case"
                    return f"column {name!r}, line {line}: {value!r} {what} {FLAG_VALUES}"
                if canonical == "passband":
                    return (
                        f"column {name!r}, line {line}: {value!r} is not a passband number: "
                        "write 0-5 for u, g, r, i, z, y"
                    )
                return f"column {name!r}, line {line}: {value!r} is not a valid {kind}"
        rows_before += batch.num_rows
    return None


def _locate_short_row(path: Path) -> tuple[int, list[str]] | None:
    """The line number and fields of the first row whose field count differs from the
    header's."""
    with (
        gzip.open(path, "rt", errors="replace")
        if is_gzip(path)
        else open(path, errors="replace", newline="") as handle
    ):
        rows = csv.reader(handle)
        width = len(next(rows, []))
        for row in rows:
            if row and len(row) != width:  # a blank line is no row (pyarrow skips it)
                return rows.line_num, row
    return None


def _locate_unmatched_quote(path: Path) -> int | None:
    """The line number of the first line with an odd number of double quotes."""
    with open_bytes(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.count(b'"') % 2:
                return number
    return None


def arrow_error(
    path: Path, error: Exception, columns: dict[str, str], types: dict[str, pa.DataType]
) -> UserError:
    """Turn a pyarrow read error into a UserError naming the file (and line, where it can)."""
    # pyarrow's row numbers count from the block or part it read, not the file: the line is
    # found below.
    text = re.sub(r"Row #\d+: ", "", str(error))
    if isinstance(error, pa.ArrowInvalid) and "conversion error" in text:
        try:
            where = _locate_bad_value(path, columns, types) or text
        except (pa.ArrowException, OSError):
            where = text
        return UserError(f"{path}: bad value in {where}; fix or remove that line")
    # A quote opened and not closed swallows the lines after it into one field.
    quoted = "out of sync" in text or ("columns, got" in text and '"' in text)
    if isinstance(error, pa.ArrowInvalid) and quoted:
        try:
            line = _locate_unmatched_quote(path)
        except (OSError, EOFError):
            line = None
        if line:
            return UserError(
                f'{path}: line {line} opens a quoted field (") that does not close on that line; '
                "fix or remove that line"
            )
    if isinstance(error, pa.ArrowInvalid) and "Expected" in text and "columns, got" in text:
        try:
            short = _locate_short_row(path)
        except (OSError, EOFError, csv.Error):
            short = None
        if short and not "".join(short[1]).strip():
            return UserError(
                f"{path}: line {short[0]} holds only spaces; remove it (an empty line is skipped)"
            )
        where = f"line {short[0]}: " if short else ""
        return UserError(
            f"{path}: {where}a row with another number of fields than the header ({text}); "
            "the file may be cut short: fetch or write it again"
        )
    if isinstance(error, pa.ArrowInvalid) and "Empty CSV file" in text:
        return UserError(f"{path}: the file is empty; fetch or write it again")
    if isinstance(error, OSError | EOFError) and not isinstance(error, pa.ArrowInvalid):
        return corrupt(path, text)
    return UserError(f"{path}: cannot parse the CSV ({text})")
