"""The detector: components, calibration, kinds, fusion, threshold, out-of-fold, save/load."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import calibration, components, detector, detector_files, scoring, threads
from plasticc_jax.components import Evidence
from plasticc_jax.config import EvalConfig
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import FEATURE_NAMES

CONFIG = EvalConfig(
    n_estimators=30,
    max_samples=64,
    classifier_iterations=10,
    knn_neighbours=5,
    target_fpr=0.05,
    fusion=("latent_knn:1", "classifier:2", "recon_chi2:1"),
)
CLASSES = (16, 65, 42, 90)  # two galactic, two extragalactic
GALACTIC = {16, 65}


def fake(rng: np.random.Generator, labels: np.ndarray, shift: float = 0.0) -> Evidence:
    """Objects whose latent and features cluster by class; `shift` moves them off the clusters."""
    n = labels.size
    centre = np.searchsorted(np.array(sorted(CLASSES)), labels)[:, None] * 3.0
    latent = rng.normal(centre + shift, 1.0, (n, 4)).astype(np.float32)
    raw = rng.normal(centre + shift, 1.0, (n, 6)).astype(np.float32)
    raw[:, 5] = np.nan  # an undefined feature
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32)
    return Evidence(
        latent=latent,
        probabilities=probabilities,
        chi2=rng.gamma(2.0, 0.5 + shift, n),
        features=np.nan_to_num(raw),
        raw_features=raw,
        galactic=np.isin(labels, list(GALACTIC)),
        depth=rng.normal(1.5, 0.4, n) - shift,  # log10 peak S/N, fainter off the clusters
        head_classes=CLASSES,
    )


def labels_of(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array(CLASSES), n)


@pytest.fixture(scope="module")
def fitted() -> tuple[detector.Detector, np.random.Generator]:
    rng = np.random.default_rng(0)
    train, val = labels_of(rng, 600), labels_of(rng, 600)
    return detector.Detector.fit(fake(rng, train), train, fake(rng, val), val, CONFIG), rng


def test_reference_ecdf_properties():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=500)
    ref = calibration.Reference.fit(sample)
    x = np.linspace(-5, 50, 20001)
    assert np.all(np.diff(ref.log_survival(x)) < 0)  # strictly increasing, also far out
    ranks = np.argsort(np.argsort(sample)) + 1
    np.testing.assert_allclose(ref.transform(sample), ranks / 501, atol=1e-12)
    np.testing.assert_allclose(ref.tail_score(sample), -np.log10(1 - ranks / 501), atol=1e-9)
    fresh = ref.transform(rng.normal(size=20000))
    assert abs(np.mean(fresh) - 0.5) < 0.02 and abs(np.mean(fresh < 0.1) - 0.1) < 0.02
    ties = calibration.Reference.fit(np.array([1.0, 1.0, 2.0, 3.0]))
    np.testing.assert_allclose(ties.transform(np.array([1.0, 2.0])), [1.5 / 5, 3 / 5])
    again = calibration.Reference.from_json(ref.to_json())
    np.testing.assert_array_equal(again.tail_score(x), ref.tail_score(x))


def test_calibrate_threshold_exact():
    scores = np.arange(1, 101, dtype=float)
    assert calibration.calibrate_threshold(scores, 0.05) == 96.0
    with pytest.raises(UserError, match=r"eval.target_fpr=0.0: must be in \(0, 1\)"):
        calibration.calibrate_threshold(scores, 0.0)


def test_flag_threshold_holds_in_every_depth_bin():
    rng = np.random.default_rng(3)

    def known(n: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores of known objects that drift with depth: the faint ones score higher."""
        depth = rng.uniform(0.5, 2.5, n)
        return rng.normal(0.0, 1.0, n) + 1.5 * (2.5 - depth), depth

    scores, depth = known(3000)
    per_bin = calibration.FlagThreshold.fit(scores, depth, 0.01, 3)
    single = calibration.FlagThreshold.fit(scores, depth, 0.01, 1)
    assert len(per_bin.edges) == 2 and per_bin.values[0] > per_bin.values[2]
    assert single.edges == () and len(single.values) == 1
    fresh, fresh_depth = known(300_000)
    which = np.digitize(fresh_depth, per_bin.edges)
    rates = [per_bin.flag(fresh, fresh_depth)[which == b].mean() for b in range(3)]
    assert all(0.005 < rate < 0.02 for rate in rates), rates
    one = single.flag(fresh, fresh_depth)
    assert one[which == 0].mean() > 0.02 and one[which == 2].mean() < 0.005
    # Beyond the val objects' depths: the first and last bins; no depth: the first.
    first, _, last = per_bin.values
    beyond = np.array([-9.0, 9.0, np.nan, np.inf, -np.inf])
    np.testing.assert_array_equal(per_bin.at(beyond), [first, last, first, last, first])
    # Fewer bins where a bin would hold fewer than 1 / target_fpr objects, or depths tie.
    assert len(calibration.FlagThreshold.fit(scores[:250], depth[:250], 0.01, 3).values) == 2
    assert len(calibration.FlagThreshold.fit(scores[:150], depth[:150], 0.01, 3).values) == 1
    assert len(calibration.FlagThreshold.fit(scores, np.ones(3000), 0.01, 3).values) == 1
    assert len(calibration.FlagThreshold.fit(scores, np.full(3000, np.nan), 0.01, 3).values) == 1
    # The object that sets a threshold scores it exactly: another path's last bits must not
    # flag it (evaluate against score: 9e-15 apart).
    at = np.array([first, first + 1e-13, first + 1e-6])
    assert per_bin.flag(at, np.full(3, -9.0)).tolist() == [False, False, True]
    # Saved and read back; a run of an earlier release saved one number.
    assert calibration.FlagThreshold.from_json(per_bin.to_json()) == per_bin
    assert calibration.FlagThreshold.from_json(2.5) == calibration.FlagThreshold((), (2.5,))


