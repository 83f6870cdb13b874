"""Small file helpers shared by every stage: atomic writes, hashing, folder locks, scratch
folders, and the guard that keeps outputs off inputs."""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)


TMP_PREFIX = ".tmp-"  # of `atomic_path`'s temporary files


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An interrupted write (exception, Ctrl-C, kill -9) never leaves a file at `path` that looks
    complete: at worst a `.tmp-*` file remains, which later runs ignore and overwrite.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        with naming_failed_writes(path):
            yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


# Errors only a write raises; the write's OSError names no file (a full disk was "[Errno 28] No
# space left on device" and no path), so `naming_failed_writes` adds it.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextmanager
def naming_failed_writes(path: Path) -> Iterator[None]:
    """Re-raise a write's OSError of the block that names no file (`WRITE_ERRNOS`) as the same
    error naming `path`, so that the one-line message says where the disk is full."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno not in WRITE_ERRNOS:
            raise
        raise OSError(error.errno, os.strerror(error.errno), str(path)) from error


def remove_unfinished_writes(folder: Path, *subfolders: str) -> None:
    """Remove what writes a kill interrupted left (`atomic_path`'s temporary files, never
    complete) in `folder` and in its `subfolders` (glob patterns relative to it)."""
    for sub in ("", *subfolders):
        for leftover in Path(folder).glob(f"{sub}/{TMP_PREFIX}*" if sub else f"{TMP_PREFIX}*"):
            # A folder is a command's scratch (`scratch_dir`: a `score` writing into the run's
            # folder, perhaps still running), which that command's next call removes.
            if not leftover.is_dir() or leftover.is_symlink():
                leftover.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a rename into it) durable, as `os.fsync` a file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---------------------------------------------------------------------------------------------
# Outputs never replace inputs.


def refuse_overwrite(
    outputs: Iterable[Path], inputs: Iterable[Path], folders: Iterable[Path] = (), *, what: str
) -> None:
    """Refuse to write any of `outputs` over one of `inputs` or into one of `folders`.

    Paths are compared after resolving symbolic links (and by device and inode for hard links),
    so `a/../b`, a link to an input or the input's own name all count as the input.

    Args:
        outputs: files about to be written.
        inputs: files the command reads (or must keep).
        folders: folders nothing may be written into (e.g. a run's checkpoints).
        what: how the user named the output, for the message (e.g. `--output`).

    Raises:
        UserError: an output is an input, lies in a protected folder, or is a folder.
    """
    inputs = [Path(p) for p in inputs]
    resolved = {p.resolve(): p for p in inputs}
    protected = [Path(f).resolve() for f in folders]
    for output in map(Path, outputs):
        if output.is_dir():
            raise UserError(f"{what} {output} is a folder: give a file name")
        target = output.resolve()
        same = resolved.get(target)
        if same is None and output.exists():
            same = next((p for p in inputs if p.exists() and os.path.samefile(p, output)), None)
        if same is not None:
            raise UserError(
                f"{what} {output} would overwrite {same}, which this command reads or must keep; "
                "choose another output path"
            )
        folder = next((f for f in protected if target.is_relative_to(f)), None)
        if folder is not None:
            raise UserError(
                f"{what} {output} lies in {folder}, which holds files this command reads: "
                "choose another output path"
            )


# ---------------------------------------------------------------------------------------------
# Folder locks: one writer at a time, kill -9 safe.


class FolderBusy(UserError):
    """Another process holds the lock of a folder this stage would write (or read)."""


_HELD: dict[Path, str] = {}  # lock files this process holds -> "shared" or "exclusive"
# A container's mounted folders that its daemon created as root: what to do (`cli` says it too).
CONTAINER_HINT = "create data/ and runs/ before `docker run` and pass `--user $(id -u):$(id -g)`"


def lock_path(folder: Path) -> Path:
    """The lock file of a folder: `.<name>.lock` beside it (the folder may not exist yet, and its
    own contents stay exactly what the stage writes)."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name or 'root'}.lock"


def check_lockable(folder: Path, option: str = "--output") -> None:
    """Say in one line, before a stage's work rather than after it, when this user could not
    create (or open) the lock file of an output `folder`; nothing is written.

    Raises:
        UserError: this user may not write the folder that holds `folder` (the lock file lies
            beside `folder`, not in it), or the lock file there is not theirs to open.
    """
    path = lock_path(folder)
    target, mode = (path, os.R_OK | os.W_OK) if path.exists() else (path.parent, os.W_OK | os.X_OK)
    if not os.access(target, mode):
        raise UserError(
            f"{option} {folder}: {_lock_denied(path, os.strerror(errno.EACCES))}; give a folder "
            f"inside one you can write to (a new folder inside {folder}, say)"
        )


# A lock file that cannot be created for these reasons is the user's to fix (another folder).
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _lock_denied(path: Path, reason: str) -> str:
    return (
        f"its lock file {path} cannot be created ({reason}): this user must be able to write "
        f"{path.parent}"
    )


def _holder() -> dict[str, object]:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(argv)[:300],
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _read_holder(handle: IO[str]) -> dict[str, object]:
    handle.seek(0)
    try:
        info = json.loads(handle.read())
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe_holder(handle: IO[str], wait_s: float = 1.0) -> str:
    """Who holds the lock, from its record. The holder writes the record just after it takes the
    lock, so an empty record is waited for (up to `wait_s`) before it is called unknown."""
    deadline = time.monotonic() + wait_s
    while not (info := _read_holder(handle)) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        doing = "reading" if info["mode"] == "shared" else "writing"
        return (
            f"{info['stage']} ({doing}; pid {info['pid']} on {info['host']}, started "
            f"{info['started_utc']}; command: {info['command'] or '?'})"
        )
    except KeyError:
        return "another process (it left no record of itself)"


def _is_other_live_reader(info: dict[str, object]) -> bool:
    """Whether the record names another reader that still runs (on another host: assumed)."""
    if info.get("mode") != "shared" or info.get("pid") == os.getpid():
        return False
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)  # type: ignore[call-overload]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


