"""The bad-input corpus: copies of real PLAsTiCC rows (the shared training set, where present) and
synthetic rows, poisoned one object per case, through `prepare` and `score`.

Every poisoned object must be rejected with its reason, every clean one prepared or scored, and
the counts must add up (objects out + objects rejected = objects in), with no NaN score. Also
here: the CSV dialects (quoted header, byte-order mark, CRLF, invalid UTF-8), short error lists,
a header-only metadata file, a raw folder of unrecognised files, anomaly classes absent from the
data.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA, tiny_config

from plasticc_jax import cli, csv_files, readers, scoring
from plasticc_jax.dataset import SPLITS, load_split, read_manifest
from plasticc_jax.detector import Detector
from plasticc_jax.errors import UserError
from plasticc_jax.prepare import prepare
from plasticc_jax.streaming import NO_LIGHTCURVE, NO_METADATA
from plasticc_jax.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # `make test-slow`: see the Makefile

FLUX_RANGE = "|flux| beyond the float32 range (3.4e+38)"
ERR_RANGE = "flux_err below 0.001 or beyond the float32 range"
ERR_SIGN = "flux_err missing or not a positive finite number"
MJD_SPAN = (
    "mjd outside the survey span by more than 365 days (59215-61040; a Julian date is MJD + "
    "2400000.5)"
)
DUPLICATED = "duplicated observation (same object, mjd and passband)"

# One case per poisoned object: (table, column, value) -> the reason it is rejected (None: a
# value that looks odd but is valid, so the object is prepared and scored).
CASES: dict[str, tuple[str, str, object, str | None]] = {
    "flux 1e300": ("lc", "flux", 1e300, FLUX_RANGE),
    "flux -1e300": ("lc", "flux", -1e300, FLUX_RANGE),
    "flux inf": ("lc", "flux", np.inf, "flux missing or not finite (NaN or inf)"),
    "flux NaN": ("lc", "flux", np.nan, "flux missing or not finite (NaN or inf)"),
    "flux_err 1e-300": ("lc", "flux_err", 1e-300, ERR_RANGE),
    "flux_err 1e300": ("lc", "flux_err", 1e300, ERR_RANGE),
    "flux_err 0": ("lc", "flux_err", 0.0, ERR_SIGN),
    "flux_err -1": ("lc", "flux_err", -1.0, ERR_SIGN),
    "mjd 0": ("lc", "mjd", 0.0, MJD_SPAN),
    "mjd given as JD": ("lc", "mjd", 2_459_900.5, MJD_SPAN),
    "mjd 1e300": ("lc", "mjd", 1e300, MJD_SPAN),
    "mjd inf": ("lc", "mjd", np.inf, "mjd missing or not finite"),
    "passband 7": ("lc", "passband", 7, "passband missing or outside 0-5"),
    "hostgal_photoz inf": ("meta", "hostgal_photoz", np.inf, None),
    "hostgal_photoz 1e300": ("meta", "hostgal_photoz", 1e300, None),
    "hostgal_photoz -5": ("meta", "hostgal_photoz", -5.0, None),
    "hostgal_photoz_err -1": ("meta", "hostgal_photoz_err", -1.0, None),
    "distmod inf": ("meta", "distmod", np.inf, None),
    # Found by an input audit: a galactic object's distmod and photo-z error are never read, and
    # an impossible one rejected it.
    "distmod -1, galactic (valid)": ("meta", "distmod", -1.0, None),
    "hostgal_photoz_err -1, galactic (valid)": ("meta", "hostgal_photoz_err", -1.0, None),
    "mwebv 1e39": ("meta", "mwebv", 1e39, None),
    "ddf 7": ("meta", "ddf", 7, None),
    # Found by an audit: columns the model never reads rejected scorable objects; their
    # impossible values are read as missing now (-180 to 180 is a common way to write ra, and
    # -1 or -99 mark a missing value in some catalogues).
    "decl 100 (valid)": ("meta", "decl", 100.0, None),
    "ra -200 (valid)": ("meta", "ra", -200.0, None),
    "ra -30 (valid)": ("meta", "ra", -30.0, None),
    "hostgal_specz -1 (valid)": ("meta", "hostgal_specz", -1.0, None),
    "target 1e300": ("meta", "target", 1e300, "metadata target not a class number"),
    "hostgal_photoz missing": ("meta", "hostgal_photoz", np.nan, readers.PHOTOZ_MISSING),
    "distmod missing (valid)": ("meta", "distmod", np.nan, None),
    "duplicated row": ("structure", "", None, DUPLICATED),
    "3 observations": ("structure", "", None, "fewer than 5 observations"),
    "no light curve": ("structure", "", None, NO_LIGHTCURVE),
    "no metadata": ("structure", "", None, NO_METADATA),
}


def metadata_reason(case: str) -> str | None:
    """The reason of a metadata case: the column's physically possible range."""
    table, column, _, reason = CASES[case]
    if reason is not None or table != "meta" or case.endswith("(valid)"):
        return reason
    return next(r for r in readers.METADATA_PROBLEMS if r.startswith(f"metadata {column} "))


