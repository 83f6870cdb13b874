"""Bad input: each case gives a clear error, or the object is rejected and counted.

Every case is a small file generated here; every prepare that completes must add up
(objects in shards + objects rejected = objects in the input).
"""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, readers
from plasticc_jax.dataset import read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.prepare import prepare
from plasticc_jax.streaming import NO_LIGHTCURVE, NO_METADATA
from plasticc_jax.synthetic import write_synthetic

N_OBJECTS = 40


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(light curves, metadata) of a clean Kaggle-format set."""
    folder = tmp_path_factory.mktemp("good")
    meta, lcs = write_synthetic(folder, N_OBJECTS, fmt="kaggle", seed=2)
    return pd.read_csv(lcs), pd.read_csv(meta)


def run_prepare(tmp_path: Path, lcs: pd.DataFrame, meta: pd.DataFrame, **data) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    lcs.to_csv(raw / "training_set.csv", index=False)
    meta.to_csv(raw / "training_set_metadata.csv", index=False)
    config = config_io.load_preset("tiny")
    fields = {"raw_dir": str(raw), "min_observations": 5, **data}
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, **fields))
    return prepare(config_lib.resolve(config), tmp_path)


def rejections(out: Path) -> dict[int, str]:
    """Check that the counts add up; return object_id -> reason."""
    manifest = read_manifest(out)
    rejected = pd.read_csv(out / "rejected.csv")
    assert sum(manifest["objects"].values()) + len(rejected) == manifest["input_objects"]
    assert manifest["rejected"]["total"] == len(rejected)
    assert sum(manifest["rejected"]["by_reason"].values()) == len(rejected)
    return dict(zip(rejected["object_id"], rejected["reason"], strict=True))


def first_row(lcs: pd.DataFrame, oid: int) -> int:
    return int(lcs.index[lcs["object_id"] == oid][0])


PER_OBJECT = {
    "nan flux": ("flux", np.nan, "flux missing or not finite (NaN or inf)"),
    "inf flux": ("flux", np.inf, "flux missing or not finite (NaN or inf)"),
    "nan flux_err": ("flux_err", np.nan, "flux_err missing or not a positive finite number"),
    "zero flux_err": ("flux_err", 0.0, "flux_err missing or not a positive finite number"),
    "negative flux_err": ("flux_err", -3.0, "flux_err missing or not a positive finite number"),
    "passband 6": ("passband", 6, "passband missing or outside 0-5"),
    "passband -1": ("passband", -1, "passband missing or outside 0-5"),
    "nan mjd": ("mjd", np.nan, "mjd missing or not finite"),
}


@pytest.mark.parametrize("case", sorted(PER_OBJECT))
def test_bad_value_rejects_the_object(case, good, tmp_path):
    lcs, meta = good[0].copy(), good[1]
    column, value, reason = PER_OBJECT[case]
    if column != "passband":
        lcs[column] = lcs[column].astype(float)
    lcs.loc[first_row(lcs, 7) + 3, column] = value
    out = run_prepare(tmp_path, lcs, meta)
    assert rejections(out) == {7: reason}


def test_duplicated_rows(good, tmp_path):
    lcs, meta = good
    row = first_row(lcs, 9) + 2
    # A duplicate that is not adjacent to its twin (same mjd and passband), and an adjacent one.
    twin = lcs.loc[[row]]
    lcs = pd.concat([lcs.loc[: row + 4], twin, lcs.loc[row + 5 :]], ignore_index=True)
    row = first_row(lcs, 12)
    lcs = pd.concat([lcs.loc[:row], lcs.loc[[row]], lcs.loc[row + 1 :]], ignore_index=True)
    out = run_prepare(tmp_path, lcs, meta)
    reason = "duplicated observation (same object, mjd and passband)"
    assert rejections(out) == {9: reason, 12: reason}


def test_same_mjd_other_band_is_not_a_duplicate(good, tmp_path):
    lcs, meta = good[0].copy(), good[1]
    row = first_row(lcs, 9)
    lcs.loc[row + 1, "mjd"] = lcs.loc[row, "mjd"]
    lcs.loc[row + 1, "passband"] = (lcs.loc[row, "passband"] + 1) % 6
    assert rejections(run_prepare(tmp_path, lcs, meta)) == {}


def test_objects_missing_from_either_side(good, tmp_path):
    lcs, meta = good
    extra = lcs[lcs["object_id"] == 5].assign(object_id=999)  # light curve without metadata
    lcs = pd.concat([lcs[lcs["object_id"] != 6], extra], ignore_index=True)  # 6: no light curve
    out = run_prepare(tmp_path, lcs, meta)
    assert rejections(out) == {6: NO_LIGHTCURVE, 999: NO_METADATA}
    assert read_manifest(out)["input_objects"] == N_OBJECTS + 1


def test_too_few_observations(good, tmp_path):
    lcs, meta = good
    lcs = lcs.drop(lcs.index[lcs["object_id"] == 8][4:])  # 4 rows left, minimum 5
    out = run_prepare(tmp_path, lcs, meta, min_observations=5)
    assert rejections(out) == {8: "fewer than 5 observations"}


def test_class_outside_the_protocol(good, tmp_path):
    lcs, meta = good
    meta = meta.copy()
    meta.loc[meta["object_id"] == 3, "target"] = 991
    meta.loc[meta["object_id"] == 4, "target"] = np.nan  # unlabelled: goes to test
    out = run_prepare(tmp_path, lcs, meta)
    assert rejections(out) == {3: "class 991 not in protocol"}
    assert -1 in [int(k) for k in read_manifest(out)["counts"]["test"]]


@pytest.mark.parametrize(
    ("file", "column", "typo"),
    [
        ("training_set.csv", "flux_err", "fluxerr"),
        ("training_set_metadata.csv", "mwebv", "mw_ebv"),
        # A column with another name in the other format is named with it.
        ("training_set_metadata.csv", r"ddf \(or ddf_bool\)", "ddf_flag"),
    ],
)
def test_missing_column(file, column, typo, good, tmp_path):
    lcs, meta = good
    name = column.split(" ")[0]
    if file == "training_set.csv":
        lcs = lcs.rename(columns={name: typo})
    else:
        meta = meta.rename(columns={name: typo})
    with pytest.raises(
        UserError, match=rf"{file}: missing .* column\(s\) {column}; found: .*{typo}"
    ):
        run_prepare(tmp_path, lcs, meta)


def test_non_numeric_value_names_the_line(good, tmp_path):
    lcs, meta = good
    bad_band = lcs.astype({"passband": object})
    bad_band.loc[20, "passband"] = "2.0"  # integers only (as pandas writes them beside a NaN)
    with pytest.raises(UserError, match=r"training_set.csv.*'passband', line 22: '2.0' is written"):
        run_prepare(tmp_path, bad_band, meta)
    bad_band.loc[20, "passband"] = "r"
    with pytest.raises(UserError, match=r"'passband', line 22: 'r' is not a passband number: wr"):
        run_prepare(tmp_path, bad_band, meta)
    flags = lcs.astype({"detected": object})
    for value, said in (
        ("1.0", "is written as a decimal"),
        ("yes", r"is not a flag \(1/0"),
        # pyarrow reads no spaces around a flag, nor a mixed case (found by an audit: the
        # message named neither the column nor the line)
        ("1 ", "has spaces around it"),
        ("tRue", "is in a case that is not read"),
    ):
        flags.loc[20, "detected"] = value
        with pytest.raises(UserError, match=rf"'detected', line 22: '{value}' {said}"):
            run_prepare(tmp_path, flags, meta)
    lcs = lcs.astype({"flux": object})
    lcs.loc[1234, "flux"] = "12.3.4"
    with pytest.raises(UserError, match=r"training_set.csv.*column 'flux', line 1236: '12.3.4'"):
        run_prepare(tmp_path, lcs, meta, chunk_rows=500)
    meta = meta.astype({"hostgal_photoz": object})
    meta.loc[10, "hostgal_photoz"] = "high"
    with pytest.raises(UserError, match=r"training_set_metadata.csv.*'hostgal_photoz', line 12"):
        run_prepare(tmp_path, good[0], meta)
    huge = good[1].astype({"object_id": object})
    huge.loc[3, "object_id"] = "99999999999999999999"  # beyond int64
    with pytest.raises(UserError, match=r"'object_id', line 5: '9+' is too large \(at most"):
        run_prepare(tmp_path, good[0], huge)
    # Found by a review: pyarrow reads neither a field of spaces as missing nor a plus sign in a
    # whole number, where the search for the line did: its raw message, without a line.
    spaces = good[0].astype({"mjd": object, "passband": object})
    spaces.loc[40, "mjd"] = "   "
    with pytest.raises(UserError, match=r"'mjd', line 42: '   ' holds only spaces, which is no"):
        run_prepare(tmp_path, spaces, good[1])
    spaces.loc[40, "mjd"] = good[0].loc[40, "mjd"]
    spaces.loc[50, "passband"] = "+1"
    with pytest.raises(UserError, match=r"'passband', line 52: '\+1' has a plus sign, which is"):
        run_prepare(tmp_path, spaces, good[1])


def test_an_empty_detection_flag_names_the_line(good, tmp_path):
    """Read as "not detected" it changed an object's score unseen (found by an audit)."""
    lcs = good[0].astype({"detected": object})
    lcs.loc[[20, 30], "detected"] = None
    with pytest.raises(UserError, match=r"training_set.csv: line 22 and 1 more has no detection"):
        run_prepare(tmp_path, lcs, good[1])
    from plasticc_jax.streaming import grid_lightcurves  # the in-memory API: the same rule

    config = config_io.load_preset("tiny")
    with pytest.raises(UserError, match=r"'detected', row 20 .*not a detection flag"):
        grid_lightcurves(lcs, good[1], config.data)


