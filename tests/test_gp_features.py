"""The Gaussian-process light-curve features (plasticc_jax.gp_features), their switch
(`data.gp_features`) and fit (`data.gp_fit`), and the columns each model reads of the features
(gridding.model_features)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import config as config_lib
from plasticc_jax import features, gp_features, prepare, provenance
from plasticc_jax.config import DataConfig
from plasticc_jax.errors import UserError
from plasticc_jax.gp_features import GP_NAMES, MAX_POINTS, MIN_POINTS
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES, GridSpec, model_features
from plasticc_jax.streaming import grid_lightcurves

WINDOW = (50.0, 100.0)


def transient(t0: float, rise: float = 5.0, fall: float = 30.0, step: float = 2.0) -> dict:
    """A noiseless rise and exponential decline in g and r (r twice as bright), one object."""
    t = np.arange(t0 - 40.0, t0 + 150.0, step)
    shape = np.exp(-(t - t0) / fall) / (1.0 + np.exp(-(t - t0) / rise))
    shape /= shape.max()
    mjd = np.r_[t, t + 0.1]
    order = np.argsort(mjd, kind="stable")
    band = np.r_[np.full(t.size, 1), np.full(t.size, 2)]
    flux = np.r_[500.0 * shape, 1000.0 * shape]
    return {"mjd": mjd[order], "passband": band[order], "flux": flux[order]}


def features_of(
    objects: list[dict], redshift: list[float], fit: str = "full", **cached
) -> np.ndarray:
    """`gp_features` of objects given as dicts of rows (flux_err 10, t0: the brightest point),
    fitted as `fit` (`gp_features.FITS`); `cached`: its `cache` and `object_ids`."""
    mjd, band, flux = (np.concatenate([o[k] for o in objects]) for k in ("mjd", "passband", "flux"))
    counts = [o["mjd"].size for o in objects]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    peaks = np.array([s + int(np.argmax(o["flux"])) for s, o in zip(starts, objects, strict=True)])
    err = np.full(mjd.size, 10.0)
    lengths, step = gp_features.FITS[fit]
    return gp_features.gp_features(
        mjd,
        band,
        flux,
        err,
        starts,
        peaks,
        np.array(redshift),
        WINDOW,
        lengths=lengths,
        step=step,
        **cached,
    )


def named(row: np.ndarray) -> dict[str, float]:
    return dict(zip(GP_NAMES, row.tolist(), strict=True))


def test_gp_features_of_a_hand_made_transient():
    f = named(features_of([transient(60000.0)], [0.5])[0])
    assert abs(f["gp_peak_offset"]) <= 3.0
    # r is twice as bright as g at the peak. (The bands without points take their neighbours'
    # flux through the wavelength scale: the shares are of all six bands.)
    assert f["gp_peak_frac_r"] / f["gp_peak_frac_g"] == pytest.approx(2.0, abs=0.1)
    assert f["gp_peak_frac_u"] < f["gp_peak_frac_g"]
    assert f["gp_decline15_r"] == pytest.approx(np.exp(-15 / 30), abs=0.1)
    assert f["gp_decline15_g"] == pytest.approx(f["gp_decline15_r"], abs=0.02)
    # A fast rise and a slow decline.
    assert f["gp_rise_50"] < f["gp_fall_50"] < f["gp_fall_20"]
    assert f["gp_fall_50_rest"] == pytest.approx(f["gp_fall_50"] / 1.5)
    assert f["gp_n_peaks"] == 1.0
    assert f["gp_chi2_per_point"] < 1.0  # noiseless rows with errors of 10
    assert f["gp_negative_width"] == pytest.approx(0.0, abs=1.0)


def test_the_config_names_every_fit() -> None:
    """`data.gp_fit` is checked against the config's own list (which imports no JAX)."""
    assert set(config_lib.GP_FITS) == set(gp_features.FITS)


