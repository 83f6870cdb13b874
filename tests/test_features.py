"""The light-curve features (plasticc_jax.features) and their normalisation (FeatureStats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import features, threads
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.streaming import grid_lightcurves


def transient(t0: float = 60000.0, rise: float = 10.0, fall: float = 30.0) -> pd.DataFrame:
    """A noiseless rise-and-decline in g and r, sampled every 2 days, r twice as bright."""
    t = np.arange(t0 - 60.0, t0 + 200.0, 2.0)
    shape = np.exp(-(t - t0) / fall) / (1.0 + np.exp(-(t - t0) / rise * 3.0))
    shape /= shape.max()
    rows = []
    for band, peak in ((1, 500.0), (2, 1000.0)):
        flux = peak * shape
        for ti, fi in zip(t, flux, strict=True):
            rows.append((1, ti, band, fi, 10.0, abs(fi) / 10.0 > 5.0))
    return pd.DataFrame(
        rows, columns=["object_id", "mjd", "passband", "flux", "flux_err", "detected"]
    )


def metadata(distmod: float = 40.0, photoz: float = 0.2, photoz_err: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "object_id": [1],
            "ddf": [0],
            "hostgal_photoz": [photoz],
            "hostgal_photoz_err": [photoz_err],
            "distmod": [distmod],
            "mwebv": [0.01],
            "target": [90],
        }
    )


def named(arrays) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, arrays.features[0].astype(float), strict=True))


def test_physics_features_of_a_hand_made_transient():
    lcs = transient()
    arrays, rejected = grid_lightcurves(lcs, metadata(distmod=40.0), DataConfig())
    assert rejected.empty
    f = named(arrays)
    # The peak t0: the brightest r point, S/N 100. Its "peak flux" is the mean r flux within 10
    # days of t0 (equal errors: a plain mean), and M = 27.5 - 2.5 log10(that) - distmod.
    assert f["log10_peak_snr"] == pytest.approx(2.0, abs=1e-6)
    r = lcs[lcs["passband"] == 2]
    t0 = r["mjd"].iloc[r["flux"].argmax()]
    near = r[(r["mjd"] - t0).abs() <= 10.0]["flux"].mean()
    assert f["peak_abs_mag"] == pytest.approx(27.5 - 2.5 * np.log10(near) - 40.0, abs=1e-4)
    # g is half as bright as r: (500 - 1000) / 1500 = -1/3 at the peak and later.
    assert f["colour_peak_gr"] == pytest.approx(-1 / 3, abs=0.01)
    assert f["colour_late_gr"] == pytest.approx(-1 / 3, abs=0.01)
    assert np.isnan(f["colour_peak_ug"])  # no u observations: undefined, not 0
    # The decline: after 15-40 days the flux is exp(-dt/30) of the peak's.
    assert 0.3 < f["flux_ratio_p15_p40"] < 0.7
    assert f["flux_ratio_p100_p300"] < 0.1
    assert 0 < f["rise_days"] < 30 and 40 < f["fall_days"] < 200
    assert f["half_max_rise_days"] < f["half_max_fall_days"]
    assert f["frac_seasons_detected"] == 1.0  # one season, detected
    assert f["frac_below_3sigma"] == 0.0


def test_galactic_objects_have_no_absolute_magnitude_and_rows_may_be_unsorted():
    lcs = transient()
    arrays, _ = grid_lightcurves(lcs, metadata(distmod=np.nan, photoz=0.0), DataConfig())
    shuffled, _ = grid_lightcurves(
        lcs.sample(frac=1.0, random_state=0), metadata(distmod=np.nan, photoz=0.0), DataConfig()
    )
    f = named(arrays)
    assert np.isnan(f["peak_abs_mag"]) and np.isnan(f["distmod"]) and f["is_galactic"] == 1.0
    np.testing.assert_array_equal(arrays.features, shuffled.features)


def test_light_curve_package_features_are_scale_free():
    lcs = transient()
    bright, _ = grid_lightcurves(lcs, metadata(), DataConfig())
    faint_rows = lcs.assign(flux=lcs["flux"] / 10.0, flux_err=lcs["flux_err"] / 10.0)
    faint, _ = grid_lightcurves(faint_rows, metadata(), DataConfig())
    lc_columns = [FEATURE_NAMES.index(n) for n in features.LC_NAMES]
    np.testing.assert_allclose(
        bright.features[0, lc_columns], faint.features[0, lc_columns], rtol=1e-4, equal_nan=True
    )
    assert len(features.LC_NAMES) == 14 * 6  # 12 statistics per band, the linear fit gives 3
    assert all(n.startswith("lc_") for n in features.LC_NAMES)


def test_feature_stats_normalise_to_standard_normal_scores():
    rng = np.random.default_rng(0)
    x = np.column_stack(
        [
            rng.lognormal(0.0, 3.0, 5000),  # heavy tail
            np.where(rng.random(5000) < 0.5, 0.0, rng.random(5000)),  # half exactly 0
            np.full(5000, np.nan),  # undefined for every object
        ]
    )
    stats = FeatureStats.fit(("a", "b", "c"), x)
    z = stats.normalise(x)
    assert z.dtype == np.float32
    assert abs(np.mean(z[:, 0])) < 0.05 and abs(np.std(z[:, 0]) - 1.0) < 0.05
    # Ties map to the middle of their probability range (0: the 25th percentile, z ~ -0.67).
    assert np.allclose(z[x[:, 1] == 0.0, 1], -0.674, atol=0.02)
    assert np.all(z[:, 2] == 0.0)  # undefined -> 0, the median
    assert np.abs(stats.normalise(np.array([[1e30, 5.0, 1.0]]))).max() <= FeatureStats.CLIP
    again = FeatureStats.from_json(stats.to_json())
    np.testing.assert_array_equal(again.normalise(x), z)
    assert stats.normalise(np.array([[np.nan, np.nan, np.nan]])).tolist() == [[0.0, 0.0, 0.0]]


def test_feature_stats_normalise_a_large_batch_in_slices_as_in_one_piece(monkeypatch):
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.lognormal(0.0, 2.0, 7000), rng.normal(size=7000)])
    stats = FeatureStats.fit(("a", "b"), x)
    monkeypatch.setattr(threads, "cores", lambda: 1)
    whole = stats.normalise(x)
    monkeypatch.setattr(threads, "cores", lambda: 3)  # 7,000 rows: three slices of 2,048 or more
    sliced: list[int] = []
    one_slice = FeatureStats._normalise

    def counted(self: FeatureStats, part: np.ndarray) -> np.ndarray:
        sliced.append(len(part))
        return one_slice(self, part)

    monkeypatch.setattr(FeatureStats, "_normalise", counted)
    np.testing.assert_array_equal(stats.normalise(x), whole)
    assert sorted(sliced) == [2333, 2333, 2334]


def test_map_row_slices_cuts_contiguous_slices_of_at_least_min_rows(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)

    def spans(n: int, min_rows: int) -> list[tuple[int, int]]:
        return threads.map_row_slices(lambda rows: (rows.start, rows.stop), n, min_rows)

    assert spans(0, 10) == [(0, 0)]
    assert spans(19, 10) == [(0, 19)]  # two slices would be under 10 rows
    assert spans(30, 10) == [(0, 10), (10, 20), (20, 30)]
    assert spans(1000, 10) == [(0, 250), (250, 500), (500, 750), (750, 1000)]  # one a core


def test_each_slice_s_trees_run_on_one_openmp_thread():
    """Found by a review: OpenMP's limit is per thread (libgomp), so `single_threaded` around
    the pool left each slice's gradient-boosted trees on every core. In a process of its own:
    a new thread's default comes from OMP_NUM_THREADS at start (the tests set 1)."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sklearn.ensemble; from threadpoolctl import threadpool_info; "
        "from plasticc_jax import threads; threads.cores = lambda: 2\n"
        "def openmp(rows):\n"
        "    return [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'openmp']\n"
        "with threads.single_threaded():\n"
        "    print(json.dumps(threads.map_row_slices(openmp, 2, 1)))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert len(seen) == 2 and all(n and set(n) == {1} for n in seen), seen