@dataclasses.dataclass
class Corpus:
    """Poisoned files in `raw`, which object got which case, and every input object."""

    raw: Path
    lightcurves: Path
    metadata: Path
    cases: dict[int, str]  # object_id -> case
    input_ids: set[int]
    clean: list[int]  # objects no case touched

    def expected(self) -> dict[int, str]:
        """object_id -> reason, for the objects that must be rejected."""
        out = {oid: metadata_reason(case) for oid, case in self.cases.items()}
        return {oid: reason for oid, reason in out.items() if reason is not None}


def poison(lcs: pd.DataFrame, meta: pd.DataFrame, names: dict[str, str]) -> tuple:
    """Apply every case to its own object. `names` maps canonical column names to the file's."""
    ids = sorted(set(meta["object_id"]) & set(lcs["object_id"]))
    cases = dict(zip(ids[1 : 1 + len(CASES)], CASES, strict=False))
    assert len(cases) == len(CASES), "not enough objects for the corpus"
    lcs, meta = lcs.copy(), meta.copy()
    for oid, case in cases.items():
        table, column, value, _ = CASES[case]
        column = names.get(column, column)
        rows = np.flatnonzero(lcs["object_id"].to_numpy() == oid)
        if table == "lc":
            lcs[column] = lcs[column].astype(float if column != "passband" else int)
            lcs.loc[lcs.index[rows[3]], column] = value
        elif table == "meta":
            meta[column] = meta[column].astype(float)
            meta.loc[meta["object_id"] == oid, column] = value
            if column in readers.GALACTIC_IGNORED:  # read for extragalactic objects only
                photoz = 0.0 if case.endswith("galactic (valid)") else 0.3
                meta.loc[meta["object_id"] == oid, "hostgal_photoz"] = photoz
        elif case == "duplicated row":
            twin = lcs.iloc[[rows[2]]]
            lcs = pd.concat([lcs, twin]).sort_index(kind="stable").reset_index(drop=True)
        elif case == "3 observations":
            lcs = lcs.drop(lcs.index[rows[3:]])
        elif case == "no light curve":
            lcs = lcs[lcs["object_id"] != oid]
        elif case == "no metadata":
            meta = meta[meta["object_id"] != oid]
    input_ids = set(meta["object_id"]) | set(lcs["object_id"])
    clean = [oid for oid in ids if oid not in cases]
    return lcs.reset_index(drop=True), meta, cases, input_ids, clean


@pytest.fixture(scope="module", params=["real", "synthetic"])
def corpus(request, tmp_path_factory) -> Corpus:
    raw = tmp_path_factory.mktemp(f"corpus-{request.param}") / "raw"
    raw.mkdir()
    if request.param == "real":
        lc_file, meta_file = (
            REAL_DATA / "plasticc_train_lightcurves.csv.gz",
            REAL_DATA / "plasticc_train_metadata.csv.gz",
        )
        if not lc_file.is_file():
            pytest.skip("the shared copy of the PLAsTiCC training set is not present")
        # The first ~100 objects of the real files, every column kept (truth columns too).
        lcs = pd.read_csv(lc_file, nrows=30_000)
        lcs = lcs[lcs["object_id"] != lcs["object_id"].iloc[-1]]  # whole objects only
        meta = pd.read_csv(meta_file, skipinitialspace=True)
        meta = meta[meta["object_id"].isin(lcs["object_id"])]
        names = {"ddf": "ddf_bool", "detected": "detected_bool"}
        lc_path, meta_path = raw / lc_file.name, raw / meta_file.name
    else:
        meta_path, lc_path = write_synthetic(raw, 60, fmt="kaggle", seed=5)
        lcs, meta = pd.read_csv(lc_path), pd.read_csv(meta_path)
        names = {}
    lcs, meta, cases, input_ids, clean = poison(lcs, meta, names)
    lcs.to_csv(lc_path, index=False)
    meta.to_csv(meta_path, index=False)
    return Corpus(raw, lc_path, meta_path, cases, input_ids, clean)