def test_metadata_flags_and_labels_written_as_text(good, tmp_path):
    """Found by an audit: an empty `ddf` was read as 0 (the wide survey), which changed the
    object's score unseen; `ddf` written True/False (as pandas writes booleans) was refused
    while `detected` so written was read; a label that is not a number refused the whole file,
    although `score` needs no label; a bad value was named by the internal column name."""
    lcs, meta = good
    meta = meta.astype({"ddf": object, "target": object})
    meta["ddf"] = np.where(good[1]["ddf"] == 1, "True", "false")
    ids = meta["object_id"].tolist()
    meta.loc[3, "ddf"] = None
    meta.loc[5, "target"] = "SNIa"
    out = run_prepare(tmp_path, lcs, meta)
    assert rejections(out) == {ids[3]: readers.DDF_MISSING, ids[5]: readers.TARGET_PROBLEM}
    read = readers.read_metadata(tmp_path / "raw" / "training_set_metadata.csv")
    kept = np.arange(len(meta)) != 3
    assert read["ddf"].to_numpy()[kept].tolist() == good[1]["ddf"].to_numpy()[kept].tolist()
    assert read["target"].tolist()[5] == -1  # scored without a label by `score`
    # The in-memory API given that table rejects the same object (found by a review: it read
    # the empty ddf as 0, as `read_metadata` holds it, and scored the object); the label is
    # not needed to score.
    from plasticc_jax.streaming import grid_lightcurves

    data = config_io.load_preset("tiny").data
    arrays, rejected = grid_lightcurves(lcs, read, data)
    assert dict(zip(rejected["object_id"], rejected["reason"], strict=True)) == {
        ids[3]: readers.DDF_MISSING
    }
    assert ids[5] in arrays.object_id
    # The table says so itself (found by a review: with `problem` left out, as where its
    # columns are joined to the rows, or in nullable dtypes, the object was scored).
    assert np.isnan(read["ddf"][3])
    _, rejected = grid_lightcurves(lcs, read.drop(columns="problem").convert_dtypes(), data)
    assert rejected["object_id"].tolist() == [ids[3]]
    # A ddf filled in after reading is taken; a caller's own `problem` column rejects nothing.
    fixed = read.assign(problem=np.int8(1))
    fixed.loc[3, "ddf"] = 1
    _, rejected = grid_lightcurves(lcs, fixed, data)
    assert rejected.empty
    meta.loc[3, "ddf"] = "yes"
    meta = meta.rename(columns={"ddf": "ddf_bool"})
    with pytest.raises(UserError, match=r"column 'ddf_bool', line 5: 'yes' is not a flag \(1/0"):
        run_prepare(tmp_path, lcs, meta)
    # A bad number elsewhere is the one named, not a flag or label read as text (found by a
    # review: 'true' was named "not a valid string").
    meta.loc[3, "ddf_bool"] = "true"
    meta = meta.astype({"mwebv": object})
    meta.loc[7, "mwebv"] = "abc"
    with pytest.raises(UserError, match=r"column 'mwebv', line 9: 'abc' is not a valid double"):
        run_prepare(tmp_path, lcs, meta)


