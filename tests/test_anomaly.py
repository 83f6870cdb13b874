"""The anomaly detector: forest fit on known objects only, ECDF fusion, threshold, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from plasticc_jax import anomaly
from plasticc_jax.config import EvalConfig
from plasticc_jax.errors import UserError

CONFIG = EvalConfig(n_estimators=50, max_samples=128, target_fpr=0.05, seed=0)


def fake_outputs(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """What `TrainedVae.evaluate` returns, for n objects; `shift` moves them off the bulk."""
    mu = rng.normal(shift, 1.0, (n, 4)).astype(np.float32)
    n_observed = rng.integers(20, 200, n)
    return {
        "mu": mu,
        "logvar": rng.normal(-2.0, 0.1, (n, 4)).astype(np.float32),
        "recon_nll": (rng.normal(1.0 + shift, 0.2, n) * n_observed).astype(np.float32),
        "n_observed": n_observed,
        "kl": rng.gamma(4.0, 1.0 + shift, n).astype(np.float32),
        "chi2": rng.gamma(2.0, 0.5 + shift, n),
    }


def test_reference_ecdf_properties():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=500)
    ref = anomaly.Reference.fit(sample)
    x = np.linspace(-5, 50, 20001)
    u = ref.transform(x)
    assert np.all((u > 0) & (u <= 1))
    # Strictly increasing (as log survival), also far beyond the reference range.
    assert np.all(np.diff(ref.log_survival(x)) < 0)
    assert np.all(np.diff(u[x < 5]) > 0)
    # On the reference sample itself it is the (mid-rank) empirical CDF.
    ranks = np.argsort(np.argsort(sample)) + 1
    np.testing.assert_allclose(ref.transform(sample), ranks / 501, atol=1e-12)
    # Continuous at the ends of the reference range.
    top, bottom = sample.max(), sample.min()
    assert ref.transform(np.array([top + 1e-9]))[0] == pytest.approx(500 / 501, abs=1e-6)
    assert ref.transform(np.array([bottom - 1e-9]))[0] == pytest.approx(1 / 501, abs=1e-6)
    # Fresh draws from the same distribution come out roughly uniform.
    fresh = ref.transform(rng.normal(size=20000))
    assert abs(np.mean(fresh) - 0.5) < 0.02 and abs(np.mean(fresh < 0.1) - 0.1) < 0.02


def test_reference_with_ties_and_subsampling():
    ref = anomaly.Reference.fit(np.array([1.0, 1.0, 2.0, 3.0]))
    np.testing.assert_allclose(ref.transform(np.array([1.0, 2.0])), [1.5 / 5, 3 / 5])
    big = np.random.default_rng(0).normal(size=100_000)
    sub = anomaly.Reference.fit(big, max_points=1001)
    assert sub.values.size <= 1001
    q = np.quantile(big, [0.01, 0.5, 0.99])
    np.testing.assert_allclose(sub.transform(q), [0.01, 0.5, 0.99], atol=2e-3)
    again = anomaly.Reference.from_json(sub.to_json())
    np.testing.assert_array_equal(again.transform(q), sub.transform(q))


def test_forest_refuses_anomalies():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="never reach"):
        anomaly.fit_forest(rng.normal(size=(10, 2)), np.array([False] * 9 + [True]), CONFIG)


def test_fit_detector_fits_forest_on_train_known_only(monkeypatch):
    seen = []

    class Recording(anomaly.IsolationForest):
        def fit(self, X, y=None, sample_weight=None):
            seen.append(np.array(X))
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(anomaly, "IsolationForest", Recording)
    rng = np.random.default_rng(0)
    train = fake_outputs(rng, 400)
    is_anomaly = rng.random(400) < 0.3
    train["mu"][is_anomaly] += 100.0  # anomalies are unmistakable if they reach the fit
    detector = anomaly.fit_detector(
        train, is_anomaly, fake_outputs(rng, 300), np.zeros(300, bool), CONFIG
    )
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], train["mu"][~is_anomaly])
    assert detector.info["n_fit"] == (~is_anomaly).sum()


def test_threshold_hits_target_fpr_on_fresh_known_objects():
    rng = np.random.default_rng(0)
    config = EvalConfig(n_estimators=50, max_samples=128, target_fpr=0.01, seed=0)
    train, val, test = (fake_outputs(rng, n) for n in (2000, 4000, 20000))
    val_anomaly = np.zeros(4000, bool)
    val_anomaly[:500] = True  # anomalies in val must not move the threshold
    val["mu"][:500] += 50.0
    detector = anomaly.fit_detector(train, np.zeros(2000, bool), val, val_anomaly, config)
    assert detector.info["n_val_known"] == 3500
    assert detector.info["val_flag_rate"] <= 0.01
    assert abs(detector.info["val_flag_rate"] - 0.01) < 0.002
    fresh_fpr = detector.flag(detector.score(test)["fused_score"]).mean()
    assert abs(fresh_fpr - 0.01) < 0.005
    # Shifted (anomalous) objects score higher than known ones and are mostly flagged.
    shifted = detector.score(fake_outputs(rng, 500, shift=3.0))
    assert np.median(shifted["fused_score"]) > np.quantile(detector.score(test)["fused_score"], 0.9)
    assert detector.flag(shifted[detector.score_column]).mean() > 0.5


def test_calibrate_threshold_exact():
    scores = np.arange(1, 101, dtype=float)  # 1..100
    assert anomaly.calibrate_threshold(scores, 0.05) == 96.0  # 4 values (97..100) above
    assert np.mean(scores > anomaly.calibrate_threshold(scores, 0.05)) == 0.04
    with pytest.raises(UserError):
        anomaly.calibrate_threshold(scores, 0.0)


def test_fusion_is_independent_of_batch_and_weighted():
    rng = np.random.default_rng(0)
    config = EvalConfig(n_estimators=50, max_samples=128, fusion_weights=(1.0, 3.0, 0.0, 0.0))
    detector = anomaly.fit_detector(
        fake_outputs(rng, 500),
        np.zeros(500, bool),
        fake_outputs(rng, 500),
        np.zeros(500, bool),
        config,
    )
    assert detector.weights == {"forest": 0.25, "recon": 0.75, "kl": 0.0, "chi2": 0.0}
    batch = fake_outputs(rng, 200)
    whole = detector.score(batch)["fused_score"]
    one = detector.score({k: v[:1] for k, v in batch.items()})["fused_score"]
    assert one[0] == whole[0]  # an object's score does not depend on its batch
    parts = detector.components(batch)
    mean_cdf = 0.25 * detector.references["forest"].transform(parts["forest"]) + 0.75 * (
        detector.references["recon"].transform(parts["recon"])
    )
    np.testing.assert_allclose(whole, -np.log10(1.0 - mean_cdf), rtol=1e-9)
    with pytest.raises(UserError):
        anomaly.normalise_weights((0.0, 0.0, 0.0, 0.0))


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    detector = anomaly.fit_detector(
        fake_outputs(rng, 300),
        np.zeros(300, bool),
        fake_outputs(rng, 300),
        np.zeros(300, bool),
        CONFIG,
    )
    detector.save(tmp_path / "models")
    loaded = anomaly.AnomalyDetector.load(tmp_path / "models")
    batch = fake_outputs(rng, 100)
    for key, value in detector.score(batch).items():
        np.testing.assert_array_equal(loaded.score(batch)[key], value)
    assert loaded.threshold == detector.threshold and loaded.weights == detector.weights
    with pytest.raises(UserError, match="run `plasticc-jax evaluate`"):
        anomaly.AnomalyDetector.load(tmp_path / "nowhere")


def test_noise_level_diagnostic():
    """The detector recovers each object's noise level from recon and chi2 (val known only)."""
    rng = np.random.default_rng(0)

    def outputs(n: int) -> dict[str, np.ndarray]:
        out = fake_outputs(rng, n)
        mean_log_variance = rng.normal(-4.0, 2.0, n)  # faint and bright objects
        out["chi2"] = rng.gamma(4.0, 0.25, n)
        per_cell = 0.5 * (np.log(2 * np.pi) + mean_log_variance + out["chi2"])
        out["recon_nll"] = per_cell * out["n_observed"]
        return out

    detector = anomaly.fit_detector(
        outputs(500), np.zeros(500, bool), outputs(500), np.zeros(500, bool), CONFIG
    )
    noise = detector.info["val_spearman_noise"]
    assert noise["recon"] > 0.9 and abs(noise["chi2"]) < 0.15