def test_age_threshold_holds_at_every_age_and_depth():
    """A replay's thresholds (`replay --threshold-from`): per age bin, then depth tercile."""
    rng = np.random.default_rng(0)

    def known(n):
        """Known objects' scores that fall with age and with depth."""
        days, depth = rng.uniform(0.0, 1000.0, n), rng.uniform(0.5, 2.5, n)
        return rng.normal(0.0, 1.0, n) + 2.0 * (3.0 - np.log10(1 + days)) - depth, days, depth

    threshold = calibration.AgeThreshold.fit(*known(20_000), 0.01)
    assert len(threshold.edges) == 3 and all(len(t.values) == 3 for t in threshold.bins)
    fresh, days, depth = known(400_000)
    flagged = threshold.flag(fresh, days, depth)
    age = np.digitize(np.log10(1 + days), threshold.edges)
    for b, bin_threshold in enumerate(threshold.bins):
        tercile = np.digitize(depth, bin_threshold.edges)
        rates = [flagged[(age == b) & (tercile == t)].mean() for t in range(3)]
        assert all(0.005 < rate < 0.02 for rate in rates), (b, rates)
    assert calibration.AgeThreshold.from_json(threshold.to_json()) == threshold
    assert "days: " in threshold.describe()
    # Too few re-scorings for four age bins: fewer, down to one.
    assert len(calibration.AgeThreshold.fit(*known(150), 0.01).bins) == 1


def test_the_score_table_flags_each_object_by_its_depth(fitted):
    det, _ = fitted
    first, middle, last = det.threshold.values  # 600 val known at 5%: three bins
    assert len({first, middle, last}) == 3
    depth = np.array([-9.0, -9.0, 1.5, 1.5, 9.0, 9.0])  # faint, middle, bright (fake: 1.5 ± 0.4)
    features = np.zeros((6, len(FEATURE_NAMES)), np.float32)
    features[:, FEATURE_NAMES.index(calibration.DEPTH_FEATURE)] = depth
    objects = {
        "object_id": np.arange(6),
        "split": np.full(6, "test"),
        "target": np.full(6, 42),
        "is_anomaly": np.zeros(6, bool),
        "mu": np.zeros((6, 4), np.float32),
        "logvar": np.zeros((6, 4), np.float32),
        "recon_nll": np.zeros(6),
        "n_observed": np.ones(6),
        "chi2": np.zeros(6),
        "features": features,
    }
    score = np.repeat([first, middle, last], 2) + np.tile([-1e-6, 1e-6], 3)
    scores = {name: np.zeros(6) for name in det.names}
    scores |= {"nearest_class": np.full(6, 42), "nearest_class_prob": np.ones(6)}
    table = scoring.score_table(objects, {**scores, "anomaly_score": score}, det)
    assert table["flagged"].tolist() == [False, True] * 3