def test_a_jax_without_its_cpu_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A library user's `JAX_PLATFORMS=cuda` (the command line adds `cpu` itself): the fit's
    device cannot be named, and the error says how to give it (JAX's own was a traceback)."""
    real = gp_features.jax.devices

    def without_cpu(backend=None):
        if backend == "cpu":
            raise RuntimeError("Unknown backend cpu. Available backends are ['cuda']")
        return real(backend)

    monkeypatch.setattr(gp_features.jax, "devices", without_cpu)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    with pytest.raises(UserError, match="=cuda leaves out: set JAX_PLATFORMS=cuda,cpu"):
        features_of([transient(60000.0)], [0.1])


def test_the_fast_fit_reads_the_same_transient_on_its_coarser_grid():
    """`data.gp_fit=fast`: one time scale, a four-day grid; the same shape comes out."""
    full = named(features_of([transient(60000.0)], [0.5])[0])
    fast = named(features_of([transient(60000.0)], [0.5], "fast")[0])
    assert fast["gp_log10_length_scale"] == pytest.approx(np.log10(20.0))
    assert (fast["gp_peak_offset"] + WINDOW[0]) % 4.0 == pytest.approx(0.0, abs=1e-6)  # grid day
    assert abs(fast["gp_peak_offset"] - full["gp_peak_offset"]) <= 4.0
    assert fast["gp_peak_frac_r"] / fast["gp_peak_frac_g"] == pytest.approx(2.0, abs=0.1)
    assert fast["gp_decline15_r"] == pytest.approx(full["gp_decline15_r"], abs=0.1)
    assert fast["gp_rise_50"] < fast["gp_fall_50"] < fast["gp_fall_20"]
    assert fast["gp_n_peaks"] == 1.0


def test_the_fit_in_the_config_the_manifest_the_fingerprint_and_the_dataset_check():
    base = config_lib.resolve(config_lib.Config())
    fast = dataclasses.replace(base, data=dataclasses.replace(base.data, gp_fit="fast"))
    assert GridSpec.from_config(fast.data).describe()["gp_fit"] == "fast"
    # The default keeps the manifest and fingerprint datasets had before fits were a setting.
    assert "gp_fit" not in GridSpec.from_config(base.data).describe()
    assert prepare._fingerprint(base, []) != prepare._fingerprint(fast, [])
    with pytest.raises(ValueError, match="gp_fit"):
        GridSpec(16, 32.0, 96.0, 5, gp_fit="slow")
    slow = dataclasses.replace(base, data=dataclasses.replace(base.data, gp_fit="slow"))
    with pytest.raises(config_lib.InvalidConfig, match=r"data\.gp_fit='slow': choose one of"):
        config_lib.validate(slow)
    # A dataset prepared before the setting existed was fitted in full.
    prepared = {"seed": base.data.seed}
    assert provenance.data_differences(prepared, base.data, "this config") == []
    assert provenance.data_differences(prepared, fast.data, "this config") == [
        "data.gp_fit: 'full' in the dataset, 'fast' in this config"
    ]
    # So was the time anchor the brightest point (found by a review: the dataset check skipped
    # it while the fingerprint assumed it).
    first = dataclasses.replace(base.data, time_anchor="first_detection")
    assert provenance.data_differences(prepared, first, "this config") == [
        "data.time_anchor: 'peak' in the dataset, 'first_detection' in this config"
    ]


def test_an_object_s_features_do_not_depend_on_the_others_in_its_chunk():
    # Twenty objects of one padded size are fitted in two calls (sixteen and four), each alone in
    # one.
    n = gp_features.CALL_OBJECTS + 4
    objects = [transient(60000.0 + 300 * i, rise=2 + i, fall=10 + 5 * i) for i in range(n)]
    assert len({o["mjd"].size for o in objects}) == 1
    redshifts = [0.1 * (i + 1) for i in range(n)]
    together = features_of(objects, redshifts)
    alone = [features_of([o], [z]) for o, z in zip(objects, redshifts, strict=True)]
    np.testing.assert_array_equal(together, np.concatenate(alone))
    assert np.isfinite(together[:, 0]).all()  # every object fitted


def test_features_are_the_same_read_a_call_or_a_wave_at_a_time(monkeypatch):
    # Four calls of two padded sizes (20 objects with 48 points in the window, 20 with 142, of
    # which 128 are fitted), read one call at a time and all in one wave.
    objects = [transient(60000.0 + 300 * i, fall=10 + i, step=2.0 + 4 * (i % 2)) for i in range(40)]
    assert len({o["mjd"].size for o in objects}) == 2
    redshifts = [0.05 * (i + 1) for i in range(len(objects))]
    in_one_wave = features_of(objects, redshifts)
    monkeypatch.setattr(gp_features, "WAVE_CALLS", 1)
    np.testing.assert_array_equal(features_of(objects, redshifts), in_one_wave)
    assert np.isfinite(in_one_wave[:, 0]).all()


def test_a_cache_refits_only_objects_whose_window_points_changed(monkeypatch):
    """A replay's `FitCache`: the features of an object whose new points fall outside its window
    are taken from the cache, the same as fitted again; a new point in the window, or a new
    brightest point (the window moves), is fitted."""
    fitted: list[int] = []
    fit = gp_features._fit_features

    def counted(mjd, passband, flux, flux_err, starts, *args):
        fitted.append(starts.size)
        return fit(mjd, passband, flux, flux_err, starts, *args)

    monkeypatch.setattr(gp_features, "_fit_features", counted)
    objects = [transient(60000.0), transient(61000.0, rise=3.0, fall=20.0)]
    redshift, ids = [0.3, 0.0], np.array([7, 3])
    cache = gp_features.FitCache.for_objects(ids)

    def with_cache(objs: list[dict]) -> np.ndarray:
        return features_of(objs, redshift, cache=cache, object_ids=ids)

    def plus(obj: dict, mjd: float, band: int, flux: float) -> dict:
        rows = {k: np.r_[obj[k], v] for k, v in zip(obj, (mjd, band, flux), strict=True)}
        order = np.argsort(rows["mjd"], kind="stable")
        return {k: v[order] for k, v in rows.items()}

    first = with_cache(objects)
    np.testing.assert_array_equal(first, features_of(objects, redshift))
    assert fitted[-1] == 2 and np.isfinite(first[:, 0]).all()
    # Later points beyond the window: the first object's features as before, fitted by no one.
    later = [plus(plus(objects[0], 60300.0, 1, 1.0), 60301.0, 2, 2.0), objects[1]]
    calls = len(fitted)
    np.testing.assert_array_equal(with_cache(later), features_of(later, redshift))
    assert fitted[calls] == 2  # the fit from scratch; the cached call fitted nothing
    assert len(fitted) == calls + 1
    # A point in the window, or a brighter one: that object alone is fitted again.
    inside = [later[0], plus(objects[1], 61050.0, 2, 300.0)]
    brighter = [plus(later[0], 60302.0, 2, 5000.0), inside[1]]
    for objs in (inside, brighter):
        calls = len(fitted)
        np.testing.assert_array_equal(with_cache(objs), features_of(objs, redshift))
        assert fitted[calls] == 1
    with pytest.raises(ValueError, match="not among the cache's"):
        features_of(objects, redshift, cache=cache, object_ids=np.array([7, 4]))


def test_too_few_points_and_points_beyond_the_largest_size():
    few = transient(60000.0, step=100.0)  # 2 points a band, one inside the window per band
    t = features_of([few], [0.2])
    inside = np.abs(few["mjd"] - few["mjd"][np.argmax(few["flux"])]) <= WINDOW[0]
    assert inside.sum() < MIN_POINTS and np.isnan(t).all()
    # Over MAX_POINTS points in the window: the highest signal-to-noise ones are fitted.
    dense = transient(60000.0, step=0.5)
    assert dense["mjd"].size > MAX_POINTS
    f = named(features_of([dense], [0.2])[0])
    assert f["gp_peak_frac_r"] / f["gp_peak_frac_g"] == pytest.approx(2.0, abs=0.1)
    assert f["gp_rise_50"] < f["gp_fall_50"]


def test_model_features_reads_the_columns_a_model_was_fitted_on():
    values = np.arange(3 * len(FEATURE_NAMES), dtype=float).reshape(3, -1)
    # A run fitted before the GP features were added reads the same leading columns.
    np.testing.assert_array_equal(
        model_features(values, MODEL_FEATURE_NAMES), values[:, : len(MODEL_FEATURE_NAMES)]
    )
    np.testing.assert_array_equal(model_features(values, FEATURE_NAMES), values)
    old = values[:, : len(MODEL_FEATURE_NAMES)]
    assert model_features(old, MODEL_FEATURE_NAMES) is old
    assert FEATURE_NAMES[-len(GP_NAMES) :] == GP_NAMES


def one_object() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(light curves, metadata) of one extragalactic transient."""
    rows = transient(60000.0)
    lightcurves = pd.DataFrame(
        {**rows, "object_id": 1, "flux_err": 10.0, "detected": np.abs(rows["flux"]) > 50.0}
    )
    metadata = pd.DataFrame(
        {
            "object_id": [1],
            "ddf": [0],
            "hostgal_photoz": [0.2],
            "hostgal_photoz_err": [0.01],
            "distmod": [40.0],
            "mwebv": [0.01],
            "target": [90],
        }
    )
    return lightcurves, metadata


def test_gridding_without_the_gp_features_leaves_them_nan_and_the_rest_unchanged():
    lightcurves, metadata = one_object()
    with_gp, _ = grid_lightcurves(lightcurves, metadata, DataConfig())
    without, _ = grid_lightcurves(lightcurves, metadata, DataConfig(gp_features=False))
    gp = slice(len(MODEL_FEATURE_NAMES), None)
    assert np.isfinite(with_gp.features[:, gp]).all() and np.isnan(without.features[:, gp]).all()
    np.testing.assert_array_equal(with_gp.features[:, : gp.start], without.features[:, : gp.start])
    np.testing.assert_array_equal(with_gp.flux, without.flux)


def test_a_stopped_fit_raises_and_leaves_the_cache_as_it_was():
    ids = np.array([4, 9])
    cache = gp_features.FitCache.for_objects(ids)
    stop = threading.Event()
    stop.set()
    with pytest.raises(gp_features.FitStopped):
        features_of([transient(60000.0), transient(61000.0)], [0.1, 0.2], cache=cache,
                    object_ids=ids, stop=stop)  # fmt: skip
    assert np.isnan(cache.keys).all() and np.isnan(cache.values).all()


def test_an_error_beside_the_fit_stops_it(monkeypatch):
    # Gridding fits the Gaussian-process features in a thread beside the other features; an
    # error (or a Ctrl-C) in those stops the fit at its next call instead of waiting for its end.
    told_to_stop = []

    def slow_fit(*args, stop: threading.Event, **kwargs) -> np.ndarray:
        told_to_stop.append(stop.wait(timeout=30.0))
        raise gp_features.FitStopped

    def failing(*args) -> np.ndarray:
        raise RuntimeError("features failed")

    monkeypatch.setattr(gp_features, "gp_features", slow_fit)
    monkeypatch.setattr(features, "lc_package_features", failing)
    lightcurves, metadata = one_object()
    with pytest.raises(RuntimeError, match="features failed"):
        grid_lightcurves(lightcurves, metadata, DataConfig())
    assert told_to_stop == [True]
