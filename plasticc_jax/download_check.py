"""What the default data must be, the check of a file against it, and the record of its source.

Each file of the training set is known by its columns, its row and object counts and the SHA-256
of its decompressed CSV (`Expected`; PROVENANCE.md of the shared copy: the wheel's files, which
are the Zenodo release's). `scan` counts and hashes a file in one streaming pass and `verify`
compares the result with what the file must be; a mismatch is refused and named (`SourceFailed`,
or a `UserError` for files a person placed, `check_existing`). `SOURCE.json` beside the files
records the source, the time and the hashes and counts (`write_record`); files that match it are
trusted without a scan (`matches_record`). The fetching is `plasticc_jax.download`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plasticc_jax.csv_files import header, open_bytes
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_write_text, sha256_file

# The record of where the files came from, beside them in the raw folder; the citation it holds.
SOURCE_FILE = "SOURCE.json"
CITATION = (
    "PLAsTiCC Team and PLAsTiCC modelers, Unblinded Data for PLAsTiCC Classification Challenge, "
    "Zenodo, doi:10.5281/zenodo.2539456 (CC BY 4.0); PLAsTiCC Team et al. 2018, arXiv:1810.00001; "
    "Kessler et al. 2019, arXiv:1903.11756"
)

BLOCK = 1 << 22  # bytes per read while streaming (4 MiB)
# The first field of each line (object_id); metadata fields are left-padded with spaces.
_FIRST_FIELD = re.compile(rb"^ *([^,\n]*),", re.MULTILINE)


@dataclass(frozen=True)
class Expected:
    """One file of the training set as it is stored in the raw folder and checked.

    Attributes:
        name: file name in the raw folder (gzip).
        wheel_member: path of the plain CSV inside the snmachine wheel.
        columns: columns the header must hold.
        rows: data rows, header excluded.
        objects: distinct object_id values.
        sha256: SHA-256 of the decompressed CSV (PROVENANCE.md of the shared copy).
    """

    name: str
    wheel_member: str
    columns: tuple[str, ...]
    rows: int
    objects: int
    sha256: str


class SourceFailed(Exception):
    """One source could not deliver verified files; the message says why."""


class Unreadable(SourceFailed):
    """A file that cannot be read to its end as a CSV (truncated, not gzip, not text)."""


@dataclass(frozen=True)
class FileCheck:
    """What a scan of one stored file found.

    Attributes:
        name: file name.
        bytes: size of the stored file.
        sha256: SHA-256 of the stored file (gzip bytes for `.gz`), for the cache check.
        sha256_uncompressed: SHA-256 of the decompressed CSV.
        rows: data rows, header excluded.
        objects: distinct object_id values.
    """

    name: str
    bytes: int
    sha256: str
    sha256_uncompressed: str
    rows: int
    objects: int


def check_existing(raw: Path, paths: list[Path], expected: list[Expected]) -> list[FileCheck]:
    """Verify files found in `raw` (counts and SHA-256), leaving them and the record alone.

    Raises:
        UserError: a file is not the training set's (the message names it and why).
    """
    try:
        return [verify(path, item) for path, item in zip(paths, expected, strict=True)]
    except Unreadable as error:
        raise UserError(
            f"{raw} already holds {', '.join(p.name for p in paths)}, but {error}; nothing was "
            "changed. Move the damaged file elsewhere (or delete it) and rerun to download it "
            "again."
        ) from None
    except SourceFailed as error:
        raise UserError(
            f"{raw} already holds {', '.join(p.name for p in paths)}, but they are not the "
            f"PLAsTiCC training set ({error}); nothing was changed. Move them elsewhere and rerun "
            "to download it, or keep them: prepare reads whatever input files are in the raw "
            "folder."
        ) from None


def write_record(
    raw: Path, source: str, location: str, checks: list[FileCheck], extra: dict[str, Any]
) -> None:
    """`SOURCE.json`: where the files came from, when, and what their scan found."""
    record = {
        "source": source,
        "location": location,
        "retrieved_utc": _now(),
        **extra,
        "citation": CITATION,
        "licence": "CC BY 4.0",
        "files": {check.name: asdict(check) for check in checks},
    }
    atomic_write_text(raw / SOURCE_FILE, json.dumps(record, indent=2) + "\n")


def read_record(raw: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((raw / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def matches_record(record: dict[str, Any], paths: list[Path]) -> bool:
    """Whether each file has the size and SHA-256 written in the record (cheap: no decompress)."""
    files = record.get("files")
    if not isinstance(files, dict):
        return False
    for path in paths:
        entry = files.get(path.name)
        if not isinstance(entry, dict) or entry.get("bytes") != path.stat().st_size:
            return False
        if entry.get("sha256") != sha256_file(path):
            return False
    return True


def verify(path: Path, expected: Expected) -> FileCheck:
    """Scan a file and compare it with what the training set must be.

    Raises:
        Unreadable: the file cannot be read to its end (broken gzip stream, not text).
        SourceFailed: columns, row count, object count or the content's hash differ.
        OSError: the file system refused the read (e.g. no permission).
    """
    try:
        check = scan(path)
    except (PermissionError, FileNotFoundError):
        raise
    except (OSError, EOFError, zlib.error) as error:  # gzip's BadGzipFile is an OSError
        raise Unreadable(
            f"{path.name} cannot be read to its end ({type(error).__name__}: {error}): it is "
            "truncated or damaged"
        ) from error
    try:
        columns = [name.strip() for name in header(path)]
    except UserError as error:
        raise Unreadable(f"{path.name} does not start with a CSV header line") from error
    missing = [column for column in expected.columns if column not in columns]
    if missing:
        raise SourceFailed(f"{path.name}: header lacks columns {missing}")
    if check.rows != expected.rows or check.objects != expected.objects:
        raise SourceFailed(
            f"{path.name}: {check.rows:,} rows and {check.objects:,} objects, expected "
            f"{expected.rows:,} and {expected.objects:,} (truncated or a different file)"
        )
    if check.sha256_uncompressed != expected.sha256:
        raise SourceFailed(
            f"{path.name}: sha256 of the content is {check.sha256_uncompressed}, "
            f"expected {expected.sha256}"
        )
    return check


def scan(path: Path) -> FileCheck:
    """Count rows and objects of a CSV (gzipped or not) and hash it, in one streaming pass.

    Objects are the distinct first fields (object_id) of the data lines, taken with one regular
    expression per block: no CSV parsing, so the 60 MB light-curve CSV takes about a second.

    Raises:
        OSError, EOFError, zlib.error: the file cannot be read or its gzip stream is broken.
    """
    digest = hashlib.sha256()
    newlines = 0
    object_ids: set[bytes] = set()
    tail = b""
    with open_bytes(path) as handle:
        header = handle.readline()
        digest.update(header)
        while block := handle.read(BLOCK):
            digest.update(block)
            newlines += block.count(b"\n")
            text = tail + block
            cut = text.rfind(b"\n") + 1
            object_ids.update(_FIRST_FIELD.findall(text, 0, cut))
            tail = text[cut:]
    if tail:  # a last line without a newline
        newlines += 1
        object_ids.update(_FIRST_FIELD.findall(tail))
    return FileCheck(
        name=path.name,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        sha256_uncompressed=digest.hexdigest(),
        rows=newlines,
        objects=len(object_ids),
    )


def stored_file(folder: Path, name: str) -> Path | None:
    """`folder/name` gzipped or plain (`x.csv.gz` or `x.csv`), whichever exists, else None."""
    plain = name.removesuffix(".gz")
    for candidate in (folder / f"{plain}.gz", folder / plain):
        if candidate.is_file():
            return candidate
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