def test_parse_fusion():
    assert detector.parse_fusion(["latent_knn:1", "classifier:3"]) == {
        "latent_knn": 0.25,
        "classifier": 0.75,
    }
    assert detector.parse_fusion(["recon_chi2", "latent_knn:0"]) == {"recon_chi2": 1.0}
    refused = {
        "unknown component 'nope'": ["nope:1"],
        "'latent_knn:x' is not component:weight": ["latent_knn:x"],
        "a weight is a finite number, zero or positive": ["latent_knn:-1"],
        "give at least one component a positive weight": ["latent_knn:0"],
    }
    for message, bad in refused.items():
        with pytest.raises(UserError, match=re.escape(message)):
            detector.parse_fusion(bad)
    # Found by a review: the config's checks refused these, the detector's own reading did not
    # (inf gave NaN weights, nan "a negative weight", a repeat the last one silently).
    cases = {
        "a weight is a finite number": (["latent_knn:inf", "classifier:1"], ["latent_knn:nan"]),
        "latent_knn given twice": (["latent_knn:1", "latent_knn:3"],),
    }
    for message, specs in cases.items():
        for spec in specs:
            with pytest.raises(UserError, match=message):
                detector.parse_fusion(spec)


def test_each_kind_is_fitted_on_its_own_known_objects(monkeypatch):
    seen: dict[str, list[set[int]]] = {}
    original = detector.fit_components

    def recording(evidence, labels, names, config):
        fitted = original(evidence, labels, names, config)
        for group, comps in fitted.items():
            seen.setdefault(group, []).append(set(comps["classifier"].classes.tolist()))
        return fitted

    monkeypatch.setattr(detector, "fit_components", recording)
    rng = np.random.default_rng(1)
    train, val = labels_of(rng, 300), labels_of(rng, 300)
    detector.Detector.fit(fake(rng, train), train, fake(rng, val), val, CONFIG)
    assert seen == {"galactic": [{16, 65}], "extragalactic": [{42, 90}]}


def test_a_kind_without_known_objects_falls_back_to_all():
    rng = np.random.default_rng(2)
    train = rng.choice(np.array([42, 90]), 200)  # extragalactic only (the `sn` protocol)
    fitted = detector.fit_components(fake(rng, train), train, ("latent_knn",), CONFIG)
    assert set(fitted) == {"extragalactic", "all"}
    groups = detector.route(fitted, np.array([True, False]))
    assert groups.tolist() == ["all", "extragalactic"]


def test_threshold_fusion_and_batch_independence(fitted):
    det, rng = fitted
    assert det.weights == {"latent_knn": 0.25, "classifier": 0.5, "recon_chi2": 0.25}
    assert det.info["val_flag_rate"] <= CONFIG.target_fpr
    known = fake(rng, labels_of(rng, 3000))
    fresh = det.score(known)
    assert abs(det.flag(fresh["anomaly_score"], known.depth).mean() - CONFIG.target_fpr) < 0.03
    # Objects off every cluster score higher than known ones and most are flagged.
    off = fake(rng, labels_of(rng, 300), shift=8.0)
    odd = det.score(off)
    assert np.median(odd["anomaly_score"]) > np.quantile(fresh["anomaly_score"], 0.95)
    assert det.flag(odd["anomaly_score"], off.depth).mean() > 0.5
    # An object's score does not depend on what it is scored with.
    batch = fake(rng, labels_of(rng, 50))
    whole, one = det.score(batch), det.score(batch.take(np.arange(1)))
    for key in ("anomaly_score", "latent_knn", "classifier", "nearest_class"):
        assert one[key][0] == whole[key][0]
    # The fused evidence is the weighted mean of the calibrated components.
    groups = detector.route(det.components, batch.galactic)
    tails = det.calibrated(det.raw_scores(batch), groups)
    mean = sum(w * tails[n] for n, w in det.weights.items())
    np.testing.assert_allclose(whole["anomaly_score"], det.final_score(mean, groups))


