"""Fetch the default data, the unblinded PLAsTiCC training set, into `data/raw`, and verify it.

The data is the training sample of the unblinded PLAsTiCC release (PLAsTiCC Team and PLAsTiCC
modelers, Zenodo record 2539456, DOI 10.5281/zenodo.2539456, CC BY 4.0; PLAsTiCC Team et al. 2018,
arXiv:1810.00001; Kessler et al. 2019, arXiv:1903.11756): `plasticc_train_lightcurves.csv.gz`
(1,421,705 observations of 7,848 objects) and `plasticc_train_metadata.csv.gz` (7,848 rows).

Sources, tried in this order when `data.source == "auto"`:

1. a local mirror folder holding the two files (`PLASTICC_JAX_MIRROR`, or `data.source` set to a
   folder), copied;
2. Zenodo record 2539456, streamed over HTTPS;
3. the copy inside the PyPI wheel `snmachine==2.0.0.post3` (`snmachine/example_data/`), fetched
   with `pip download` through whatever index pip is configured with, unpacked with `zipfile`
   (snmachine is never installed) and gzipped.

`data.source` may also force one of `zenodo`, `snmachine` or a folder. Whatever the source, the
files arrive under the same two names and are checked by row and object counts and by the known
SHA-256 of the decompressed CSVs (`plasticc_jax.download_check`), and the wheel by its own
SHA-256; a mismatch is refused and named. Everything is fetched into a staging folder inside the
raw folder and moved into place only once both files pass, so a failed or interrupted download
leaves no file that looks complete. `SOURCE.json` beside the files records the source, the time
and the hashes and counts; a later call that finds the files matching it does nothing. Files
already in the raw folder that do not match are reported, never replaced, and the record is left
as it is; `prepare` warns of them (`warn_unless_published`).
"""

from __future__ import annotations

import errno
import gzip
import http.client
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from plasticc_jax.config import Config
from plasticc_jax.csv_files import is_gzip
from plasticc_jax.download_check import (
    BLOCK,
    SOURCE_FILE,
    Expected,
    SourceFailed,
    check_existing,
    matches_record,
    read_record,
    stored_file,
    verify,
    write_record,
)
from plasticc_jax.errors import UserError
from plasticc_jax.inputs import find_inputs
from plasticc_jax.io_utils import (
    WRITE_ERRNOS,
    make_output_folder,
    remove_stale_scratch,
    scratch_dir,
    sha256_file,
)

log = logging.getLogger(__name__)

MIRROR_ENV = "PLASTICC_JAX_MIRROR"

ZENODO_RECORD = "https://zenodo.org/records/2539456"
# Seconds to wait for Zenodo to answer (connect, and each read): an unreachable host fails fast and
# the next source is tried.
HTTP_TIMEOUT_S = 10.0
# A server that sends far more than the files' size (about 22 MB gzipped), or trickles: refused
# instead of filling the disk or waiting for ever (a read that stalls fails by HTTP_TIMEOUT_S).
MAX_DOWNLOAD_BYTES = 200_000_000
SLOW_WINDOW_S, SLOW_WINDOW_BYTES = 60.0, 64_000  # at least this many bytes every window

# Seconds pip waits for the package index at each try (`--timeout`), three tries.
PIP_TIMEOUT_S = 20
STAGING_PREFIX = ".tmp-download-"

WHEEL_REQUIREMENT = "snmachine==2.0.0.post3"
WHEEL_SHA256 = "09faca95f69566b36a0d798ce01d24b25cc11367fb3b5323c4aa552421f715da"

# The training set's two files, as every source must deliver them (`download_check.verify`).
EXPECTED: tuple[Expected, ...] = (
    Expected(
        name="plasticc_train_lightcurves.csv.gz",
        wheel_member="snmachine/example_data/plasticc_train_lightcurves.csv",
        columns=("object_id", "mjd", "passband", "flux", "flux_err", "detected_bool"),
        rows=1_421_705,
        objects=7_848,
        sha256="da0efda0c6a3c6abec42dcab166ca18814be8597ee9f998e24e9792f6ca6998c",
    ),
    Expected(
        name="plasticc_train_metadata.csv.gz",
        wheel_member="snmachine/example_data/plasticc_train_metadata.csv",
        columns=("object_id", "ra", "decl", "ddf_bool", "hostgal_photoz", "target"),
        rows=7_848,
        objects=7_848,
        sha256="3d7fe4298e820244677437fe371c8b56cc8e3633dc8c196a9866aff427c88ee0",
    ),
)