def test_prepare_rejects_each_case_and_counts_add_up(corpus, tmp_path):
    config = tiny_config(f"data.raw_dir={corpus.raw}")
    out = prepare(config, tmp_path)
    manifest = read_manifest(out)
    rejected = pd.read_csv(out / "rejected.csv")
    found = dict(zip(rejected["object_id"], rejected["reason"], strict=True))
    assert found == corpus.expected()
    assert manifest["input_objects"] == len(corpus.input_ids)
    assert sum(manifest["objects"].values()) + len(rejected) == len(corpus.input_ids)
    prepared = np.concatenate([load_split(out, s).object_id for s in SPLITS])
    assert set(prepared) | set(found) == corpus.input_ids
    features = np.concatenate([load_split(out, s).features for s in SPLITS])
    assert not np.isinf(features).any()  # nothing absurd reached the tensors (NaN: undefined)
    valid = next(oid for oid, case in corpus.cases.items() if case.endswith("(valid)"))
    assert valid in prepared


def test_score_accounts_for_every_object_with_no_nan(corpus, tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    # Scratch folders: one a killed score left behind (removed), one in use (kept).
    stale = out / ".tmp-score-killed"
    stale.mkdir()
    (stale / ".owner").write_text("{}")
    (stale / "unranked.parquet").write_bytes(b"half a table")
    live = out / ".tmp-score-running"
    live.mkdir()
    holder = open(live / ".owner", "w")  # noqa: SIM115
    fcntl.flock(holder, fcntl.LOCK_EX)

    # Two clean objects that the model (a NaN latent) and the detector (a NaN score) cannot
    # score: they must be rejected too, never written with a NaN.
    nan_latent, nan_score = corpus.clean[:2]
    model_outputs, detector_score = scoring.model_outputs, Detector.score
    marker = 12345.25  # a chi2 that marks the object whose score is made NaN

    def outputs_with_nan(vae, arrays, *args, **kwargs):
        outputs = model_outputs(vae, arrays, *args, **kwargs)
        outputs["mu"] = np.where((arrays.object_id == nan_latent)[:, None], np.nan, outputs["mu"])
        outputs["chi2"] = np.where(arrays.object_id == nan_score, marker, outputs["chi2"])
        return outputs

    def score_with_nan(self, evidence, **kwargs):
        scores = detector_score(self, evidence, **kwargs)
        hit = evidence.chi2 == marker
        return {
            k: np.where(hit, np.nan, v) if k == "anomaly_score" else v for k, v in scores.items()
        }

    monkeypatch.setattr(scoring, "model_outputs", outputs_with_nan)
    monkeypatch.setattr(Detector, "score", score_with_nan)
    output = out / "scores.parquet"
    argv = ["score", "--run", str(tiny_run.run_dir), "--lightcurves", str(corpus.lightcurves)]
    assert cli.main([*argv, "--metadata", str(corpus.metadata), "--output", str(output)]) == 0

    scored = pd.read_parquet(output)
    rejected = pd.read_csv(out / "scores.rejected.csv")
    found = dict(zip(rejected["object_id"], rejected["reason"], strict=True))
    expected = corpus.expected()
    # Scoring needs no label: an impossible one is dropped (target -1), the object scored.
    unlabelled = [oid for oid, why in expected.items() if why == readers.TARGET_PROBLEM]
    for oid in unlabelled:
        del expected[oid]
    assert unlabelled and set(scored.loc[scored["object_id"].isin(unlabelled), "target"]) == {-1}
    expected[nan_latent] = scoring.NON_FINITE_OUTPUT
    expected[nan_score] = scoring.NAN_SCORE
    assert found == expected
    assert len(scored) + len(rejected) == len(corpus.input_ids)
    assert set(scored["object_id"]) | set(found) == corpus.input_ids
    assert scored["anomaly_score"].notna().all() and np.isfinite(scored["anomaly_score"]).all()
    assert sorted(scored["rank"]) == list(range(1, len(scored) + 1))
    assert not stale.exists() and live.exists()
    holder.close()
    assert sorted(p.name for p in out.iterdir()) == [
        ".scores.parquet.lock",
        ".tmp-score-running",
        "scores.parquet",
        "scores.rejected.csv",
    ]


# ---------------------------------------------------------------------------------------------
# CSV dialects and messages.


@pytest.fixture(scope="module")
def kaggle_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_synthetic(tmp_path_factory.mktemp("kaggle"), 40, fmt="kaggle", seed=2)


def rewrite(source: Path, dest: Path, *, bom: bool = False, quote: bool = False) -> Path:
    """The same table with a UTF-8 byte-order mark, every field quoted, and CRLF line ends (as R,
    Excel or pyarrow may write it)."""
    frame = pd.read_csv(source)
    text = frame.to_csv(
        index=False, lineterminator="\r\n", quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return dest


def test_quoted_header_bom_and_crlf_read_like_plain_csv(kaggle_files, tmp_path):
    meta, lcs = kaggle_files
    raw = tmp_path / "raw"
    meta2 = rewrite(meta, raw / meta.name, bom=True, quote=True)
    lcs2 = rewrite(lcs, raw / lcs.name, bom=True, quote=True)
    assert csv_files.header(meta2)[0] == "object_id"
    pd.testing.assert_frame_equal(readers.read_metadata(meta2), readers.read_metadata(meta))
    pd.testing.assert_frame_equal(readers.read_lightcurves(lcs2), readers.read_lightcurves(lcs))
    out = prepare(tiny_config(f"data.raw_dir={raw}"), tmp_path)
    assert read_manifest(out)["rejected"]["total"] == 0


def test_invalid_utf8_names_the_line(kaggle_files, tmp_path):
    meta, lcs = kaggle_files
    lines = meta.read_bytes().split(b"\n")
    lines[10] = lines[10].replace(b",", b"\xff,", 1)  # in object_id's field
    bad = tmp_path / "meta.csv"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=r"meta.csv: .*line 11: b'.*\\xff' is not valid UTF-8"):
        readers.read_metadata(bad)
    lines = lcs.read_bytes().split(b"\n")
    lines[1234] = lines[1234][:-1] + b"\xfe"  # the last field (detected)
    bad = tmp_path / "lcs.csv"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=r"column 'detected', line 1235: .* not valid UTF-8"):
        readers.read_lightcurves(bad)
    bad.write_bytes(b"object_\xe9id,mjd\n1,2\n")  # Latin-1 in the header
    with pytest.raises(UserError, match=r"line 1 \(the header\) is not valid UTF-8"):
        csv_files.header(bad)