def test_a_batch_scored_in_slices_side_by_side_scores_as_one(fitted, monkeypatch):
    det, rng = fitted
    batch = fake(rng, labels_of(rng, 50))
    monkeypatch.setattr(detector, "ROWS_PER_THREAD", 10**9)
    whole = det.score(batch)
    monkeypatch.setattr(detector, "ROWS_PER_THREAD", 10)
    monkeypatch.setattr(threads, "cores", lambda: 3)
    sliced = det.score(batch)
    assert sliced.keys() == whole.keys()
    for key, values in whole.items():
        np.testing.assert_array_equal(sliced[key], values, err_msg=key)


def test_nearest_class_is_of_the_objects_kind(fitted):
    det, rng = fitted
    labels = labels_of(rng, 400)
    evidence = fake(rng, labels)
    nearest, prob = det.nearest_class(evidence)
    assert set(nearest[evidence.galactic]) <= GALACTIC
    assert not set(nearest[~evidence.galactic]) & GALACTIC
    assert np.all((prob > 0) & (prob <= 1))
    assert np.mean(nearest == labels) > 0.7  # the clusters are well separated


def test_the_nearest_class_comes_from_the_classifier_the_fusion_weighs(fitted):
    source = components.nearest_class_source
    names = list(components.COMPONENTS)
    assert source(names, {"gp_classifier": 3.0, "classifier": 1.0}) == "gp_classifier"
    assert source(names, {"classifier": 1.0, "latent_knn": 1.0}) == "classifier"
    assert source(names, {"latent_knn": 1.0}) == "gp_classifier"
    # A detector fitted before the gp_classifier existed; one without a classifier.
    assert source(["latent_knn", "classifier"], {"latent_knn": 1.0}) == "classifier"
    assert source(["latent_knn"], {"latent_knn": 1.0}) is None
    # The class shows only in two raw columns beyond the network's features, which only the
    # gp_classifier reads: its probabilities differ from the classifier's.
    _, rng = fitted

    def wide(labels: np.ndarray) -> Evidence:
        evidence = fake(rng, labels)
        classes = np.searchsorted(np.array(sorted(CLASSES)), labels)[:, None]
        noise = rng.normal(0.0, 1.0, evidence.raw_features.shape)
        extra = rng.normal(classes * 3.0, 1.0, (labels.size, 2))
        raw = np.column_stack([noise, extra]).astype(np.float32)
        return dataclasses.replace(evidence, raw_features=raw)

    train, val = labels_of(rng, 600), labels_of(rng, 600)
    det = detector.Detector.fit(wide(train), train, wide(val), val, CONFIG)
    evidence = wide(labels_of(rng, 300))
    groups = detector.route(det.components, evidence.galactic)
    probabilities = {}
    for weights in ({"classifier": 1.0}, {"gp_classifier": 1.0, "classifier": 1.0}):
        nearest, prob = dataclasses.replace(det, weights=weights).nearest_class(evidence)
        name = source(det.names, weights)
        for group, fitted_group in det.components.items():
            rows = groups == group
            p = fitted_group[name].probabilities(evidence.take(np.flatnonzero(rows)))
            np.testing.assert_array_equal(nearest[rows], fitted_group[name].classes[p.argmax(1)])
            np.testing.assert_array_equal(prob[rows], p.max(axis=1))
        probabilities[name] = prob
    assert not np.array_equal(probabilities["classifier"], probabilities["gp_classifier"])


def test_out_of_fold_scores_exclude_the_object_itself(fitted):
    _, rng = fitted
    labels = labels_of(rng, 200)
    evidence = fake(rng, labels)
    refit = detector.Detector.fit(evidence, labels, fake(rng, labels), labels, CONFIG)
    in_sample = refit.score(evidence)["latent_knn"]
    oof = refit.out_of_fold(evidence, labels, 4)
    # In sample, each object is its own nearest neighbour: its distance is smaller.
    assert np.mean(oof["latent_knn"] > in_sample) > 0.9
    # Components not fused are not refitted: NaN rather than in-sample.
    assert np.isnan(oof["latent_forest"]).all() and np.isfinite(oof["anomaly_score"]).all()