def test_a_column_named_twice_is_refused(good, tmp_path):
    lcs, meta = good
    twice = pd.concat([lcs, lcs[["flux"]] * 0 + 1e6], axis=1)  # which flux is meant?
    with pytest.raises(UserError, match=r"training_set.csv: the light-curve column 'flux' appears"):
        run_prepare(tmp_path, twice, meta)
    both = lcs.assign(detected_bool=lcs["detected"])  # the two formats' names of one column
    with pytest.raises(UserError, match=r"'detected' appears twice in the header \(detected, det"):
        run_prepare(tmp_path, both, meta)


def test_a_file_separated_by_semicolons_or_tabs_is_named_so(good, tmp_path):
    """Found by an audit: the message listed one column holding every name, `object_id;mjd;...`
    (a spreadsheet in a European locale writes semicolons)."""
    lcs, meta = good
    lcs.to_csv(tmp_path / "lc.csv", index=False, sep=";")
    meta.to_csv(tmp_path / "meta.tsv", index=False, sep="\t")
    with pytest.raises(UserError, match=r"lc.csv: the columns are separated by ';', not commas"):
        readers.read_lightcurves(tmp_path / "lc.csv")
    with pytest.raises(UserError, match=r"meta.tsv: the columns are separated by tabs, not comma"):
        readers.read_metadata(tmp_path / "meta.tsv")


