"""Readers, the time grid and features, chunking and workers (plasticc_jax.input_pipeline)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import input_pipeline as ip
from plasticc_jax import plasticc
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError
from plasticc_jax.synthetic import write_synthetic

DATA = DataConfig(n_time_bins=16, window_before=32.0, window_after=96.0, min_observations=3)


def collect(stream) -> tuple[LightCurveArrays, pd.DataFrame]:
    arrays, rejected = zip(*stream, strict=True)
    return LightCurveArrays.concatenate(list(arrays)), pd.concat(rejected, ignore_index=True)


def assert_same(a: LightCurveArrays, b: LightCurveArrays) -> None:
    for name, value in a.to_dict().items():
        other = getattr(b, name)
        assert value.dtype == other.dtype, name
        np.testing.assert_array_equal(value, other, err_msg=name)


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    return {
        fmt: write_synthetic(root / fmt, 40, fmt=fmt, seed=3) for fmt in ("unblinded", "kaggle")
    }


def test_readers_agree_on_both_formats(both_formats):
    (meta_u, lc_u), (meta_k, lc_k) = both_formats["unblinded"], both_formats["kaggle"]
    mu, mk = ip.read_metadata(meta_u), ip.read_metadata(meta_k)
    expected = [*plasticc.METADATA_COLUMNS, "target"]
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

    lu, lk = ip.read_lightcurves(lc_u), ip.read_lightcurves(lc_k)
    assert list(lu.columns) == list(plasticc.LIGHTCURVE_COLUMNS)
    assert lu["detected"].dtype == bool
    pd.testing.assert_frame_equal(lu, lk)
    assert set(lu["object_id"]) == set(mu["object_id"])


def test_target_falls_back_to_true_target_then_minus_one(tmp_path):
    base = (
        "object_id,ra,decl,ddf_bool,hostgal_specz,hostgal_photoz,hostgal_photoz_err,distmod,mwebv"
    )
    (tmp_path / "a.csv").write_text(
        f"{base},true_target,true_z\n 7, 1.0, 2.0,0,-9, 0.5, 0.1, 42, 0.01, 90, 0.5\n"
    )
    (tmp_path / "b.csv").write_text(f"{base}\n7,1.0,2.0,1,,0.5,0.1,42,0.01\n")
    a, b = ip.read_metadata(tmp_path / "a.csv"), ip.read_metadata(tmp_path / "b.csv")
    assert a["target"].tolist() == [90] and "true_z" not in a
    assert np.isnan(a["hostgal_specz"][0])
    assert b["target"].tolist() == [plasticc.UNKNOWN_TARGET] and b["ddf"].tolist() == [1]


def hand_made():
    """One object whose every grid cell is known by construction, plus its metadata."""
    rows = [
        # mjd, passband, flux, flux_err, detected
        (1000.0, 2, 50.0, 5.0, 1),  # S/N 10: the reference time t0
        (1001.0, 2, 30.0, 10.0, 1),  # same 8-day bin as t0 (bin width 128/16 = 8)
        (1002.0, 2, 20.0, 5.0, 0),
        (1040.0, 1, -80.0, 20.0, 1),  # S/N -4: negative flux sets the amplitude (80)
        (960.0, 0, 5.0, 1.0, 0),  # S/N 5 but not detected: not the reference
        (900.0, 3, 1.0, 1.0, 0),  # 100 days before t0: outside the window
        (1095.9, 5, 4.0, 2.0, 0),  # last bin
    ]
    lcs = pd.DataFrame(rows, columns=["mjd", "passband", "flux", "flux_err", "detected"])
    lcs.insert(0, "object_id", 11)
    meta = pd.DataFrame(
        {
            "object_id": [11],
            "ra": [1.0],
            "decl": [2.0],
            "ddf": [1],
            "hostgal_specz": [np.nan],
            "hostgal_photoz": [0.3],
            "hostgal_photoz_err": [0.05],
            "distmod": [41.0],
            "mwebv": [0.02],
            "target": [64],
        }
    )
    return lcs, meta


def test_grid_of_a_hand_made_object():
    lcs, meta = hand_made()
    arrays, rejected = ip.grid_lightcurves(lcs, meta, DATA, anomaly_classes=(64,))
    assert len(arrays) == 1 and rejected.empty
    assert arrays.is_anomaly.tolist() == [True] and arrays.target.tolist() == [64]
    amp = 80.0
    # t0 = 1000; window [968, 1096); bin = floor((mjd - 968) / 8).
    w1, w2, w3 = 1 / 25, 1 / 100, 1 / 25
    expected = {
        (2, 4): ((50 * w1 + 30 * w2 + 20 * w3) / (w1 + w2 + w3), 1 / np.sqrt(w1 + w2 + w3)),
        (1, 9): (-80.0, 20.0),
        (5, 15): (4.0, 2.0),
    }
    want_mask = np.zeros((6, 16), bool)
    for (band, t), (flux, err) in expected.items():
        want_mask[band, t] = True
        assert arrays.flux[0, band, t] == pytest.approx(flux / amp, rel=1e-6)
        assert arrays.flux_err[0, band, t] == pytest.approx(err / amp, rel=1e-6)
    np.testing.assert_array_equal(arrays.mask[0], want_mask)
    assert not arrays.flux[0][~want_mask].any() and not arrays.flux_err[0][~want_mask].any()

    f = dict(zip(ip.FEATURE_NAMES, arrays.features[0].tolist(), strict=True))
    assert f["log10_amplitude"] == pytest.approx(np.log10(80.0))
    assert f["log10_n_obs"] == pytest.approx(np.log10(7))
    assert f["log10_duration"] == pytest.approx(np.log10(1 + 40.0))  # detections 1000..1040
    assert f["frac_in_window"] == pytest.approx(5 / 7)  # 960 and 900 fall outside
    assert f["frac_detected_r"] == pytest.approx(2 / 3)
    assert f["mean_flux_u"] == pytest.approx(5.0 / amp)
    assert f["std_flux_r"] == pytest.approx(np.std([50.0, 30.0, 20.0]) / amp, rel=1e-6)
    assert f["mean_flux_z"] == 0.0 and f["frac_detected_z"] == 0.0  # no z observation
    assert f["distmod"] == pytest.approx(41.0) and f["is_galactic"] == 0.0
    assert f["ddf"] == 1.0 and f["mwebv"] == pytest.approx(0.02)
    assert arrays.features.dtype == np.float32 and arrays.features.shape == (1, 28)


def test_reference_time_uses_all_points_without_detections():
    lcs, meta = hand_made()
    lcs["detected"] = 0
    arrays, _ = ip.grid_lightcurves(lcs, meta, DATA)
    # Best S/N is still mjd 1000 (S/N 10), but now 960 (S/N 5) competes: t0 stays 1000.
    assert arrays.mask[0, 2, 4]
    lcs.loc[lcs["mjd"] == 960.0, "flux"] = 500.0  # S/N 500 at 960 -> t0 = 960
    arrays, _ = ip.grid_lightcurves(lcs, meta, DATA)
    # Window [928, 1056): 960 lands in bin 4; 1095.9 (y band) is now outside.
    assert arrays.mask[0, 0, 4] and not arrays.mask[0, 5].any()


def test_galactic_distmod_and_rejections_in_memory():
    lcs, meta = hand_made()
    meta.loc[0, ["hostgal_photoz", "distmod"]] = [0.0, -9.0]
    extra = meta.assign(object_id=12)
    arrays, rejected = ip.grid_lightcurves(lcs, pd.concat([meta, extra]), DATA)
    f = dict(zip(ip.FEATURE_NAMES, arrays.features[0].tolist(), strict=True))
    assert f["distmod"] == 0.0 and f["is_galactic"] == 1.0
    assert rejected[["object_id", "reason"]].values.tolist() == [[12, ip.NO_LIGHTCURVE]]


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    meta, lcs = write_synthetic(root, 120, fmt="kaggle", seed=5)
    frame = pd.read_csv(lcs)
    # A few objects with problems, to check that rejections too are chunk-independent.
    frame.loc[frame["object_id"] == 3, "flux_err"] = 0.0
    frame = frame[(frame["object_id"] != 4) | (frame.index % 40 == 0)]
    frame.to_csv(lcs, index=False)
    return meta, lcs


def test_chunk_size_and_workers_do_not_change_the_output(synthetic_files):
    meta, lcs = synthetic_files
    data = dataclasses.replace(DATA, min_observations=5)
    whole = collect(ip.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=10**9), 1))
    tiny = collect(ip.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=37), 1))
    pooled = collect(ip.stream_grids([lcs], [meta], dataclasses.replace(data, chunk_rows=500), 2))
    assert len(whole[0]) == 118
    assert sorted(whole[1]["object_id"]) == [3, 4]
    for arrays, rejected in (tiny, pooled):
        assert_same(whole[0], arrays)
        pd.testing.assert_frame_equal(whole[1], rejected)
    # The stream agrees with the in-memory path.
    alone, _ = ip.grid_lightcurves(pd.read_csv(lcs), pd.read_csv(meta), data)
    assert_same(whole[0], alone)


def test_ungrouped_file_is_an_error(tmp_path, synthetic_files):
    meta, lcs = synthetic_files
    frame = pd.read_csv(lcs)
    moved = frame[frame["object_id"] == 10].index[:3]
    shuffled = pd.concat([frame.drop(moved), frame.loc[moved]])
    path = tmp_path / "training_set.csv"
    shuffled.to_csv(path, index=False)
    for chunk_rows in (50, 10**9):
        data = dataclasses.replace(DATA, chunk_rows=chunk_rows)
        with pytest.raises(UserError, match=r"training_set.csv.*object 10 "):
            collect(ip.stream_grids([path], [meta], data, 1))


def test_find_inputs(tmp_path):
    assert ip.find_inputs(tmp_path) is None
    write_synthetic(tmp_path, 5, fmt="kaggle")
    found = ip.find_inputs(tmp_path)
    assert found.fmt == "kaggle" and [p.name for p in found.lightcurves] == ["training_set.csv"]
    for name in ("test_set.csv", "test_set_sample.csv", "test_set_metadata.csv"):
        (tmp_path / name).write_text("x\n")
    test = ip.find_inputs(tmp_path, "test")
    assert [p.name for p in test.lightcurves] == ["test_set.csv"]
    assert len(ip.find_inputs(tmp_path, "all").lightcurves) == 2
    write_synthetic(tmp_path, 5, fmt="unblinded")
    assert ip.find_inputs(tmp_path).fmt == "unblinded"  # preferred when both are present
    (tmp_path / "plasticc_test_lightcurves_01.csv.gz").write_text("x\n")
    with pytest.raises(UserError, match="no metadata file for the test set"):
        ip.find_inputs(tmp_path, "test")
    with pytest.raises(UserError, match=r"data\.inputs"):
        ip.find_inputs(tmp_path, "validation")