def test_a_galactic_objects_distmod_is_ignored():
    # Audit: a galactic object (photoz 0) given a distmod (a star's distance) got a distmod and
    # peak_abs_mag that no galactic training object has (PLAsTiCC's are missing): an ordinary EB
    # went from 0.12 to 4.7, flagged. Both stay undefined, as without one.
    lcs = transient()
    given, _ = grid_lightcurves(lcs, metadata(distmod=10.0, photoz=0.0), DataConfig())
    missing, _ = grid_lightcurves(lcs, metadata(distmod=np.nan, photoz=0.0), DataConfig())
    np.testing.assert_array_equal(given.features, missing.features)
    assert np.isnan(named(given)["peak_abs_mag"]) and np.isnan(named(given)["distmod"])
    extragalactic, _ = grid_lightcurves(lcs, metadata(distmod=40.0, photoz=0.2), DataConfig())
    assert named(extragalactic)["distmod"] == pytest.approx(40.0)  # kept where it means something


def test_a_galactic_objects_photoz_error_is_ignored():
    # A galactic object given a host photo-z error (0 for all of PLAsTiCC's): the feature no
    # galactic training object has raised the median anomaly score of 300 galactic objects of
    # the training set 3-5 times at an error of 0.05. It is 0, as without one.
    lcs = transient()
    given, _ = grid_lightcurves(lcs, metadata(photoz=0.0, photoz_err=0.05), DataConfig())
    zero, _ = grid_lightcurves(lcs, metadata(photoz=0.0, photoz_err=0.0), DataConfig())
    np.testing.assert_array_equal(given.features, zero.features)
    extragalactic, _ = grid_lightcurves(lcs, metadata(photoz=0.2, photoz_err=0.05), DataConfig())
    assert named(extragalactic)["hostgal_photoz_err"] == pytest.approx(0.05)
