"""Light-curve rows in chunks of whole objects, read from a file or a part of one.

Light-curve files (either format, `plasticc_jax.readers`) are read with pyarrow's streaming CSV
reader in blocks of about `chunk_rows` rows (`read_rows`), and `object_chunks` cuts them at object
boundaries: PLAsTiCC files are grouped by object, so the trailing object of a block is carried over
to the next and each chunk holds whole objects. Memory is bounded by the chunk size, not by the
input. `split_file` cuts a plain (not gzip) file into `FilePart`s of whole objects at byte offsets,
for reading in parallel (`plasticc_jax.distributed`).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from plasticc_jax import plasticc
from plasticc_jax.csv_files import (
    UNREADABLE,
    arrow_error,
    corrupt,
    file_line,
    header,
    input_stream,
    is_gzip,
    map_columns,
    open_bytes,
)
from plasticc_jax.errors import UserError

LIGHTCURVE_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    "mjd": pa.float64(),
    "passband": pa.int64(),
    "flux": pa.float64(),
    "flux_err": pa.float64(),
    "detected": pa.bool_(),
}
ROW_COLUMNS = tuple(LIGHTCURVE_TYPES)  # the fields of `Rows`, in order


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
        arrays = [np.concatenate([getattr(p, n) for p in parts]) for n in ROW_COLUMNS]
        return Rows(*arrays, parts[0].first_row)


def _rows_from_tables(path: Path, tables: list[pa.Table], first_row: int) -> Rows:
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = table.column("object_id")
    if ids.null_count:
        missing = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        line = file_line(path, first_row + int(missing[0]))
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    detected = table.column("detected")
    if detected.null_count:  # read as "not detected" it would change the score unseen
        missing = np.flatnonzero(detected.is_null().to_numpy(zero_copy_only=False))
        line = file_line(path, first_row + int(missing[0]))
        more = f" and {missing.size - 1} more" if missing.size > 1 else ""
        raise UserError(
            f"{path}: line {line}{more} has no detection flag (`detected`); fix or remove "
            "those lines"
        )
    # Nulls: a missing passband is out of range (-1), missing floats are NaN (and rejected per
    # object).
    passband = table.column("passband").fill_null(-1)
    return Rows(
        ids.to_numpy(),
        table.column("mjd").to_numpy(zero_copy_only=False),
        passband.to_numpy(),
        table.column("flux").to_numpy(zero_copy_only=False),
        table.column("flux_err").to_numpy(zero_copy_only=False),
        detected.to_numpy(zero_copy_only=False),
        first_row,
    )


@dataclass(frozen=True)
class FilePart:
    """Whole objects of one light-curve file: the data lines in bytes [start, stop), or all of it.

    Attributes:
        path: the file.
        start, stop: byte offsets of the part's first data line and of the end of its last line
            (stop None: the file's end); both None for the whole file (a gzip file cannot be
            cut: it is read from its start).
        first_row: index of the part's first row in the file (0 = the line after the header);
            line numbers in error messages count from it (`count_rows` finds it).
        stamp: the file's (size, modification time) when the part was planned, if known: a
            file changed since is refused, not read half old and half new
            (`io_utils.check_unchanged`).
    """

    path: Path
    start: int | None = None
    stop: int | None = None
    first_row: int = 0
    stamp: tuple[int, int] | None = None


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
    if b'"' in line:  # a quoted field may hold commas: read the line as CSV
        text = line.decode("utf-8", "replace")
        quoted = next(csv.reader([text]), [])
        return quoted[column].strip().encode() if len(quoted) > column else b""
    fields = line.split(b",", column + 1)
    return fields[column].strip() if len(fields) > column else b""


def no_rows_error(path: Path) -> UserError:
    """The refusal of a light-curve file without a row (an empty file, or a header only)."""
    return UserError(
        f"{path}: no light-curve rows (a header only, or an empty file): give the files that "
        "hold the observations"
    )


def has_rows(path: Path) -> bool:
    """Whether a light-curve file has a line after its header that is not blank."""
    header(path)  # a named UserError for a file that is not CSV, empty or unreadable
    try:
        with open_bytes(path) as handle:
            handle.readline()
            return any(line.strip() for line in handle)
    except UNREADABLE as error:
        raise corrupt(path, error) from None


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
    columns = map_columns(
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
    """Data rows of the file before the part: its `first_row` (reads the bytes before it).
    Counted as pyarrow counts them: a blank line is no row."""
    if not part.start:
        return 0
    with open(part.path, "rb") as handle:
        handle.readline()
        rows, left = 0, part.start - handle.tell()
        carried = 0  # bytes other than \r and \n of the line not ended yet
        while left > 0:
            block = np.frombuffer(handle.read(min(left, 1 << 20)), np.uint8)
            if not block.size:
                break
            # A line of nothing but \r before its \n is blank (`\r\r\n` from Windows' Python too).
            content = np.cumsum((block != 10) & (block != 13))
            ends = np.flatnonzero(block == 10)
            at_ends = content[ends]
            per_line = np.diff(np.r_[0, at_ends])
            if per_line.size:
                per_line[0] += carried
                carried = int(content[-1] - at_ends[-1])
            else:
                carried += int(content[-1])
            rows += int(np.count_nonzero(per_line))
            left -= block.size
    return rows


def read_rows(source: Path | FilePart, chunk_rows: int) -> Iterator[Rows]:
    """Yield a light-curve file (or a part of one) as blocks of at least `chunk_rows` rows (the
    last may be fewer)."""
    part = source if isinstance(source, FilePart) else FilePart(Path(source))
    path = part.path
    raw_names = header(path)
    columns = map_columns(
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
        stream, read_options = input_stream(path), pa_csv.ReadOptions(block_size=block_size)
    elif part.start == part.stop:
        return
    else:  # data lines only: the header's names are given
        stop = path.stat().st_size if part.stop is None else part.stop
        stream = io.BufferedReader(_ByteRange(path, part.start, stop), 1 << 20)
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
        raise arrow_error(path, error, columns, LIGHTCURVE_TYPES) from None


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


def read_files(paths: Sequence[Path], chunk_rows: int = 1 << 22) -> Rows:
    """Every row of the files, in file order, in memory (empty Rows if there are none)."""
    parts = [rows for path in paths for rows in read_rows(Path(path), chunk_rows)]
    if parts:
        return Rows.concatenate(parts)
    empty = np.zeros(0)
    as_int = empty.astype(np.int64)
    return Rows(as_int, empty, as_int, empty, empty, empty.astype(bool), 0)