def test_each_out_of_fold_thread_takes_one_openmp_thread(fitted, monkeypatch):
    """Found by a type check: the folds' pool was given `one_openmp_thread` as its threads'
    name prefix, not their initializer, so each fold's trees ran on every core."""
    det, rng = fitted
    called: list[str] = []
    record = lambda: called.append(threading.current_thread().name)  # noqa: E731
    monkeypatch.setattr(detector, "one_openmp_thread", record)
    monkeypatch.setattr(detector, "cores", lambda: 2)
    labels = labels_of(rng, 200)
    det.out_of_fold(fake(rng, labels), labels, 4)
    assert len(called) == 2 and threading.current_thread().name not in called


def test_out_of_fold_keeps_one_thread_while_any_fold_runs(fitted, monkeypatch):
    """The native thread limit is the process's: with the folds in threads, one fold leaving
    its own limit must not lift the limit another fold still computes under. Forced order: fold
    A enters its limit, fold B enters its own, A leaves; B then looks at the limit."""
    det, rng = fitted
    limit: list[int | None] = [None]  # the process's limit, as the fake pools keep it

    class Limit:
        def __init__(self, n: int | None) -> None:
            self.n = n

        def __enter__(self) -> None:
            self.before, limit[0] = limit[0], self.n

        def __exit__(self, *exc: object) -> None:
            limit[0] = self.before

    class Pools:
        def limit(self, limits: int | None, user_api: str | None = None) -> Limit:
            return Limit(limits) if user_api is None else Limit(limit[0])  # OpenMP's: none here

    monkeypatch.setattr(threads, "_thread_pools", Pools)
    monkeypatch.setattr(detector, "cores", lambda: 2)  # two folds side by side
    order: list[threading.Thread] = []
    b_inside, a_left, b_looked = threading.Event(), threading.Event(), threading.Event()
    seen_by_b: list[int | None] = []

    class Staged(components.LatentKnn):
        def fit(self, evidence, labels):  # runs inside the fold's own limit
            me = threading.current_thread()
            if not order:
                order.append(me)
                assert b_inside.wait(30), "a second fold never started"
            elif me is not order[0] and len(order) == 1:
                order.append(me)
                b_inside.set()
                assert a_left.wait(30)
                seen_by_b.append(limit[0])
                b_looked.set()
            return super().fit(evidence, labels)

    fit_components = detector.fit_components

    def staged_fit_components(*args):
        fitted_components = fit_components(*args)
        if threading.current_thread() is order[0] and not a_left.is_set():
            a_left.set()  # A has left its limit; it waits, outside any, until B has looked
            assert b_looked.wait(30)
        return fitted_components

    monkeypatch.setitem(detector.COMPONENTS, "latent_knn", Staged)
    monkeypatch.setattr(detector, "fit_components", staged_fit_components)
    labels = labels_of(rng, 200)
    det.out_of_fold(fake(rng, labels), labels, 4)
    assert seen_by_b == [1] and limit[0] is None


