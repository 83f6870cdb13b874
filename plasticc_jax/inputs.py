"""Which files of a folder are input: the file names of the two PLAsTiCC formats, per set.

`find_inputs` is the one definition of which files of a folder are input (train, test or both
sets; Kaggle or unblinded names, each `.csv` or `.csv.gz`). The formats themselves, and the
reading of the files, are `plasticc_jax.readers`.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from plasticc_jax.config import INPUT_SELECTIONS
from plasticc_jax.csv_files import open_bytes
from plasticc_jax.errors import UserError, listing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFiles:
    """The input files of a folder: one format, one selection (train, test or all)."""

    fmt: str
    selection: str
    lightcurves: tuple[Path, ...]
    metadata: tuple[Path, ...]


SELECTIONS: tuple[str, ...] = INPUT_SELECTIONS
_CSV = r"\.csv(?:\.gz)?"
# How reports name each format.
FORMAT_NAMES: dict[str, str] = {
    "unblinded": "format of the unblinded release on Zenodo",
    "kaggle": "format of the Kaggle challenge",
}
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


def is_test_file(path: Path) -> bool:
    """Whether `path` is named as a file of PLAsTiCC's test set (either format)."""
    return any(
        re.fullmatch(pattern, Path(path).name)
        for patterns in FILE_PATTERNS.values()
        for pattern in patterns["test"]
    )


def _refuse_decompressed_copy(path: Path) -> None:
    """`gunzip -k` leaves `X.csv` beside `X.csv.gz`: both would be read, every object twice.
    Refused when `X.csv` starts with the same bytes as the gzip file decompressed (two files of
    one name holding other objects are two inputs).

    Raises:
        UserError: `path` is `X.csv` and `X.csv.gz` beside it starts with the same bytes.
    """
    packed = path.with_name(path.name + ".gz")
    if path.name.endswith(".gz") or not packed.is_file():
        return
    size = 1 << 16
    with open(path, "rb") as plain, open_bytes(packed) as unpacked:
        try:
            same = plain.read(size) == unpacked.read(size)
        except (OSError, EOFError, zlib.error):
            return  # not gzip after all, or damaged: its own reading says so
    if same:
        raise UserError(
            f"{path.parent}: holds {path.name} and {packed.name}, the one the other decompressed "
            "(`gunzip -k` keeps both): both would be read, every object twice; keep one of them"
        )


# The unblinded test set's light curves come in parts _01 to _11 (Zenodo record 2539456).
TEST_PART = re.compile(rf"plasticc_test_lightcurves_(\d+){_CSV}")
N_TEST_PARTS = 11


def warn_missing_test_parts(paths: Sequence[Path]) -> None:
    """Warn when light-curve files named as parts of the unblinded test set leave out some of
    _01 to _11: the missing parts' objects (about 300,000 each) are then only listed as
    "metadata without light curve" (a subset may be meant: a warning, not an error)."""
    numbers = {int(m.group(1)) for p in paths if (m := TEST_PART.fullmatch(Path(p).name))}
    missing = sorted(set(range(1, N_TEST_PARTS + 1)) - numbers)
    if numbers and missing:
        log.warning(
            "the test set's light curves lack part(s) %s of _01 to _%02d: their objects will be "
            "listed as rejected (metadata without light curve); fetch them if that is not meant",
            ", ".join(f"_{n:02d}" for n in missing),
            N_TEST_PARTS,
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
                    f"for the {name} set ({fmt} format); add it or remove the other (for the "
                    "default data, `plasticc-jax download` fetches both again)"
                )
            for path in [*lc, *meta]:
                _refuse_decompressed_copy(path)
            lcs += lc
            metas += meta
        if lcs:
            found.append(InputFiles(fmt, selection, tuple(lcs), tuple(metas)))
    if not found:
        return None

    def sets_held(files: InputFiles) -> set[str]:
        return {"test" if is_test_file(p) else "train" for p in files.lightcurves}

    # The format that holds the most of the sets asked for, the unblinded one on a tie (a review:
    # the unblinded training set was read alone beside Kaggle's training and test sets).
    found.sort(key=lambda files: -len(sets_held(files)))
    if selection == "all" and len(sets_held(found[0])) < len(set().union(*map(sets_held, found))):
        held = {f.fmt: ", ".join(sorted(sets_held(f))) for f in found}
        raise UserError(
            f"data.inputs=all: {raw_dir} holds the sets in different formats ("
            + "; ".join(f"{fmt}: {names}" for fmt, names in held.items())
            + "): give both sets in one format"
        )
    warn_missing_test_parts(found[0].lightcurves)
    tests = sum(map(is_test_file, found[0].lightcurves))
    if selection == "all" and tests in (0, len(found[0].lightcurves)):
        log.warning(
            "data.inputs=all: %s holds no %s set files; only the %s set is read",
            raw_dir,
            "test" if tests == 0 else "training",
            "training" if tests == 0 else "test",
        )
    if len(found) > 1:
        log.warning(
            "%s holds both formats; using the %s files and ignoring the %s ones",
            raw_dir,
            found[0].fmt,
            found[1].fmt,
        )
    read = {p.name for p in (*found[0].lightcurves, *found[0].metadata)}
    other = [n for n in data_files(raw_dir) if n not in read]
    if other:  # (a review: a user's own files there were passed over without a word)
        log.info(
            "%s: not read (not inputs of data.inputs=%s): %s", raw_dir, selection, listing(other)
        )
    return found[0]