def test_an_input_given_twice_or_an_output_folder_taking_no_files_is_refused(good, tmp_path):
    """Found by an audit: the same light-curve file twice was told to sort itself ("object ...
    reappears"), and an output folder where no file can be made gave a bare OSError naming an
    internal temporary file."""
    from plasticc_jax.io_utils import check_input_files, make_output_folder

    lcs, _ = good
    lcs.to_csv(tmp_path / "lc.csv", index=False)
    (tmp_path / "link.csv").symlink_to(tmp_path / "lc.csv")
    with pytest.raises(UserError, match=r"input file .*lc.csv is given twice: give each file once"):
        check_input_files([tmp_path / "lc.csv", tmp_path / "lc.csv"])
    with pytest.raises(UserError, match=r"link.csv is given twice \(as .*lc.csv and as .*link"):
        check_input_files([tmp_path / "lc.csv", tmp_path / "link.csv"])
    if Path("/proc/self").is_dir():  # Linux: a folder in which no file can be created
        with pytest.raises(UserError, match=r"--output: cannot write files into /proc: "):
            make_output_folder(Path("/proc"))


def test_an_object_in_two_files_names_both(good, tmp_path):
    """Found by an audit: the second file was told to sort itself ("reappears at line 2"), the
    first never named (a `gunzip -k` copy beside its .gz makes the same case)."""
    from plasticc_jax.streaming import stream_grids

    lcs, meta = good
    first = lcs["object_id"].iloc[0]
    mine = lcs["object_id"] == first
    lcs[mine].to_csv(tmp_path / "a.csv", index=False)
    others = lcs[~mine]
    # The same object again in another file, after another object's rows.
    pd.concat([others.iloc[:50], lcs[mine]]).to_csv(tmp_path / "c.csv", index=False)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    data = config_io.load_preset("tiny").data
    files = [tmp_path / "a.csv", tmp_path / "c.csv"]
    with pytest.raises(UserError, match=rf"c.csv: object {first} \(line \d+\) is also in .*a.csv"):
        list(stream_grids(files, [tmp_path / "meta.csv"], data))


def test_swapped_files_are_named_as_such(good, tmp_path):
    lcs, meta = good
    lcs.to_csv(tmp_path / "lc.csv", index=False)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(UserError, match="It looks like a light-curve file: were the two kinds"):
        readers.read_metadata(tmp_path / "lc.csv")
    with pytest.raises(UserError, match="It looks like a metadata file: were the two kinds"):
        readers.read_lightcurves(tmp_path / "meta.csv")


