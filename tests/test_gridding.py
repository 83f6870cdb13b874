"""The gridding kernel (plasticc_jax.gridding): the time grid, cells, features, rejections.

Objects are gridded through `streaming.grid_lightcurves`, the kernel's in-memory entry point.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import gridding
from plasticc_jax.config import DataConfig
from plasticc_jax.gridding import FEATURE_NAMES, GridSpec
from plasticc_jax.streaming import NO_LIGHTCURVE, grid_lightcurves

DATA = DataConfig(n_time_bins=16, window_before=32.0, window_after=96.0, min_observations=3)
# The hand-made times below are days after this MJD (inside the survey span, as they must be).
MJD_OFFSET = 59_000.0


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
    lcs["mjd"] += MJD_OFFSET
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
    arrays, rejected = grid_lightcurves(lcs, meta, DATA)
    assert len(arrays) == 1 and rejected.empty
    assert arrays.target.tolist() == [64]
    # Labels stay outside the kernel: set where splits are made.
    assert arrays.is_anomaly.tolist() == [False]
    assert arrays.with_anomalies((6, 64)).is_anomaly.tolist() == [True]
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

    f = dict(zip(FEATURE_NAMES, arrays.features[0].tolist(), strict=True))
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
    assert arrays.features.dtype == np.float32 and arrays.features.shape == (1, len(FEATURE_NAMES))


def test_reference_time_uses_all_points_without_detections():
    lcs, meta = hand_made()
    lcs["detected"] = 0
    arrays, _ = grid_lightcurves(lcs, meta, DATA)
    # Best S/N is still mjd 1000 (S/N 10), but now 960 (S/N 5) competes: t0 stays 1000.
    assert arrays.mask[0, 2, 4]
    lcs.loc[lcs["mjd"] == MJD_OFFSET + 960.0, "flux"] = 500.0  # S/N 500 at 960 -> t0 = 960
    arrays, _ = grid_lightcurves(lcs, meta, DATA)
    # Window [928, 1056): 960 lands in bin 4; 1095.9 (y band) is now outside.
    assert arrays.mask[0, 0, 4] and not arrays.mask[0, 5].any()


def test_galactic_distmod_and_rejections_in_memory():
    lcs, meta = hand_made()
    meta.loc[0, ["hostgal_photoz", "distmod"]] = [0.0, -9.0]
    extra = meta.assign(object_id=12)
    arrays, rejected = grid_lightcurves(lcs, pd.concat([meta, extra]), DATA)
    f = dict(zip(FEATURE_NAMES, arrays.features[0].tolist(), strict=True))
    assert np.isnan(f["distmod"]) and f["is_galactic"] == 1.0  # undefined, not 0
    assert rejected[["object_id", "reason"]].values.tolist() == [[12, NO_LIGHTCURVE]]


def test_bin_centres_are_those_of_the_grid():
    data = DataConfig(n_time_bins=8, window_before=16.0, window_after=48.0, min_observations=1)
    spec = GridSpec.from_config(data)
    assert spec.bin_width == 8.0 and spec.describe()["bin_days"] == 8.0
    times = spec.bin_centres()
    np.testing.assert_allclose(times, [-12, -4, 4, 12, 20, 28, 36, 44])
    # The reference point (brightest) at t0 lands in bin 2 ([0, 8) days); points at the centres
    # of bins 0, 5 and 7 land in those bins.
    offsets = np.array([0.0, times[0], times[5], times[7]])
    lightcurves = pd.DataFrame(
        {
            "object_id": 1,
            "mjd": 60000.0 + offsets,
            "passband": 2,
            "flux": [100.0, 1.0, 1.0, 1.0],
            "flux_err": 1.0,
            "detected": True,
        }
    )
    metadata = pd.DataFrame(
        {"object_id": [1], "ddf": 0, "hostgal_photoz": 0.0, "hostgal_photoz_err": 0.0}
        | {"distmod": np.nan, "mwebv": 0.0, "target": 90}
    )
    arrays, _ = grid_lightcurves(lightcurves, metadata, data)
    assert np.flatnonzero(arrays.mask[0, 2]).tolist() == [0, 2, 5, 7]


def test_a_cell_error_whose_square_is_beyond_float32_rejects_its_object():
    # A review: flux errors of 1e25 (within float32) passed prepare and made the VAE's
    # variance inf, so training stopped at its first step ("diverged"), and `score` rejected
    # the objects there; now gridding rejects them, without a NumPy warning.
    lcs, meta = hand_made()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays, rejected = grid_lightcurves(lcs.assign(flux_err=1e25), meta, DATA)
        assert len(grid_lightcurves(lcs.assign(flux_err=1e3), meta, DATA)[0]) == 1
    assert len(arrays) == 0
    assert rejected["reason"].tolist() == [gridding.NON_FINITE_OUTPUT]


def test_a_feature_beyond_float32_rejects_its_object_without_a_numpy_warning():
    # Audit: flux x1e20 at the same errors (S/N 1e21) has reduced chi-squares of 1e40, beyond
    # float32: the object was rejected with its reason, but NumPy's "overflow encountered in
    # cast" (with the source line) was printed as well.
    lcs, meta = hand_made()
    bright = lcs.assign(flux=lcs["flux"] * 1e20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays, rejected = grid_lightcurves(bright, meta, DATA)
    assert len(arrays) == 0
    assert rejected["reason"].tolist() == [gridding.NON_FINITE_OUTPUT]
