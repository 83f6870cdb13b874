"""The expert's answers on disk: an append-only JSON-lines file, one answer per line.

Each line is `{"object_id": 123, "label": "anomaly", "time": "2025-...Z", "position": 1}`
(`position`: where the active ranking had the object when it was answered, 1 = top; null when
unknown). Every answer is written with one `write` and `fsync`ed before the answer is
acknowledged, so a session killed at any moment (kill -9, power loss) keeps every acknowledged
answer; a line torn by such a kill (the last one, without its newline) is ignored on read and cut
off before the next append. An object answered twice keeps its last answer (`latest`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from plasticc_jax.errors import UserError

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
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Answer(int(object_id), label, stamp, position)

    @staticmethod
    def from_json(raw: object) -> Answer:
        """Validate a decoded line.

        Raises:
            ValueError: not an object with an integer `object_id` and a known `label`.
        """
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        object_id, label, position = raw.get("object_id"), raw.get("label"), raw.get("position")
        if not isinstance(object_id, int) or isinstance(object_id, bool):
            raise ValueError(f"object_id {object_id!r} is not an integer")
        if label not in LABELS:
            raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
        if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
            raise ValueError(f"position {position!r} is not an integer")
        return Answer(object_id, label, str(raw.get("time", "")), position)


def read_answers(path: Path) -> list[Answer]:
    """Every answer in a labels file, in order (none if the file does not exist).

    A last line without its newline was torn by a killed writer and is ignored.

    Raises:
        UserError: a complete line that is not a valid answer (the file was edited by hand).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"labels file {path} is a folder: give a file name (e.g. {path}/labels.jsonl)"
        )
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines[-1]:
        log.warning("%s: ignoring a torn last line (a session was killed while writing)", path)
    answers = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            answers.append(Answer.from_json(json.loads(line)))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise UserError(
                f"{path}, line {number}: not a review answer ({error}); fix or remove that line"
            ) from None
    return answers


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
        path: the JSON-lines file (created with its folder on the first answer).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answers = read_answers(self.path)
        self._cut_torn_tail()

    @property
    def answers(self) -> list[Answer]:
        """Every answer so far, in order (a copy)."""
        with self._lock:
            return list(self._answers)

    def append(self, answer: Answer) -> None:
        """Write one answer durably (written and fsync'd when this returns)."""
        line = (json.dumps(asdict(answer), separators=(",", ":")) + "\n").encode()
        with self._lock:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            if new:  # the new directory entry must survive a crash too
                _fsync_dir(self.path.parent)
            self._answers.append(answer)

    def _cut_torn_tail(self) -> None:
        """Drop a torn last line, so that the next answer starts on a line of its own."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def answers_csv(answers: list[Answer]) -> str:
    """The latest answer per object as CSV (`CSV_COLUMNS`), in the order they were given."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for answer in latest(answers).values():
        writer.writerow(["" if v is None else v for v in asdict(answer).values()])
    return out.getvalue()