def test_carriage_return_line_ends_and_utf16_are_named(kaggle_files, tmp_path):
    # Found by an audit: lines ended by CR alone (an old Mac or Excel "CSV (Macintosh)" file)
    # were csv's "new-line character seen in unquoted field" traceback in score, prepare and
    # replay; UTF-16 without a byte-order mark listed the header's NUL bytes as found columns.
    meta, lcs = kaggle_files
    text = lcs.read_bytes()
    bad = tmp_path / "lcs.csv"
    bad.write_bytes(text.replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    with pytest.raises(UserError, match=r"lcs.csv: its lines end in a carriage return alone"):
        readers.read_lightcurves(bad)
    bad.write_bytes(meta.read_text().encode("utf-16-le"))
    with pytest.raises(UserError, match=r"holds NUL bytes: the file looks like UTF-16"):
        readers.read_metadata(bad)


def test_the_test_sets_truth_training_the_model_is_said(tmp_path, caplog):
    # Found by an audit: with `data.inputs=all` the unblinded test metadata's `true_target` (its
    # only label) split test-set objects of known classes into train and val, in silence.
    raw = tmp_path / "raw"
    write_synthetic(raw, 60, fmt="unblinded", seed=3)
    meta, lcs = write_synthetic(tmp_path / "test", 40, seed=4, first_object_id=10_000)
    truth = pd.read_csv(meta, skipinitialspace=True).drop(columns="target")
    truth.to_csv(raw / "plasticc_test_metadata.csv.gz", index=False)
    lcs.rename(raw / "plasticc_test_lightcurves_01.csv.gz")
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        prepare(tiny_config(f"data.raw_dir={raw}", "data.inputs=all"), tmp_path / "all")
    assert "plasticc_test_metadata.csv.gz: " in caplog.text
    assert "labelled by true_target (the test set's unblinded truth" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        prepare(tiny_config(f"data.raw_dir={raw}"), tmp_path / "train")  # the training files
    assert "true_target" not in caplog.text


def test_error_lists_are_short(kaggle_files, tmp_path):
    meta = pd.read_csv(kaggle_files[0])
    repeated = pd.concat([meta] + [meta.iloc[[5, 6, 7]]] * 30)  # 3 objects, 31 rows each
    path = tmp_path / "meta.csv"
    repeated.to_csv(path, index=False)
    with pytest.raises(UserError) as error:
        readers.read_metadata(path)
    message = str(error.value)
    assert "object 6 appears more than once (lines 7, 42, 45, 48, 51 and 26 more)" in message
    assert "2 other objects too" in message and len(message) < 300
    wide = meta.drop(columns="mwebv").assign(**{f"extra_{i}": 0 for i in range(30)})
    wide.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"missing metadata column\(s\) mwebv; found: .* 29 more"):
        readers.read_metadata(path)