def test_save_load_roundtrip(fitted, tmp_path):
    det, rng = fitted
    det.save(tmp_path / "models")
    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "models", legacy)  # made into the previous format below
    loaded = detector.Detector.load(tmp_path / "models")
    batch = fake(rng, labels_of(rng, 100))
    expected, fused = det.score(batch), det.score(batch, fused_only=True)
    scores = loaded.score(batch)
    assert scores.keys() == expected.keys()
    for key, value in scores.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert loaded.threshold == det.threshold and loaded.weights == det.weights
    assert loaded.config == det.config
    with pytest.raises(UserError, match="run `plasticc-jax evaluate`"):
        detector.Detector.load(tmp_path / "nowhere")
    # Scoring reads only the fusion's components and the nearest class's classifier: the same
    # columns as the whole detector, without the others' estimator files.
    forest = tmp_path / "models" / detector_files.estimators_file("latent_forest")
    assert "latent_forest" not in det.weights and forest.is_file()
    forest.unlink()
    scoring = detector.Detector.load(tmp_path / "models", scoring_only=True)
    assert set(scoring.names) == {*det.weights, "classifier"}
    for key, value in scoring.score(batch, fused_only=True).items():
        np.testing.assert_array_equal(value, fused[key], err_msg=key)
    with pytest.raises(UserError, match=r"latent_forest\.skops is missing"):
        detector.Detector.load(tmp_path / "models")
    # A detector of the previous format (every estimator in one file) is still read.
    import skops.io as sio

    params = json.loads((legacy / detector_files.PARAMS_FILE).read_text())
    merged = {}
    for name in params.pop("estimators"):
        merged.update(
            sio.load(
                legacy / detector_files.estimators_file(name), trusted=detector_files.TRUSTED_TYPES
            )
        )
        (legacy / detector_files.estimators_file(name)).unlink()
    sio.dump(merged, legacy / detector_files.FORMAT_2_ESTIMATORS)
    # Formats 2 and 3 saved one threshold, a number: read as one bin.
    one = {**params, "format_version": 2, "threshold": 2.5}
    (legacy / detector_files.PARAMS_FILE).write_text(json.dumps(one))
    old = detector.Detector.load(legacy)
    for key, value in old.score(batch).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert old.threshold == calibration.FlagThreshold((), (2.5,))
    np.testing.assert_array_equal(old.flag(np.array([2.4, 2.6]), np.array([9.0, -9.0])), [0, 1])
    # An estimators file that asks for a type the detector never saves is refused, unbuilt.
    sio.dump(
        {"model": _Payload()}, tmp_path / "models" / detector_files.estimators_file("classifier")
    )
    with pytest.raises(UserError, match=r"detector-classifier\.skops: refused: .*_Payload"):
        detector.Detector.load(tmp_path / "models", scoring_only=True)


def test_scoring_names_the_nearest_class_as_evaluate_does(tmp_path):
    """Found by a review: without a classifier, the nearest class comes from the VAE head's
    classes of each kind, and a detector loaded for scoring had left out the head component
    that holds them (galactic objects were named extragalactic classes)."""
    import dataclasses

    rng = np.random.default_rng(1)
    config = dataclasses.replace(
        CONFIG, components=("latent_knn", "head_maxprob"), fusion=("latent_knn:1",)
    )
    train, val = labels_of(rng, 400), labels_of(rng, 400)
    det = detector.Detector.fit(fake(rng, train), train, fake(rng, val), val, config)
    det.save(tmp_path / "models")
    scoring = detector.Detector.load(tmp_path / "models", scoring_only=True)
    batch = fake(rng, labels_of(rng, 200))
    full, fused = det.score(batch), scoring.score(batch, fused_only=True)
    np.testing.assert_array_equal(fused["nearest_class"], full["nearest_class"])
    galactic = fused["nearest_class"][batch.galactic]
    assert np.isin(galactic, list(GALACTIC)).all()


class _Payload:
    """A type no detector file holds."""


def test_distance_components_score_higher_off_the_clusters():
    rng = np.random.default_rng(3)
    train, val = labels_of(rng, 400), labels_of(rng, 200)
    fit = fake(rng, train)
    normal, odd = fake(rng, val), fake(rng, val, shift=6.0)
    for name, cls in components.COMPONENTS.items():
        if name in ("head_maxprob", "recon_chi2", "classifier", "gp_classifier"):
            continue  # the model's outputs (drawn at random here) and the classifiers (below)
        component = cls(CONFIG).fit(fit, train)
        assert np.median(component.score(odd)) > np.median(component.score(normal)), name


def test_a_knn_fitted_on_fewer_objects_than_its_neighbours_says_so(caplog):
    rng = np.random.default_rng(5)
    labels = labels_of(rng, 3)  # CONFIG asks for 5 neighbours
    knn = components.LatentKnn(CONFIG).fit(fake(rng, labels), labels)
    assert "eval.knn_neighbours=5, but only 3 objects" in caplog.text
    assert knn.score(fake(rng, labels)).shape == (3,)


def test_the_classifier_scores_objects_between_classes_higher():
    """Gradient-boosted trees extrapolate confidently (far off the clusters is "the last
    class"): what they flag is an object between the known classes."""
    rng = np.random.default_rng(4)
    train = labels_of(rng, 400)
    classifier = components.Classifier(CONFIG).fit(fake(rng, train), train)
    pure = fake(rng, np.full(200, 42))
    between = fake(rng, np.full(200, 42), shift=1.5)  # half-way to the next class (90)
    assert np.median(classifier.score(between)) > np.median(classifier.score(pure)) + 0.1


