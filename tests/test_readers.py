"""Reading PLAsTiCC files (plasticc_jax.readers): both formats, labels; which files are input
(plasticc_jax.inputs)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import plasticc
from plasticc_jax import readers as rd
from plasticc_jax.errors import UserError
from plasticc_jax.inputs import find_inputs
from plasticc_jax.synthetic import write_synthetic


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    return {
        fmt: write_synthetic(root / fmt, 40, fmt=fmt, seed=3) for fmt in ("unblinded", "kaggle")
    }


def test_readers_agree_on_both_formats(both_formats):
    (meta_u, lc_u), (meta_k, lc_k) = both_formats["unblinded"], both_formats["kaggle"]
    mu, mk = rd.read_metadata(meta_u), rd.read_metadata(meta_k)
    expected = [*plasticc.METADATA_COLUMNS, "target", "problem"]
    assert list(mu.columns) == expected and list(mk.columns) == expected
    assert not any(c.startswith(plasticc.TRUTH_PREFIXES) for c in mu.columns)
    np.testing.assert_array_equal(mu["object_id"], mk["object_id"])
    np.testing.assert_array_equal(mu["target"], mk["target"])
    np.testing.assert_array_equal(mu["ddf"], mk["ddf"])
    # -9 in the unblinded file and NaN in the Kaggle file both mean missing.
    for column in ("distmod", "hostgal_specz"):
        np.testing.assert_array_equal(mu[column].isna(), mk[column].isna())
        assert mu[column].isna().any()
    np.testing.assert_allclose(mu["hostgal_photoz"], mk["hostgal_photoz"], atol=1e-4)

    lu, lk = rd.read_lightcurves(lc_u), rd.read_lightcurves(lc_k)
    assert list(lu.columns) == list(plasticc.LIGHTCURVE_COLUMNS)
    assert lu["detected"].dtype == bool
    pd.testing.assert_frame_equal(lu, lk)
    assert set(lu["object_id"]) == set(mu["object_id"])


def test_metadata_without_the_columns_no_model_reads(both_formats, tmp_path):
    """ra, decl and hostgal_specz are never model inputs: a file of one's own survey without them
    is read (they were required), the other values the same; a column the model reads is not."""
    meta_path = both_formats["unblinded"][0]
    full = pd.read_csv(meta_path)
    full.drop(columns=["ra", "decl", "hostgal_specz"]).to_csv(tmp_path / "m.csv", index=False)
    read, expected = rd.read_metadata(tmp_path / "m.csv"), rd.read_metadata(meta_path)
    assert list(read.columns) == list(expected.columns)
    assert read[["ra", "decl", "hostgal_specz"]].isna().all().all()
    others = expected.columns.difference(["ra", "decl", "hostgal_specz"])
    pd.testing.assert_frame_equal(read[others], expected[others])
    full.drop(columns=["mwebv"]).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(UserError, match=r"missing metadata column\(s\) mwebv"):
        rd.read_metadata(tmp_path / "n.csv")


def test_target_falls_back_to_true_target_then_minus_one(tmp_path):
    base = (
        "object_id,ra,decl,ddf_bool,hostgal_specz,hostgal_photoz,hostgal_photoz_err,distmod,mwebv"
    )
    (tmp_path / "a.csv").write_text(
        f"{base},true_target,true_z\n 7, 1.0, 2.0,0,-9, 0.5, 0.1, 42, 0.01, 90, 0.5\n"
    )
    (tmp_path / "b.csv").write_text(f"{base}\n7,1.0,2.0,1,,0.5,0.1,42,0.01\n")
    a, b = rd.read_metadata(tmp_path / "a.csv"), rd.read_metadata(tmp_path / "b.csv")
    assert a["target"].tolist() == [90] and "true_z" not in a
    assert np.isnan(a["hostgal_specz"][0])
    assert b["target"].tolist() == [plasticc.UNKNOWN_TARGET] and b["ddf"].tolist() == [1]


def test_find_inputs(tmp_path, caplog):
    assert find_inputs(tmp_path) is None
    write_synthetic(tmp_path, 5, fmt="kaggle")
    found = find_inputs(tmp_path)
    assert found.fmt == "kaggle" and [p.name for p in found.lightcurves] == ["training_set.csv"]
    # Both sets asked for, one there: said (found by a review: the training set alone was
    # read without a word).
    with caplog.at_level("WARNING"):
        assert len(find_inputs(tmp_path, "all").lightcurves) == 1
    assert "data.inputs=all: " in caplog.text and "holds no test set files; only the training" in (
        caplog.text
    )
    caplog.clear()
    for name in ("test_set.csv", "test_set_sample.csv", "test_set_metadata.csv"):
        (tmp_path / name).write_text("x\n")
    test = find_inputs(tmp_path, "test")
    assert [p.name for p in test.lightcurves] == ["test_set.csv"]
    assert len(find_inputs(tmp_path, "all").lightcurves) == 2
    assert "data.inputs=all" not in caplog.text
    write_synthetic(tmp_path, 5, fmt="unblinded")
    assert find_inputs(tmp_path).fmt == "unblinded"  # preferred when both are present
    # ... unless the other holds more of the sets asked for (a review: the unblinded training
    # set was read alone beside Kaggle's training and test sets); split over both: refused.
    assert find_inputs(tmp_path, "all").fmt == "kaggle"
    (tmp_path / "training_set.csv").rename(tmp_path / "training.bak")
    (tmp_path / "training_set_metadata.csv").rename(tmp_path / "training_metadata.bak")
    with pytest.raises(UserError, match=r"holds the sets in different formats \(unblinded: tr"):
        find_inputs(tmp_path, "all")
    (tmp_path / "plasticc_test_lightcurves_01.csv.gz").write_text("x\n")
    with pytest.raises(UserError, match="no metadata file for the test set"):
        find_inputs(tmp_path, "test")
    with pytest.raises(UserError, match=r"data\.inputs"):
        find_inputs(tmp_path, "validation")
    # A decompressed copy beside its .gz (found by an audit: every object read twice, then
    # "reappears ... sort the file").
    (tmp_path / "plasticc_test_lightcurves_01.csv.gz").unlink()
    gz = tmp_path / "plasticc_train_lightcurves.csv.gz"
    (tmp_path / "plasticc_train_lightcurves.csv").write_bytes(gzip.decompress(gz.read_bytes()))
    with pytest.raises(UserError, match=r"holds plasticc_train_lightcurves.csv and .*csv.gz, th"):
        find_inputs(tmp_path)
    # Two files of one name holding other objects are two inputs (tests/test_distributed.py).
    (tmp_path / "plasticc_train_lightcurves.csv").write_text("object_id,mjd\n99,1\n")
    assert len(find_inputs(tmp_path).lightcurves) == 2


def test_a_label_not_a_class_number_is_warned_of_once(tmp_path, caplog):
    """By the driver, not again by each Dask worker (whose logs a remote cluster shows too)."""
    import logging

    from plasticc_jax import distributed

    base = "object_id,ra,decl,ddf,hostgal_specz,hostgal_photoz,hostgal_photoz_err,distmod,mwebv"
    (tmp_path / "m.csv").write_text(f"{base},target\n7,1.0,2.0,0,,0.5,0.1,42,0.01,SNIa\n")
    metadata = rd.read_metadata(tmp_path / "m.csv")
    with caplog.at_level(logging.WARNING):
        assert rd.labels_optional(metadata)["problem"].tolist() == [0]
        assert len(caplog.records) == 1 and "not a class number" in caplog.records[0].message
        caplog.clear()
        stamp = distributed.metadata_stamp([tmp_path / "m.csv"])
        index, _, _ = distributed.worker_metadata(stamp, None)
        assert not caplog.records
    assert index.problem.tolist() == [0]  # scored, without a label
    # Rejections name the file as given, as without Dask (a review: its resolved path).
    (tmp_path / "link.csv").symlink_to(tmp_path / "m.csv")
    index, _, _ = distributed.worker_metadata(
        distributed.metadata_stamp([tmp_path / "link.csv"]), None
    )
    assert index.names == ["link.csv"]