@contextmanager
def folder_lock(folder: Path, stage: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock of `folder` while a stage writes it (exclusive) or reads it (shared).

    An exclusive lock excludes every other holder; shared locks exclude only exclusive ones. The
    lock is `fcntl.flock` on `lock_path(folder)`, which the operating system releases when the
    process ends, however it ends (kill -9 included): a stale lock cannot block anyone. The lock
    file records its holder (pid, host, command, start time) for the refusal message; it is left
    in place (removing it would race with the next holder).

    A reader whose lock file cannot be created (a read-only folder, or no folder yet) reads
    without a lock: nothing can be writing there. Within one process the lock is re-entrant:
    inside an exclusive hold, any request for the same folder is granted at once (the command
    line takes a run directory's lock before it imports JAX, the stage takes it again).

    Args:
        folder: the folder (a prepared dataset, a run directory).
        stage: who holds it, for the message (`prepare`, `train`, ...).
        shared: take a shared (reader's) lock instead of an exclusive one.

    Raises:
        FolderBusy: another process holds a conflicting lock; the message names it.
        UserError: this user may not create the lock file of an exclusive lock
            (`check_lockable`).
    """
    path = lock_path(folder)
    if _HELD.get(path) == "exclusive" or (shared and path in _HELD):
        yield  # this process holds it already
        return
    if shared and not Path(folder).is_dir() and not path.exists():
        yield  # nothing to read there and no writer (the reader will say so); no lock file made
        return
    if not shared:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held open for the whole block)
    except OSError as error:
        if not shared:
            if error.errno not in _DENIED:
                raise
            raise UserError(
                f"{folder}: {_lock_denied(path, error.strerror)} (in a container, {CONTAINER_HINT})"
            ) from None
        log.debug("reading %s without a lock (%s)", folder, error)
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusy(
                f"{folder} is in use by {_describe_holder(handle)}: wait for it to finish (or "
                "stop it), then run again"
            ) from None
        # The record names one holder: a writer, or the first reader still running (readers
        # share the file, so a later one leaves the record alone).
        info = {**_holder(), "stage": stage, "mode": "shared" if shared else "exclusive"}
        recorded = not (shared and _is_other_live_reader(_read_holder(handle)))
        if recorded:
            _write_holder(handle, info)
        _HELD[path] = "shared" if shared else "exclusive"
        try:
            yield
        finally:
            del _HELD[path]
            if recorded and _read_holder(handle).get("pid") == os.getpid():
                _write_holder(handle, None)  # nobody then, unless another reader remains
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_holder(handle: IO[str], info: dict[str, object] | None) -> None:
    try:
        handle.seek(0)
        handle.truncate()
        if info is not None:
            handle.write(json.dumps(info) + "\n")
        handle.flush()
    except OSError:  # the record is a courtesy; the lock is what counts
        pass


# ---------------------------------------------------------------------------------------------
# Input files and output folders, checked before the work.


def check_input_files(paths: Iterable[Path]) -> None:
    """Raise a UserError naming the first input path that is not a readable file, or the first
    file given twice (by any name: its rows would be read twice)."""
    seen: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            raise UserError(f"input {path} is a folder: give the CSV(.gz) files in it")
        if path.exists() and not path.is_file():  # read twice (header, then rows): a pipe cannot
            raise UserError(
                f"input {path} is not a regular file (a pipe or a device): save it to a file first"
            )
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
        again = next((p for p in seen if os.path.samefile(p, path)), None)
        if again is not None:
            same = "" if again == path else f" (as {again} and as {path})"
            raise UserError(f"input file {path} is given twice{same}: give each file once")
        seen.append(path)


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, modification time in ns) of a file: a file replaced or written to changes it."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


def check_unchanged(path: Path, stamp: tuple[int, int] | None) -> None:
    """A UserError if the file is not the one the run started on (`stamp`): one still being
    written (a copy, a download) was read as far as it had got."""
    if stamp is not None and file_stamp(path) != stamp:
        raise UserError(
            f"{path} changed while the run was going (its size or modification time differ "
            "from when it started): run again once the file is complete"
        )


def file_stamps(paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """Each input file's `file_stamp`, taken before a stage reads them (`check_files_unchanged`
    once it has)."""
    return {Path(p): file_stamp(p) for p in paths}


def check_files_unchanged(stamps: Mapping[Path, tuple[int, int]] | None) -> None:
    """`check_unchanged` of every file of `file_stamps` (None: nothing to check)."""
    for path, stamp in (stamps or {}).items():
        check_unchanged(path, stamp)


def make_output_folder(folder: Path, option: str = "--output") -> None:
    """Create the folder an output goes to (and its parents), or say in one line why not.

    Raises:
        UserError: a part of the path is a file, or the folder cannot be created.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        file = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        where = "" if file == folder else f", so the folder {folder} cannot be made"
        raise UserError(f"{option}: {file} is a file{where}; choose another path") from None
    except OSError as error:
        raise UserError(
            f"{option}: cannot create the folder {folder}: {error.strerror}; choose another path"
        ) from None
    try:  # a folder that exists may still take no files (read-only, or a system folder)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-check-"):
            pass
    except OSError as error:
        raise UserError(
            f"{option}: cannot write files into {folder}: {error.strerror}; choose another path"
        ) from None


# ---------------------------------------------------------------------------------------------
# Scratch folders that a killed process does not leave behind for long.

_OWNER_FILE = ".owner"
_ORPHAN_AGE_S = 600.0  # a scratch folder without an owner file this old was never claimed


@contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder in `parent`, removed at the end; also after kill -9, by the next call.

    The folder holds a locked `.owner` file while in use. Every call first removes the folders of
    the same prefix in `parent` that this user owns and nobody holds (`remove_stale_scratch`).
    """
    parent = Path(parent)
    remove_stale_scratch(parent, prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        with open(folder / _OWNER_FILE, "w") as owner:
            fcntl.flock(owner, fcntl.LOCK_EX)
            owner.write(json.dumps(_holder()) + "\n")
            owner.flush()
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_scratch(parent: Path, prefix: str) -> list[Path]:
    """Remove scratch folders `parent/<prefix>*` of this user whose owner has ended.

    Returns:
        The folders removed.
    """
    removed = []
    for folder in stale_scratch(parent, prefix):
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left behind by an interrupted run", folder)
        removed.append(folder)
    return removed


def stale_scratch(parent: Path, prefix: str) -> list[Path]:
    """The scratch folders `parent/<prefix>*` of this user whose owner has ended."""
    stale = []
    for folder in sorted(Path(parent).glob(f"{prefix}*")):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = folder / _OWNER_FILE
            # Written once locked: an empty one may not be locked yet.
            if owner.is_file() and owner.stat().st_size:
                with open(owner) as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while held
            elif time.time() - folder.stat().st_mtime < _ORPHAN_AGE_S:
                continue  # just created by a process that has not locked it yet
        except OSError:
            continue
        stale.append(folder)
    return stale