def test_header_only_metadata_is_one_line(kaggle_files, tmp_path, capsys):
    meta, lcs = kaggle_files
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / lcs.name).write_bytes(lcs.read_bytes())
    (raw / meta.name).write_bytes(meta.read_bytes().split(b"\n")[0] + b"\n")
    argv = ["prepare", "--config", "tiny", "--workdir", str(tmp_path)]
    assert cli.main([*argv, "--set", f"data.raw_dir={raw}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "header but no rows" in err[0] and meta.name in err[0]


def test_unrecognised_raw_folder_is_reported_not_filled(tmp_path, monkeypatch, capsys):
    from plasticc_jax import download

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded into a folder of the user's files")

    monkeypatch.setattr(download, "ensure_raw_data", no_download)
    monkeypatch.setattr(download, "download", no_download)
    mine = tmp_path / "mine"
    write_synthetic(mine, 5, fmt="kaggle")
    (mine / "training_set.csv").rename(mine / "my_lightcurves.csv")
    (mine / "training_set_metadata.csv").rename(mine / "my_metadata.csv")
    for raw in (mine, tmp_path / "data" / "raw"):  # another folder, and the default one
        if raw != mine:
            raw.parent.mkdir()
            mine.rename(raw)
        argv = ["prepare", "--config", "tiny", "--workdir", str(tmp_path)]
        assert cli.main([*argv, "--set", f"data.raw_dir={raw}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "found: my_lightcurves.csv, my_metadata.csv" in err[0]
        assert "training_set.csv + training_set_metadata.csv (Kaggle)" in err[0]
        assert "plasticc-jax download" in err[0]
    # The default folder, empty: that is where the default data is fetched.
    calls = []
    monkeypatch.setattr(download, "ensure_raw_data", lambda config, workdir: calls.append(1))
    empty = tmp_path / "empty"
    assert cli.main(["prepare", "--config", "tiny", "--workdir", str(empty)]) == 2
    assert calls == [1] and "it is empty or missing" in capsys.readouterr().err


def test_anomaly_classes_absent_from_the_labels(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic(raw, 30, fmt="kaggle", classes=(90, 42, 62))
    with pytest.raises(UserError, match=r"none of the anomaly classes \[6, 53, 64, 95\] is in"):
        prepare(tiny_config(f"data.raw_dir={raw}"), tmp_path)


def test_rejected_csv_named_in_a_message_is_this_runs(kaggle_files, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in kaggle_files:
        (raw / path.name).write_bytes(path.read_bytes())
    out = prepare(tiny_config(f"data.raw_dir={raw}"), tmp_path)
    config = tiny_config(f"data.raw_dir={raw}", "data.min_observations=100000")
    with pytest.raises(UserError, match=r"rejected\.csv") as error:
        prepare(config, tmp_path)
    assert "40 objects not in the dataset, left out by the protocol or rejected" in str(error.value)
    # Written by this run, before the error, in the folder it was building (and named so); the
    # dataset before it stays as it was.
    building = out.parent / f".{out.name}.building"
    assert str(building / "rejected.csv") in str(error.value)
    rejected = pd.read_csv(building / "rejected.csv")
    assert len(rejected) == 40 and set(rejected["reason"]) == {"fewer than 100000 observations"}
    assert (out / "manifest.json").exists() and len(pd.read_csv(out / "rejected.csv")) == 0