@dataclass(frozen=True)
class Source:
    """A place the training set can come from.

    Attributes:
        name: short name, as in `data.source` and `SOURCE.json`.
        location: URL, folder or requirement, for messages and the record.
        fetch: writes every `Expected.name` into the staging folder it is given, and returns extra
            facts for the record (e.g. the wheel's hash).
    """

    name: str
    location: str
    fetch: Callable[[Path], dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Public API.


def download(config: Config, workdir: Path) -> Path:
    """Make sure the unblinded training set is in the raw folder, fetching it if needed.

    Args:
        config: `config.data.raw_dir` (relative to `workdir`) is where the files go;
            `config.data.source` picks the source (`auto`, `zenodo`, `snmachine` or a folder).
        workdir: project folder.

    Returns:
        The raw folder, holding `plasticc_train_lightcurves.csv.gz`,
        `plasticc_train_metadata.csv.gz` (or plain CSVs a user put there) and `SOURCE.json`.

    Raises:
        UserError: every source failed (the message lists each one and what to do), or files
            already in the raw folder are not the PLAsTiCC training set.
    """
    raw = Path(workdir) / config.data.raw_dir
    remove_stale_scratch(raw, STAGING_PREFIX)  # a killed download's, also where none follows
    present = [stored_file(raw, expected.name) for expected in EXPECTED]
    if all(path is not None for path in present):
        _accept_existing(raw, [path for path in present if path is not None])
        return raw
    for path, expected in zip(present, EXPECTED, strict=True):
        if path is not None:  # replaced below only if it is the file the download brings
            check_existing(raw, [path], [expected])
            log.warning("%s is there but its partner is not: fetching both again", path)

    errors: list[str] = []
    checked = [path for path in present if path is not None]
    for source in _sources(config.data.source, Path(workdir)):
        log.info("fetching the PLAsTiCC training set from %s (%s)", source.name, source.location)
        try:
            _install(source, raw, checked)
        except SourceFailed as error:
            log.warning("%s (%s) failed: %s", source.name, source.location, error)
            errors.append(f"{source.name} ({source.location}): {error}")
            continue
        return raw
    names = " and ".join(expected.name for expected in EXPECTED)
    try:
        own = find_inputs(raw, "train")
    except UserError:  # half a set: the sources' failures are the message here
        own = None
    yours = (
        f"{raw} holds your own training set already ({own.lightcurves[0].name}): `plasticc-jax "
        "prepare` uses it as it is, without a download."
        if own is not None
        else f"Your own files also work: put Kaggle's training_set.csv and "
        f"training_set_metadata.csv in {raw}."
    )
    raise UserError(
        f"could not fetch the PLAsTiCC training set into {raw}:\n"
        + "".join(f"  - {line}\n" for line in errors)
        + f"What to do: download {names} from {ZENODO_RECORD} and place them in {raw} by hand, "
        + (
            f"or set {MIRROR_ENV} (or --set data.source=FOLDER) to a folder holding them"
            if config.data.source == "auto"
            else "or --set data.source=FOLDER, a folder holding them"  # the variable is for auto
        )
        + f", then rerun. {yours}"
    )


def ensure_raw_data(config: Config, workdir: Path) -> None:
    """Download the default data unless the raw folder already holds a recognised training set.

    Recognised is what `inputs.find_inputs` recognises (Kaggle's `training_set*.csv` or the
    unblinded `plasticc_train_*.csv`, gzipped or not). Files found are used as they are (prepare
    checks their content), never replaced.
    """
    raw = Path(workdir) / config.data.raw_dir
    found = find_inputs(raw, "train")
    if found is not None:
        names = ", ".join(p.name for p in (*found.lightcurves, *found.metadata))
        log.info("input files found in %s: %s", raw, names)
        return
    log.info("no input files in %s: downloading the PLAsTiCC training set", raw)
    download(config, workdir)


def warn_unless_published(raw: Path) -> None:
    """Warn when files in `raw` carry the training set's names but are not it (a download or an
    unzip by hand cut short is otherwise prepared as it is: prepare reads whatever is there). A
    match is recorded in SOURCE.json, so the scan happens once."""
    paths = [stored_file(raw, expected.name) for expected in EXPECTED]
    if any(path is None for path in paths):
        return
    try:
        _accept_existing(raw, [path for path in paths if path is not None])
    except UserError as error:
        log.warning("%s", error)


# ---------------------------------------------------------------------------------------------
# Sources.


def _sources(choice: str, workdir: Path) -> list[Source]:
    """The sources to try, in order, for `data.source = choice`."""
    zenodo = Source("zenodo", ZENODO_RECORD, _fetch_zenodo)
    wheel = Source("snmachine", f"{WHEEL_REQUIREMENT} via pip", _fetch_wheel)
    if choice == "auto":
        mirror = os.environ.get(MIRROR_ENV)
        # The variable is read where it was set: relative to the current folder.
        folder = Path(mirror).expanduser().absolute() if mirror else None
        first = [_mirror_source(folder, MIRROR_ENV)] if folder else []
        return [*first, zenodo, wheel]
    if choice == "zenodo":
        return [zenodo]
    if choice == "snmachine":
        return [wheel]
    folder = Path(choice).expanduser()
    return [_mirror_source(folder if folder.is_absolute() else workdir / folder, "data.source")]


def _mirror_source(folder: Path, setting: str) -> Source:
    """The two files copied from a local folder (named by `setting`)."""

    def fetch(staging: Path) -> dict[str, Any]:
        if folder.exists() and not folder.is_dir():
            raise SourceFailed(f"{setting} names {folder}, a file: give the folder holding them")
        if not folder.is_dir():
            what = (
                "data.source is 'auto', 'zenodo', 'snmachine' or a folder holding the files"
                if setting == "data.source"
                else f"set {setting} to the folder holding the files, or unset it"
            )
            raise SourceFailed(
                f"{setting} names the folder {folder}, which does not exist ({what})"
            )
        for expected in EXPECTED:
            src = stored_file(folder, expected.name)
            if src is None:
                plain = expected.name.removesuffix(".gz")
                raise SourceFailed(f"{folder} holds no {expected.name} (nor {plain})")
            if is_gzip(src):
                shutil.copyfile(src, staging / expected.name)
            else:
                with open(src, "rb") as plain:
                    _write_gzip(plain, staging / expected.name)
        return {}

    return Source("mirror", str(folder), fetch)


def _fetch_zenodo(staging: Path) -> dict[str, Any]:
    urls = {}
    for expected in EXPECTED:
        url = f"{ZENODO_RECORD}/files/{expected.name}?download=1"
        try:
            _fetch_url(url, staging / expected.name)
        # URLError, HTTPError and timeouts are OSErrors; IncompleteRead is an HTTPException.
        except (OSError, ValueError, http.client.HTTPException) as error:
            _raise_if_full(error)
            raise SourceFailed(f"{url}: {error}") from error
        urls[expected.name] = url
    return {"urls": urls}


def _fetch_url(url: str, dest: Path) -> None:
    """Stream `url` into `dest`, failing on a short read (a bar shows when it takes a while)."""
    request = urllib.request.Request(url, headers={"User-Agent": "plasticc-jax"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        if "html" in (response.headers.get("Content-Type") or "").lower():
            raise SourceFailed(f"{url}: the server answered with a web page, not the file")
        total = int(response.headers.get("Content-Length") or 0) or None
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise SourceFailed(f"{url}: {total:,} bytes announced, not the training set's file")
        received, window_start, window_bytes = 0, time.monotonic(), 0
        with (
            open(dest, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, delay=2.0) as bar,
        ):
            while block := response.read1(BLOCK):  # what has come: a trickle is measured
                out.write(block)
                received += len(block)
                window_bytes += len(block)
                bar.update(len(block))
                if received > MAX_DOWNLOAD_BYTES:
                    raise SourceFailed(
                        f"{url}: over {MAX_DOWNLOAD_BYTES:,} bytes, not the training set's file"
                    )
                if time.monotonic() - window_start >= SLOW_WINDOW_S:
                    if window_bytes < SLOW_WINDOW_BYTES:
                        raise SourceFailed(
                            f"{url}: {window_bytes:,} bytes in the last {SLOW_WINDOW_S:.0f} s, "
                            "too slow: try again later or give a mirror folder"
                        )
                    window_start, window_bytes = time.monotonic(), 0
    if total is not None and received != total:
        raise SourceFailed(f"{url}: connection closed after {received} of {total} bytes")


def _fetch_wheel(staging: Path) -> dict[str, Any]:
    wheel = _pip_download_wheel(staging / "wheel")
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise SourceFailed(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
    _extract_wheel(wheel, staging)
    return {"wheel": wheel.name, "wheel_sha256": digest}


def _pip_download_wheel(folder: Path) -> Path:
    """Run `pip download` for the snmachine wheel into `folder` and return the wheel's path.

    pip prints its own progress bar; its messages are shown only when it fails.
    """
    command = [
        *(sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "-d", str(folder)),
        *("--no-deps", "--no-binary", ":none:", "--only-binary", ":all:"),
        # Only into `folder` (its disk is the raw folder's: a full one is said to be that):
        # no cache, and pip's own temporary files there too (TMPDIR, below).
        *("--disable-pip-version-check", "--no-input", "--no-cache-dir"),
        # An index that accepts connections and never answers: about a minute, not pip's
        # default of six tries of its own timeout (or of PIP_DEFAULT_TIMEOUT's).
        *("--timeout", str(PIP_TIMEOUT_S), "--retries", "2"),
    ]
    log.info(
        "running %s (up to about a minute if the index does not answer)", " ".join(command[2:])
    )
    try:
        environment = {**os.environ, "TMPDIR": str(folder)}
        result = subprocess.run(
            command, stderr=subprocess.PIPE, text=True, check=False, env=environment
        )
    except OSError as error:
        raise SourceFailed(f"could not run pip: {error}") from error
    if result.returncode != 0:
        if "[Errno 28]" in result.stderr:  # a full disk, as the other sources report it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
        last = " | ".join(result.stderr.strip().splitlines()[-3:]) or "no message"
        raise SourceFailed(f"pip download exited with status {result.returncode}: {last}")
    wheels = sorted(folder.glob("snmachine-*.whl"))
    if len(wheels) != 1:
        raise SourceFailed(f"pip download left {len(wheels)} snmachine wheels in {folder}")
    return wheels[0]


def _extract_wheel(wheel: Path, staging: Path) -> None:
    """Gzip each expected CSV of the wheel into the staging folder, without installing it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for expected in EXPECTED:
                try:
                    member = archive.open(expected.wheel_member)
                except KeyError as error:
                    raise SourceFailed(f"{wheel.name} holds no {expected.wheel_member}") from error
                with member:
                    _write_gzip(member, staging / expected.name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        _raise_if_full(error)
        raise SourceFailed(f"{wheel.name} is not a readable wheel: {error}") from error


def _raise_if_full(error: BaseException) -> None:
    """A full disk is not a failed source: `_install` stops there (each other source would
    fetch its files in vain, the wheel's 82 MB included)."""
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        raise error


def _write_gzip(source: Any, dest: Path) -> None:
    # No file name and a zero time stamp in the header (like `gzip -n`): the same input always
    # gives the same bytes.
    with open(dest, "wb") as out, gzip.GzipFile("", "wb", 6, out, mtime=0) as packed:
        shutil.copyfileobj(source, packed, BLOCK)


# ---------------------------------------------------------------------------------------------
# Staging, verification and the cache record.


def _install(source: Source, raw: Path, checked: list[Path]) -> None:
    """Fetch into a staging folder inside `raw`, verify, then move the files into place; a
    plain CSV among `checked` (verified to be the same content) is replaced by the download."""
    make_output_folder(raw, "the raw data folder (data.raw_dir)")
    for expected in EXPECTED:
        if (raw / expected.name).exists() and not (raw / expected.name).is_file():
            raise UserError(
                f"{raw / expected.name} is a folder, where the download puts that file: move it "
                "elsewhere and rerun"
            )
    # The staging folder sits in `raw` so the final moves are renames on one file system; one
    # left behind by a killed download is removed by the next (`scratch_dir`).
    with scratch_dir(raw, STAGING_PREFIX) as staging:
        try:
            extra = source.fetch(staging)
            checks = [verify(staging / expected.name, expected) for expected in EXPECTED]
        except OSError as error:
            if error.errno in WRITE_ERRNOS:  # a full disk: no other source fits either
                raise OSError(error.errno, os.strerror(error.errno), str(raw)) from error
            raise SourceFailed(f"{type(error).__name__}: {error}") from error
        except (EOFError, zlib.error) as error:
            raise SourceFailed(f"{type(error).__name__}: {error}") from error
        for expected in EXPECTED:
            os.replace(staging / expected.name, raw / expected.name)
            plain = raw / expected.name.removesuffix(".gz")
            if plain in checked:  # the same content: one copy, or prepare reads it twice
                plain.unlink()
                log.warning("%s replaced by %s (the same content, gzipped)", plain, expected.name)
    write_record(raw, source.name, source.location, checks, extra)
    log.info(
        "PLAsTiCC training set from %s (%s) in %s: %s",
        source.name,
        source.location,
        raw,
        "; ".join(f"{c.name} {c.rows:,} rows, {c.objects:,} objects" for c in checks),
    )


def _accept_existing(raw: Path, paths: list[Path]) -> None:
    """Files are already in `raw`: trust them if they match SOURCE.json, else verify them."""
    record = read_record(raw)
    if record and matches_record(record, paths):
        log.info(
            "PLAsTiCC training set already in %s (from %s, %s); nothing to download",
            raw,
            record.get("source"),
            record.get("retrieved_utc"),
        )
        return
    checks = check_existing(raw, paths, list(EXPECTED))
    log.info("PLAsTiCC training set found in %s (placed there by hand) and verified", raw)
    try:
        write_record(raw, "existing files", str(raw), checks, {})
    except OSError as error:  # a read-only folder: the files are good, they are checked again
        log.warning(
            "could not write %s in %s (%s): the files will be verified again next time",
            SOURCE_FILE,
            raw,
            error.strerror or error,
        )
