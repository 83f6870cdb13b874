"""The grid's time anchor (`data.time_anchor`, `gridding.anchor_rows`) and the per-stage scoring
of the leave-one-known-class-out validation and its fusion search at one stage
(`fusion_search.StageFolds`): hand-made data, no training."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from test_gridding import DATA, MJD_OFFSET, hand_made

from plasticc_jax import config as config_lib
from plasticc_jax import early, gridding, metrics, prepare
from plasticc_jax.fusion_search import StageFolds
from plasticc_jax.gridding import FEATURE_NAMES, Chunk, GridSpec
from plasticc_jax.lightcurve_rows import Rows
from plasticc_jax.stages import scores_at, stage_name
from plasticc_jax.streaming import grid_lightcurves

FIRST = dataclasses.replace(DATA, time_anchor="first_detection")


def _sorted_chunk() -> Chunk:
    """Three objects, rows sorted by time: flagged detections at rows 3, 7, 9 of the first; no
    flag but S/N 6 at its row 4 (then S/N 20 at row 6) in the second; neither in the third."""
    n = 10
    snr = np.ones((3, n))
    detected = np.zeros((3, n), bool)
    detected[0, [7, 3, 9]] = True
    snr[0, 9] = 50.0  # the first object's peak: after its first detection
    snr[1, 4], snr[1, 6] = 6.0, 20.0
    snr[2, 2] = 4.0  # below the detection limit: the third object's peak, not a detection
    rows = Rows(
        np.repeat([1, 2, 3], n).astype(np.int64),
        np.tile(60000.0 + 3.0 * np.arange(n), 3),
        np.tile(np.arange(n) % 6, 3),
        snr.ravel(),
        np.ones(3 * n),
        detected.ravel(),
        0,
    )
    return Chunk(rows, np.array([0, n, 2 * n]), np.zeros((3, 5), np.float32), np.full(3, 90))


def test_first_detection_rows_follow_the_rule_of_early_first_detection():
    chunk = _sorted_chunk()
    rows, starts = chunk.rows, chunk.starts
    o = np.repeat(np.arange(3), 10)
    snr = rows.flux / rows.flux_err
    first = gridding.first_detection_rows(o, starts, snr, rows.detected)
    assert first.tolist() == [3, 14, 20]  # flag; then S/N >= 5; then the first point
    np.testing.assert_array_equal(rows.mjd[first], early.first_detection(chunk))
    anchor = gridding.anchor_rows(o, starts, snr, rows.detected, "first_detection")
    np.testing.assert_array_equal(anchor, first)
    peak = gridding.anchor_rows(o, starts, snr, rows.detected, "peak")
    np.testing.assert_array_equal(peak, gridding.reference_rows(o, starts, snr, rows.detected))
    assert peak.tolist() == [9, 16, 22]
    with pytest.raises(ValueError, match="time_anchor"):
        gridding.anchor_rows(o, starts, snr, rows.detected, "cut")


def test_first_detection_anchor_moves_the_grid_not_the_physics_features():
    lcs, meta = hand_made()
    lcs.loc[lcs["mjd"] == MJD_OFFSET + 960.0, "detected"] = 1  # first detection 960, peak 1000
    late = lcs.iloc[[0]].assign(mjd=MJD_OFFSET + 1090.0, passband=4, flux=2.0, detected=0)
    lcs = pd.concat([lcs, late], ignore_index=True)  # in the peak's window only
    peak, _ = grid_lightcurves(lcs, meta, DATA)
    first, _ = grid_lightcurves(lcs, meta, FIRST)
    # Peak anchor: window [968, 1096), 8-day bins; 1000 (r) in bin 4, 1090 (i) in bin 15, 960
    # (u) outside.
    assert peak.mask[0, 2, 4] and peak.mask[0, 4, 15] and not peak.mask[0, 0].any()
    # First-detection anchor: t0 = 960, window [928, 1056): 960 (u) in bin 4, 1000 (r) in bin 9,
    # 1040 (g) in bin 14; 900, 1090 and 1095.9 outside.
    assert np.argwhere(first.mask[0]).tolist() == [[0, 4], [1, 14], [2, 9]]
    a, b = peak.features[0], first.features[0]
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    changed = [FEATURE_NAMES[i] for i in np.flatnonzero(~same)]
    assert changed == ["frac_in_window"]  # the physics features stay on the peak
    frac = FEATURE_NAMES.index("frac_in_window")
    assert (peak.features[0, frac], first.features[0, frac]) == pytest.approx((6 / 8, 5 / 8))


def test_time_anchor_in_the_config_manifest_and_fingerprint():
    spec = GridSpec.from_config(FIRST)
    assert spec.time_anchor == "first_detection"
    assert "first detected point" in spec.describe()["reference_time"]
    assert GridSpec(16, 32.0, 96.0, 5).time_anchor == "peak"  # the default
    with pytest.raises(ValueError, match="time_anchor"):
        GridSpec(16, 32.0, 96.0, 5, "cut")
    base = config_lib.resolve(config_lib.Config())
    with pytest.raises(config_lib.InvalidConfig, match=r"data\.time_anchor"):
        config_lib.validate(
            dataclasses.replace(base, data=dataclasses.replace(base.data, time_anchor="cut"))
        )
    # The default anchor keeps the fingerprint datasets had before anchors were a setting.
    other = dataclasses.replace(
        base, data=dataclasses.replace(base.data, time_anchor=FIRST.time_anchor)
    )
    assert prepare._fingerprint(base, []) != prepare._fingerprint(other, [])


def stage_aurocs(stages: pd.DataFrame, days: list[float]) -> dict[str, dict[str, float]]:
    """The reference measurement: per stage and fold, the AUROC of the stored `anomaly_score` of
    the held-out class against the fold's negatives, through `stages.scores_at` (as `evaluate`
    scores the test split: an object without a row at a stage ranks last, all tied)."""
    out: dict[str, dict[str, float]] = {stage_name(d): {} for d in days}
    for fold, rows in stages.groupby("fold"):
        objects = rows[np.isinf(rows["stage"])]
        for d in days:
            score, _ = scores_at(rows, objects["object_id"].to_numpy(), d)
            out[stage_name(d)][str(int(fold))] = metrics.auroc(score, objects["positive"])
    return out


def test_stage_fusion_search_scores_the_stage_and_ranks_unscorable_objects_last():
    inf = math.inf
    # Fold 15: positives 1 and 2, negatives 3-6 (val). At 5 days objects 2 and 6 have no row.
    # `good` puts the positives' rows above the others', `bad` below. The detector was
    # calibrated on the negatives' complete rows and object 3's partial row.
    rows = [  # object_id, stage, positive, calibration, good, bad
        (1, inf, True, False, 9.0, 0.0),
        (2, inf, True, False, 8.0, 0.1),
        (3, inf, False, True, 1.0, 5.0),
        (4, inf, False, True, 2.0, 6.0),
        (5, inf, False, True, 3.0, 7.0),
        (6, inf, False, True, 4.0, 8.0),
        (1, 5.0, True, False, 7.0, 0.2),
        (3, 5.0, False, True, 0.5, 5.5),
        (4, 5.0, False, False, 1.5, 6.5),
        (5, 5.0, False, False, 2.5, 7.5),
    ]
    columns = ["object_id", "stage", "positive", "calibration", "good", "bad"]
    frame = pd.DataFrame(rows, columns=columns).assign(fold=15, group="extragalactic")
    at_5 = StageFolds(frame, 5.0)
    tried = at_5.search(["good", "bad"])
    assert tried[0]["weights"] == {"good": 1.0}
    # Pairs (pos, neg): 1 beats 3, 4, 5 and the unscorable 6; 2 (unscorable) loses to 3, 4, 5
    # and ties with 6: 4.5 / 8.
    assert tried[0]["mean_auroc"] == pytest.approx(4.5 / 8)
    # `bad`: 1 beats only the unscorable 6, 2 ties with it: 1.5 / 8.
    assert at_5.mean_auroc(at_5.fused({"bad": 1.0})) == pytest.approx(1.5 / 8)
    # As `evaluate` measures a stored score (`stage_aurocs`, through `scores_at`).
    fused = at_5.fused({"good": 1.0})
    scored = frame.assign(anomaly_score=0.0)
    scored.loc[scored["stage"] == 5.0, "anomaly_score"] = fused[at_5.scores["stage"] == 5.0]
    assert stage_aurocs(scored, [5.0])["5"] == {"15": pytest.approx(4.5 / 8)}
    assert StageFolds(frame, inf).search(["good", "bad"])[0]["mean_auroc"] == 1.0


def test_a_stage_that_float32_cannot_hold_is_found():
    """Found by a review: stages are stored as float32, and 7.3 days (not 7.3 in float32) matched
    no row, so the stage scored AUROC 0.5 whatever the scores."""
    positive = np.r_[np.ones(10, bool), np.zeros(30, bool)]

    def rows(days: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "fold": 0,
                "object_id": np.arange(40),
                "positive": positive,
                "group": "all",
                "calibration": ~positive,
                "stage": np.float64(np.float32(days)),  # as validate reads the stored stage
                "c": positive * 3.0,
            }
        )

    at = StageFolds(pd.concat([rows(math.inf), rows(7.3)], ignore_index=True), 7.3)
    assert at.aurocs(at.scores["c"].to_numpy()) == {0: 1.0}


@pytest.mark.slow  # trains three tiny folds
def test_validate_reports_the_held_out_class_at_every_stage(tmp_path, monkeypatch, caplog):
    from plasticc_jax import cli, config_io, fusion_search
    from plasticc_jax import validate as validate_lib
    from plasticc_jax.synthetic import write_synthetic

    write_synthetic(tmp_path / "data" / "raw", 300, fmt="unblinded", seed=0)
    overrides = [
        "data.protocol=sn",  # three known classes: three folds
        "data.stages=5,10",
        "train.partial_curves=true",
        "data.time_anchor=first_detection",
    ]
    args = ["--config", "tiny", "--workdir", str(tmp_path)]
    assert cli.main(["prepare", *args, *(f"--set={o}" for o in overrides)]) == 0
    read = []

    def recording(dataset_dir, split, **kwargs):
        read.append(split)
        return iter_split(dataset_dir, split, **kwargs)

    iter_split = validate_lib.iter_split
    monkeypatch.setattr(validate_lib, "iter_split", recording)
    # A small fusion search: the search is not what this test is about.
    monkeypatch.setattr(fusion_search, "SEARCH_TOP", 1)
    monkeypatch.setattr(fusion_search, "WEIGHTS", (0, 1))
    config = config_lib.resolve(config_io.apply_overrides(config_io.load_preset("tiny"), overrides))
    out = validate_lib.validate(config, tmp_path)

    assert set(read) == {"train", "val"}  # never the test split
    result = json.loads((out / "validation.json").read_text())
    early_result = result["stages"]
    assert early_result["time_anchor"] == "first_detection"
    assert early_result["stages"] == ["5", "10", "complete"]
    folds = [str(c) for c in config.data.known_classes]
    for row in early_result["aurocs"].values():
        assert sorted(row["folds"]) == sorted(folds)
        assert all(0.0 <= v <= 1.0 for v in row["folds"].values())
        assert row["mean"] == pytest.approx(np.mean(list(row["folds"].values())))
    assert early_result["headline_stage"] == "10"
    assert early_result["headline"] == early_result["aurocs"]["10"]["mean"]
    assert "Headline: mean fold AUROC at 10 days" in (out / "validation.md").read_text()
    staged = pd.read_parquet(out / "stages.parquet")
    assert set(staged["split"]) <= {"train", "val"} and set(staged["stage"]) == {5.0, 10.0, np.inf}
    # Positives: the held-out class's train and val objects; negatives: the val split's others.
    negatives = staged[~staged["positive"]]
    assert (negatives["split"] == "val").all()
    assert (staged["positive"] == (staged["target"] == staged["fold"])).all()
    # The per-stage AUROCs, recomputed from the stored component scores with the configured
    # fusion, are those of the fold detectors' own anomaly scores.
    reference = stage_aurocs(staged, [5.0, 10.0, np.inf])
    for stage, row in early_result["aurocs"].items():
        assert row["folds"] == pytest.approx(reference[stage], abs=1e-12)
    best = early_result["best_found"]
    assert best["aurocs"]["10"]["mean"] == early_result["search"][0]["mean_auroc"]
    assert best["fusion"] == fusion_search.fusion_spec(early_result["search"][0]["weights"])

    # The stored fold scores hold the fold detectors' own anomaly scores; stages.parquet's are
    # recomputed for the configured fusion from the components, the same to rounding.
    folds_own = pd.concat(
        pd.read_parquet(out / f"fold-{c}" / "stages.parquet") for c in config.data.known_classes
    )
    assert staged["anomaly_score"].to_numpy() == pytest.approx(
        folds_own["anomaly_score"].to_numpy(), abs=1e-9
    )
    # Another fusion scores no fold again (the folds do not depend on it): the stage rows'
    # anomaly score and the per-stage AUROCs follow it.
    other_weights = {config.eval.components[0]: 1.0}
    other = dataclasses.replace(
        config,
        eval=dataclasses.replace(config.eval, fusion=(f"{config.eval.components[0]}:1",)),
    )

    def no_scoring(*args, **kwargs):
        raise AssertionError("a fold was scored again")

    monkeypatch.setattr(validate_lib, "_fold_scores", no_scoring)
    out = validate_lib.validate(other, tmp_path)
    again = pd.read_parquet(out / "stages.parquet")
    groups = fusion_search.calibration_groups(again)
    expected = fusion_search.stage_fused(again, groups, other_weights)
    assert again["anomaly_score"].to_numpy() == pytest.approx(expected, abs=1e-12)
    other_result = json.loads((out / "validation.json").read_text())["stages"]
    assert other_result["configured_fusion"] == f"{config.eval.components[0]}:1"
    for stage, row in other_result["aurocs"].items():
        days = math.inf if stage == "complete" else float(stage)
        at = StageFolds(again, days)
        assert row["folds"] == pytest.approx(
            {str(k): v for k, v in at.aurocs(at.fused(other_weights)).items()}, abs=1e-12
        )
    # The search at 10 days covers the fusion's components, as the main search does (a review:
    # `eval.components` alone, and with none given an IndexError after every fold).
    only_fusion = dataclasses.replace(other, eval=dataclasses.replace(other.eval, components=()))
    searched = validate_lib._stage_result(only_fusion, again, other_weights)
    assert searched["best_found"]["fusion"] == f"{config.eval.components[0]}:1"
    # A fold whose stage scores are gone is scored again, and the log names that file (found by
    # a review: it called the fold's whole scores.parquet damaged).
    monkeypatch.undo()
    stages = out / f"fold-{config.data.known_classes[0]}" / "stages.parquet"
    stages.unlink()
    with caplog.at_level("INFO", logger="plasticc_jax.validate"):
        validate_lib.validate(other, tmp_path)
    assert f"has no complete {stages}: scored again" in caplog.text
    assert "damaged" not in caplog.text and stages.is_file()