def test_empty_and_truncated_files(good, tmp_path):
    lcs, meta = good
    run_prepare(tmp_path, lcs, meta)
    for name in ("training_set.csv", "training_set_metadata.csv"):
        path = tmp_path / "raw" / name
        saved = path.read_bytes()
        path.write_bytes(b"")
        with pytest.raises(UserError, match=rf"{name}: the file is empty"):
            if name == "training_set.csv":
                readers.read_lightcurves(path)
            else:
                readers.read_metadata(path)
        path.write_bytes(saved)
    # A plain file cut in the middle of a line: the line is named.
    path = tmp_path / "raw" / "training_set.csv"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:41]) + b"\n" + lines[41].rsplit(b",", 2)[0] + b"\n")
    with pytest.raises(UserError, match=r"training_set.csv: line 42: a row with another number"):
        readers.read_lightcurves(path)
    unblinded = tmp_path / "unblinded"
    meta_gz, lcs_gz = write_synthetic(unblinded, 30, fmt="unblinded")
    for path in (lcs_gz, meta_gz):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) * 2 // 3])
        with pytest.raises(UserError, match=rf"{path.name}: the file is truncated or corrupt"):
            if path == lcs_gz:
                readers.read_lightcurves(path)
            else:
                readers.read_metadata(path)
        path.write_bytes(whole)
    # Damaged deflate data right after the gzip header is a zlib.error, not an OSError (found by
    # a review: a traceback from the header's and the replay's first reads).
    from plasticc_jax.lightcurve_rows import has_rows

    whole = lcs_gz.read_bytes()
    data = whole.index(b"\0", 10) + 1  # after the header and its file name
    lcs_gz.write_bytes(
        whole[:data] + bytes(b ^ 0xFF for b in whole[data : data + 28]) + whole[data + 28 :]
    )
    for read in (readers.read_lightcurves, has_rows):
        with pytest.raises(UserError, match=rf"{lcs_gz.name}: the file is truncated or corrupt"):
            read(lcs_gz)


def test_a_file_without_rows_is_refused_with_dask_too(good, tmp_path, monkeypatch):
    """Found by an audit: each Dask part reads only its own bytes, so a header-only file was
    scored as "no object" (exit 0) under Dask and refused without."""
    from plasticc_jax import distributed

    header_only = tmp_path / "header.csv"
    good[0].head(0).to_csv(header_only, index=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"header.csv: no light-curve rows \(a header only"):
        distributed.plan_parts([Path("header.csv")], 1.0)
    good[0].to_csv(tmp_path / "lcs.csv", index=False)
    parts = distributed.plan_parts([Path("lcs.csv")], 0.001)
    assert len(parts) > 1 and {part.path for part in parts} == {tmp_path / "lcs.csv"}


def test_a_folder_of_another_tools_parts_is_not_replaced(tmp_path):
    """Found by an audit: pyarrow names its parts `part-0.parquet`, as ours are named."""
    from plasticc_jax.score_output import MANIFEST, check_dataset_folder

    folder = tmp_path / "user.parquet"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match=r"user.parquet is a folder holding other files \(part-0"):
        check_dataset_folder(folder)
    (folder / MANIFEST).write_text("{}")
    check_dataset_folder(folder)  # ours: replaced when the new one is complete


def test_files_that_are_not_csv_are_named_so(good, tmp_path):
    """Found by an audit: a Parquet or bzip2 file was "not valid UTF-8", a pipe "does not
    exist"."""
    import bz2
    import os

    from plasticc_jax.io_utils import check_input_files

    lcs, meta = good
    parquet = tmp_path / "lightcurves.parquet"
    lcs.to_parquet(parquet)
    with pytest.raises(UserError, match=r"lightcurves.parquet: a Parquet file, not a CSV file"):
        readers.read_lightcurves(parquet)
    packed = tmp_path / "metadata.csv.bz2"
    packed.write_bytes(bz2.compress(meta.to_csv(index=False).encode()))
    with pytest.raises(UserError, match=r"metadata.csv.bz2: bzip2-compressed, not a CSV file"):
        readers.read_metadata(packed)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(UserError, match=r"input .*pipe is not a regular file \(a pipe"):
        check_input_files([pipe])