def test_a_classifier_of_two_classes_gives_both_probabilities():
    """A held-out galactic class leaves two known classes of that kind: the trees' binary model
    must still give each class's probability (a LightGBM probe read its one column as the only
    class's)."""
    rng = np.random.default_rng(5)
    train = rng.choice(np.array([42, 90]), 400)
    classifier = components.Classifier(CONFIG).fit(fake(rng, train), train)
    pure = fake(rng, np.full(200, 42))
    p = classifier.probabilities(pure)
    assert p.shape == (200, 2) and np.allclose(p.sum(axis=1), 1.0)
    assert np.median(p[:, 0]) > 0.75 and np.median(classifier.score(pure)) < 0.25  # 10 trees


def test_only_the_gp_classifier_reads_the_features_beyond_the_network_s():
    """`classifier` reads the network's features (as many as `Evidence.features` has),
    `gp_classifier` every raw feature: here a last column that alone tells the classes apart."""
    rng = np.random.default_rng(6)
    train = rng.choice(np.array([42, 90]), 400)

    def with_extra(labels: np.ndarray) -> Evidence:
        evidence = fake(rng, labels)
        noise = rng.normal(size=(labels.size, 6)).astype(np.float32)
        extra = (labels == 90).astype(np.float32)[:, None]
        raw = np.hstack([noise, extra])
        return dataclasses.replace(evidence, features=noise, raw_features=raw)

    fitted = {
        cls.name: cls(CONFIG).fit(with_extra(train), train)
        for cls in (components.Classifier, components.GpClassifier)
    }
    assert fitted["classifier"].columns.tolist() == [0, 1, 2, 3, 4, 5]
    assert fitted["gp_classifier"].columns.tolist() == [0, 1, 2, 3, 4, 5, 6]
    test = rng.choice(np.array([42, 90]), 200)
    evidence = with_extra(test)
    plain, gp = (np.median(fitted[name].score(evidence)) for name in fitted)
    assert plain > gp + 0.2, (plain, gp)  # 10 trees: sure of the class, but not at 1


def test_the_fusion_search_calibrates_as_the_detector_groups_its_objects():
    """Found by an audit: with one known class of a kind, the fold's detector scores that kind
    with its pooled group, but the search recalibrated by kind, against no negatives (a fused
    AUROC of 0.001 where every component found the held-out class)."""
    from plasticc_jax.fusion_search import Folds

    positive = np.array([True] * 4 + [False] * 6)
    scores = pd.DataFrame(
        {
            "fold": 65,
            "positive": positive,
            "galactic": positive,  # the held-out class is the only galactic one
            "group": detector.ALL,
            "c": np.where(positive, 5.0, 0.0) + np.arange(10) * 0.01,
        }
    )
    folds = Folds(scores)
    assert folds.aurocs(folds.fused({"c": 1.0})) == {65: 1.0}


def test_the_fusion_search_pools_a_group_without_negatives_as_the_detector_does():
    """Found by an audit: a fold that holds out the only galactic known class of a custom set
    (`validate --set data.known_classes=90,42,16`) leaves its detector an extragalactic group and
    the pooled one, which scores the galactic objects and is calibrated on every val known
    object (`Detector.fit`: none of them routes to it); the search recalibrated those objects
    against the pooled group's own negatives, of which there are none (every component's fold
    AUROC 0.54-1.0, the fused 0.001, and the best fusion found chosen by it)."""
    from plasticc_jax.fusion_search import Folds

    positive = np.array([True] * 4 + [False] * 6)
    scores = pd.DataFrame(
        {
            "fold": 16,
            "positive": positive,
            "galactic": positive,
            "group": np.where(positive, detector.ALL, "extragalactic"),
            "c": np.where(positive, 5.0, 0.0) + np.arange(10) * 0.01,
        }
    )
    folds = Folds(scores)
    assert folds.aurocs(folds.fused({"c": 1.0})) == {16: 1.0}
