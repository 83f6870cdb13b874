"""The expert's answers on disk: an append-only JSON-lines file, one answer per line.

Each line is `{"object_id": 123, "label": "anomaly", "time": "2025-...Z", "position": 1}`
(`position`: where the active ranking had the object when it was first answered, 1 = top; null
for a changed answer, or when unknown). Every answer is written with one `write` and `fsync`ed
before the answer is acknowledged, so a session killed at any moment (kill -9, power loss) keeps
every acknowledged answer; a line torn by such a kill (the last one, without its newline, the
start of a line as written here) is ignored on read and moved to `<file>.torn` before the next
append (a last line edited by hand that is not an answer is refused, never cut). A last line
without its newline that is a whole answer (a file edited by hand) is kept, and an append that
fails (a full disk) is undone, so that no later answer lands on a partial line. An object
answered twice keeps its last answer (`latest`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import fsync_folder

log = logging.getLogger(__name__)

ANOMALY, NOT_INTERESTING, SKIP = "anomaly", "not_interesting", "skip"
LABELS: tuple[str, ...] = (ANOMALY, NOT_INTERESTING, SKIP)
# Where a run keeps its answers (relative to the run directory).
LABELS_FILE = Path("review") / "labels.jsonl"
CSV_COLUMNS: tuple[str, ...] = ("object_id", "label", "time", "position")


@dataclass(frozen=True)
class Answer:
    """One answer of the expert.

    Attributes:
        object_id: the object answered.
        label: one of `LABELS`.
        time: when, ISO 8601 in UTC.
        position: the object's place in the active ranking when answered (1 = top), if known.
    """

    object_id: int
    label: str
    time: str
    position: int | None = None

    @staticmethod
    def now(object_id: int, label: str, position: int | None = None) -> Answer:
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Answer(int(object_id), label, stamp, position)

    @staticmethod
    def from_json(raw: object) -> Answer:
        """Validate a decoded line.

        Raises:
            ValueError: not an object with an integer `object_id` (64-bit) and a known `label`.
        """
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        object_id, label, position = raw.get("object_id"), raw.get("label"), raw.get("position")
        if not isinstance(object_id, int) or isinstance(object_id, bool):
            raise ValueError(f"object_id {object_id!r} is not an integer")
        if not -(2**63) <= object_id < 2**63:  # object ids are int64 everywhere else
            raise ValueError(f"object_id {object_id} is beyond a 64-bit integer")
        if label not in LABELS:
            raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
        if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
            raise ValueError(f"position {position!r} is not an integer")
        return Answer(object_id, label, str(raw.get("time", "")), position)


def read_answers(path: Path) -> list[Answer]:
    """Every answer in a labels file, in order (none if the file does not exist); also the
    page's CSV export of one (`answers_csv`), which holds the latest answer per object.

    A last line without its newline is kept if it is a whole answer, and ignored if it is a JSON
    object cut short (torn by a killed writer).

    Raises:
        UserError: a path that is not a regular file, or a line that is not a valid answer
            (the file was edited by hand, or is not a labels file).
    """
    path = Path(path)
    delimiter = _delimiter(path) if path.is_file() else None
    if delimiter is not None:
        return _read_csv(path, delimiter)
    return _read(path)[0]


def is_csv_export(path: Path) -> bool:
    """Whether a file is a CSV of answers, as the page exports them (its header names
    `object_id` and `label`; see `_delimiter`)."""
    if not Path(path).is_file():
        return False
    return _delimiter(path) is not None


def _delimiter(path: Path) -> str | None:
    """The separator of a CSV export's header that names `object_id` and `label` (in any order:
    a spreadsheet may save it with `;` or tabs, pandas with its index first); None if none
    does."""
    with open(path, "rb") as handle:
        first = handle.readline(4096).decode("utf-8", errors="replace").lstrip("\ufeff")
    for delimiter in (",", ";", "\t"):
        try:  # read as CSV: a spreadsheet or R may have quoted the names ("object_id","label")
            header = next(csv.reader([first], delimiter=delimiter, skipinitialspace=True), [])
        except csv.Error:
            continue
        if set(CSV_COLUMNS[:2]) <= {name.strip() for name in header}:
            return delimiter
    return None


def _read_csv(path: Path, delimiter: str) -> list[Answer]:
    """The answers of a CSV export, in order (`CSV_COLUMNS`; `time` and `position` may be
    empty or missing)."""
    answers = []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, skipinitialspace=True)
        for row in reader:
            try:
                raw = {key.strip(): (value or "").strip() for key, value in row.items() if key}
                if not any(raw.values()):  # a blank line (spaces, or commas alone)
                    continue
                answer = {
                    "object_id": _csv_int(raw.get("object_id", ""), "object_id"),
                    "label": raw.get("label", ""),
                    "time": raw.get("time", ""),
                    # Not used to rank; pandas writes it `1.0` beside an empty one (an audit).
                    "position": _csv_int(raw["position"], "position", whole_float=True)
                    if raw.get("position")
                    else None,
                }
                answers.append(Answer.from_json(answer))
            except ValueError as error:
                raise UserError(
                    f"{path}, line {reader.line_num}: not a review answer ({error}); fix or "
                    "remove that line"
                ) from None
    return answers


def _csv_int(text: str, name: str, whole_float: bool = False) -> int:
    try:
        return int(text)
    except ValueError:
        if whole_float:
            with suppress(ValueError, OverflowError):
                if float(text).is_integer():
                    return int(float(text))
        raise ValueError(f"{name} {text!r} is not an integer") from None


def _read(path: Path) -> tuple[list[Answer], str]:
    """(the answers, what ends the file: "" a newline or nothing, "answer" a whole answer
    without its newline, "torn" a torn last line)."""
    if path.is_dir():
        raise UserError(
            f"labels file {path} is a folder: give a file name (e.g. {path}/labels.jsonl)"
        )
    if not path.exists():
        return [], ""
    if not path.is_file():  # a FIFO or a device would block or swallow the answers
        raise UserError(f"labels file {path} is not a regular file: give a file name")
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    answers = [
        _answer(path, number, line) for number, line in enumerate(lines[:-1], 1) if line.strip()
    ]
    tail = lines[-1]
    if not tail.strip():
        return answers, ""
    try:
        json.loads(tail)
    except ValueError:
        # What a kill leaves: the start of a line as `LabelStore` writes them (compact JSON, no
        # space anywhere, its one `}` at its end), however short. A line edited by hand is
        # refused below, never cut off (an audit found `{...}}` cut off as torn).
        written = tail.startswith(LINE_START) or LINE_START.startswith(tail)
        if written and not any(c.isspace() for c in tail) and "}" not in tail:
            log.warning("%s: ignoring a torn last line (a session was killed while writing)", path)
            return answers, "torn"
    return [*answers, _answer(path, len(lines), tail)], "answer"


# How every line `LabelStore` writes begins (`json.dumps` of an `Answer`, compact).
LINE_START = '{"object_id":'


def torn_path(path: Path) -> Path:
    """Where a torn last line cut off a labels file is kept."""
    return path.with_name(path.name + ".torn")


def _answer(path: Path, number: int, line: str) -> Answer:
    try:
        return Answer.from_json(json.loads(line))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise UserError(
            f"{path}, line {number}: not a review answer ({error}); fix or remove that line"
        ) from None


def latest(answers: list[Answer]) -> dict[int, Answer]:
    """The last answer per object, ordered by the time of that answer."""
    last: dict[int, Answer] = {}
    for answer in answers:
        last.pop(answer.object_id, None)
        last[answer.object_id] = answer
    return last


class LabelStore:
    """The labels file of a review session: read once, then appended to (thread-safe).

    Args:
        path: the JSON-lines file (created with its folder at the start, so that a place no
            answer can be written to is refused then).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if is_csv_export(self.path):  # appended to, it would be neither CSV nor JSON lines
            raise UserError(
                f"labels file {self.path} is a CSV export of answers: a review appends to its "
                "JSON-lines labels file (<run>/review/labels.jsonl unless --labels names another)"
            )
        self._lock = threading.Lock()
        self._answers, ending = _read(self.path)
        _check_writable(self.path)
        if ending:
            self._end_last_line(ending)

    @property
    def answers(self) -> list[Answer]:
        """Every answer so far, in order (a copy)."""
        with self._lock:
            return list(self._answers)

    def append(self, answer: Answer) -> None:
        """Write one answer durably (written and fsync'd when this returns; a failed write is
        undone, so the file still ends with a whole line)."""
        line = (json.dumps(asdict(answer), separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                end = os.fstat(fd).st_size
                try:
                    written = 0
                    while written < len(line):
                        written += os.write(fd, line[written:])
                    os.fsync(fd)
                except OSError:
                    _truncate(fd, end)
                    raise
            finally:
                os.close(fd)
            self._answers.append(answer)

    def _end_last_line(self, ending: str) -> None:
        """Cut a torn last line off, or end a whole last answer with its newline, so that the
        next answer starts on a line of its own."""
        with open(self.path, "r+b") as handle:
            data = handle.read()
            if ending == "torn":
                end = data.rfind(b"\n") + 1
                with open(torn_path(self.path), "ab") as kept:  # nothing deleted unseen
                    kept.write(data[end:] + b"\n")
                    kept.flush()
                    os.fsync(kept.fileno())
                fsync_folder(self.path.parent)
                log.warning(
                    "%s: the torn last line is moved to %s", self.path, torn_path(self.path)
                )
                handle.truncate(end)
            else:
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold a labels file itself (its inode) for one session, before it is read: a second
    session on it under another name (a hard link) is refused, as the path's lock refuses one
    under the same. Opened for writing, as NFS needs for an exclusive lock; a path that is not
    a regular file is left to `LabelStore`, which names what it is.

    Raises:
        UserError: another session holds it.
    """
    if path.exists() and not path.is_file():
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"labels file {path} is in use by another review session (under another name: a "
                "link to it?)"
            ) from None
        yield
    finally:
        os.close(fd)


def _check_writable(path: Path) -> None:
    """Open (and create, with its folder) the labels file for appending now: a place no answer
    can be written to is refused at the start, not found at the first answer."""
    try:
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as error:
        raise UserError(
            f"labels file {path}: cannot write to it ({error.strerror or error}); "
            "give another with --labels"
        ) from None
    if new:  # the new directory entry must survive a crash too
        fsync_folder(path.parent)


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as error:  # the answer was not acknowledged; the next start cuts it off
        log.error("labels file: could not undo a failed write: %s", error)


def answers_csv(answers: list[Answer]) -> str:
    """The latest answer per object as CSV (`CSV_COLUMNS`), in the order they were given."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for answer in latest(answers).values():
        writer.writerow(["" if v is None else v for v in asdict(answer).values()])
    return out.getvalue()