@pytest.mark.slow
def test_cli_exits_2_with_one_line(good, tmp_path):
    lcs, meta = good
    raw = tmp_path / "raw"
    raw.mkdir()
    meta.to_csv(raw / "training_set_metadata.csv", index=False)
    data = lcs.to_csv(index=False).encode()
    (raw / "training_set.csv.gz").write_bytes(gzip.compress(data)[:-100])  # truncated gzip
    result = subprocess.run(
        [
            *(sys.executable, "-m", "plasticc_jax", "prepare", "--config", "tiny"),
            *("--workdir", str(tmp_path), "--set", f"data.raw_dir={raw}"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "training_set.csv.gz" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data/processed/rare/manifest.json").exists()


def test_blank_lines_stray_quotes_and_files_of_one_name(good, tmp_path):
    """Found by an audit: a blank first line was called an empty file; blank lines (which the
    reader skips) shifted the line numbers of later errors; a stray quote gave the CSV parser's
    own words and no line; two inputs of one name in other folders were one `source`."""
    from plasticc_jax import lightcurve_rows
    from plasticc_jax.streaming import source_names, stream_grids

    lcs, meta = good
    path = tmp_path / "lc.csv"
    text = lcs.to_csv(index=False).split("\n")
    path.write_text("\n" + "\n".join(text))
    with pytest.raises(UserError, match=r"lc.csv: line 1 is blank: the header must be the first"):
        readers.read_lightcurves(path)
    path.write_bytes(b"\xef\xbb\xbf\n")  # a byte-order mark and nothing else
    with pytest.raises(UserError, match=r"lc.csv: the file is empty"):
        readers.read_lightcurves(path)
    blanks = gzip.compress(b"\n" * 100_000)
    path.write_bytes(blanks[: len(blanks) // 2])  # blank lines, cut short
    with pytest.raises(UserError, match=r"lc.csv: the file is truncated or corrupt"):
        readers.read_lightcurves(path)
    blank = [*text[:30], "", "\r", *text[30:]]  # two blank lines before the file's line 31
    bad = blank.copy()
    bad[40] = bad[40].replace(",", ",x", 1)  # mjd 'x...' on the file's line 41
    path.write_text("\n".join(bad))
    with pytest.raises(UserError, match=r"column 'mjd', line 41: 'x"):
        readers.read_lightcurves(path)
    bad = blank.copy()
    oid = text[1].split(",", 1)[0]  # the first object reappears at the file's line 1000
    assert int(oid) != lcs["object_id"][997]
    bad[999] = ",".join([oid, *bad[999].split(",")[1:]])
    path.write_text("\n".join(bad))
    meta.to_csv(tmp_path / "meta.csv", index=False)
    data = config_io.load_preset("tiny").data
    with pytest.raises(UserError, match=rf"object {oid} are not contiguous \(lines 2 and 1000\)"):
        list(stream_grids([path], [tmp_path / "meta.csv"], data))
    spaces = [*text[:40], "   ", *text[40:]]  # a line of spaces is a row, not a blank line
    path.write_text("\n".join(spaces))
    with pytest.raises(UserError, match=r"lc.csv: line 41 holds only spaces; remove it"):
        readers.read_lightcurves(path)
    quoted = [*text[:50], '"' + text[50], *text[51:]]
    path.write_text("\n".join(quoted))
    with pytest.raises(UserError, match=r"lc.csv: line 51 opens a quoted field"):
        readers.read_lightcurves(path)
    # A file part's first row counts rows as the reader does: blank lines are none.
    path.write_text("\n".join(blank[:60]) + "\n")
    start = len("\n".join(blank[:50]).encode()) + 1
    assert lightcurve_rows.count_rows(lightcurve_rows.FilePart(path, start, None)) == 47
    # ... and reads it to the file's end (found by a type check: a TypeError).
    part = lightcurve_rows.FilePart(path, start, None, first_row=47)
    assert sum(len(rows.mjd) for rows in lightcurve_rows.read_rows(part, 100)) == 10
    path.write_bytes(b"h,a\n1,2\r\r\n\r\r\n3,4\r\n\r\n5,6\n")  # Windows' Python writes \r\r\n
    assert lightcurve_rows.count_rows(lightcurve_rows.FilePart(path, 20, None)) == 2
    a, b = tmp_path / "a" / "lc.csv", tmp_path / "b" / "lc.csv"
    assert source_names([a, b]) == [str(a), str(b)]
    assert source_names([a, tmp_path / "meta.csv"]) == ["lc.csv", "meta.csv"]


def test_column_names_in_capitals_are_read(good, tmp_path):
    """Found by an audit: `OBJECT_ID,MJD,...` headers were refused as missing columns."""
    lcs, meta = good
    lcs.rename(columns=str.upper).to_csv(tmp_path / "lc.csv", index=False)
    meta.rename(columns=str.upper).to_csv(tmp_path / "meta.csv", index=False)
    upper_lcs, upper_meta = (
        readers.read_lightcurves(tmp_path / "lc.csv"),
        readers.read_metadata(tmp_path / "meta.csv"),
    )
    lcs.to_csv(tmp_path / "lc.csv", index=False)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    pd.testing.assert_frame_equal(upper_lcs, readers.read_lightcurves(tmp_path / "lc.csv"))
    pd.testing.assert_frame_equal(upper_meta, readers.read_metadata(tmp_path / "meta.csv"))
    assert (upper_meta["target"] >= 0).all()  # `TARGET`: the label


def test_score_dask_names_files_of_one_name_as_score_does(tmp_path):
    """Found by an audit: under `--dask` each worker sees one file, so rejections of two inputs
    of the same name in other folders were both `lc.csv`; now the paths, as without Dask."""
    import pandas as pd

    from plasticc_jax import distributed
    from plasticc_jax.lightcurve_rows import FilePart

    a, b, c = tmp_path / "a" / "lc.csv", tmp_path / "b" / "lc.csv", tmp_path / "other.csv"
    parts = [FilePart(p.absolute(), 0, None) for p in (a, a, b, c)]
    frames = [
        pd.DataFrame({"object_id": [i], "reason": ["x"], "source": [p.path.name]})
        for i, p in enumerate(parts)
    ]
    frames[1] = frames[1].iloc[:0]  # a part without rejections stays empty
    named = distributed.named_sources(parts, frames, [a, b, c])
    assert [list(f["source"]) for f in named] == [[str(a)], [], [str(b)], [str(c)]]
    named = distributed.named_sources(parts[3:], frames[3:], [c])
    assert list(named[0]["source"]) == ["other.csv"]


def test_score_dask_keeps_the_models_rejections_named_model(tmp_path):
    """A part's rejections hold the model's too (`Scorer.table`: non-finite outputs, NaN
    scores, source `model`, as without Dask); only the file's own rows take its path."""
    import pandas as pd

    from plasticc_jax import distributed
    from plasticc_jax.lightcurve_rows import FilePart
    from plasticc_jax.scoring import MODEL_SOURCE

    a, b = tmp_path / "a" / "lc.csv", tmp_path / "b" / "lc.csv"
    parts = [FilePart(p.absolute(), 0, None) for p in (a, b)]
    frames = [
        pd.DataFrame(
            {"object_id": [1, 2], "reason": ["x", "y"], "source": ["lc.csv", MODEL_SOURCE]}
        ),
        pd.DataFrame({"object_id": [3], "reason": ["y"], "source": [MODEL_SOURCE]}),
    ]
    named = distributed.named_sources(parts, frames, [a, b])
    assert [list(f["source"]) for f in named] == [[str(a), MODEL_SOURCE], [MODEL_SOURCE]]


def test_labels_of_many_unknown_classes_are_noted_in_one_short_line(caplog):
    """Found by an audit: 3,981 distinct garbage labels made one warning of 30 KB."""
    from plasticc_jax.score_output import note_unknown_classes

    data = config_lib.DataConfig(known_classes=(90, 42), anomaly_classes=(64,))
    target = np.r_[np.arange(1000, 1030), 1000, 1000, 90, 64, -1]
    note_unknown_classes(pd.DataFrame({"target": target}), data)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("32 objects of the metadata are labelled with classes the run")
    assert line.endswith(": 1000: 3, 1001: 1, 1002: 1, 1003: 1, 1004: 1, 1005: 1, 1006: 1, "
                         "1007: 1, 1008: 1, 1009: 1 and 20 more")  # fmt: skip


def test_far_more_flagged_than_the_threshold_lets_through_is_said(caplog):
    """Found by a review: every `detected` flag 0 flagged 300 of 300 objects without a word."""
    from plasticc_jax.score_output import warn_if_flagged_far_above

    warn_if_flagged_far_above(6, 300, 0.01)  # as expected of known objects
    warn_if_flagged_far_above(20, 99, 0.01)  # too few objects to say
    assert not caplog.records
    warn_if_flagged_far_above(57, 300, 0.01)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("57 of 300 scored objects (19%) are flagged, where the threshold")
    assert "`detected` flags all 0 or all 1" in line


def test_a_score_of_nothing_is_an_error_with_its_reasons(tiny_run, tmp_path, capsys):
    """Found by two reviews: metadata matching none of the light curves replaced a good table
    with an empty one, exit 0 (a `score && publish` pipeline went on), a warning the only sign."""
    from plasticc_jax import cli

    raw = tiny_run.workdir / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz")
    other = tmp_path / "other_meta.csv"
    meta.assign(object_id=meta["object_id"] + 10**9).to_csv(other, index=False)
    output = tmp_path / "s.parquet"
    argv = ["score", "--run", str(tiny_run.run_dir), "--output", str(output)]
    argv += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    assert cli.main([*argv, "--metadata", str(other)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    n = 2 * len(meta)
    assert line.startswith(f"plasticc-jax score: error: no object was scored: all {n} were ")
    assert f"{len(meta)} light curve without metadata" in line
    assert f"{len(meta)} metadata without light curve" in line
    # Every object accounted for: the empty table and the rejections are written.
    assert len(pd.read_parquet(output)) == 0
    assert len(pd.read_csv(tmp_path / "s.rejected.csv")) == n


def test_rejections_are_counted_by_reason() -> None:
    from plasticc_jax.score_output import by_reason

    reasons = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e"]
    rejected = pd.DataFrame({"reason": reasons})
    assert by_reason(rejected) == "5 a, 4 b, 3 c, 3 for 2 other reasons"
    assert by_reason(rejected.head(9)) == "5 a, 4 b"


def test_metadata_without_labels_is_said_so_and_keeps_the_dataset(good, tmp_path):
    """Found by a review: "no object of the known classes reached the train split", and the
    dataset prepared before was cleared first."""
    lcs, meta = good
    out = run_prepare(tmp_path, lcs, meta)
    with pytest.raises(UserError, match=r"no label column \(target or true_target\)"):
        run_prepare(tmp_path, lcs, meta.drop(columns="target"))
    assert (out / "manifest.json").is_file()


def test_a_prepare_that_fails_leaves_the_dataset_before_it(good, tmp_path):
    """Found by a review: a file found damaged while the light curves were gridded failed the
    prepare after the dataset before it was cleared, and its runs could not be evaluated."""
    lcs, meta = good
    out = run_prepare(tmp_path, lcs, meta)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # A row of the first object again at the end: found only as the stream reaches it.
    damaged = pd.concat([lcs, lcs.iloc[[0]].assign(mjd=lcs["mjd"].max() + 1)])
    with pytest.raises(UserError, match="reappears"):
        run_prepare(tmp_path, damaged, meta, min_observations=4)  # other settings: a rebuild
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    # The next prepare builds afresh (the failed build beside it cleared first).
    assert run_prepare(tmp_path, lcs, meta, min_observations=4) == out
    assert not (out.parent / f".{out.name}.building").exists()
    assert read_manifest(out)["config"]["data"]["min_observations"] == 4


def test_an_impossible_metadata_value_is_named_by_its_metadata_file(good, tmp_path):
    """Found by a review: such rejections named the light-curve file, not the one to fix."""
    from plasticc_jax.streaming import concat_rejections, stream_grids

    lcs, meta = good
    ids = meta["object_id"].to_numpy()
    meta = meta.assign(hostgal_photoz=meta["hostgal_photoz"].where(meta["object_id"] != ids[3], 15))
    lcs.to_csv(tmp_path / "lc.csv", index=False)
    meta.iloc[:10].to_csv(tmp_path / "first.csv", index=False)
    meta.iloc[10:].to_csv(tmp_path / "rest.csv", index=False)
    data = config_io.load_preset("tiny").data
    paths = [tmp_path / "first.csv", tmp_path / "rest.csv"]
    rejected = concat_rejections([r for _, r in stream_grids([tmp_path / "lc.csv"], paths, data)])
    row = rejected.set_index("object_id").loc[ids[3]]
    assert row["reason"].startswith("metadata hostgal_photoz") and row["source"] == "first.csv"
