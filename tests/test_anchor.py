"""The grid's time anchor (`data.time_anchor`, `gridding.anchor_rows`) and the per-stage scoring
of the leave-one-known-class-out validation (`validate.stage_aurocs`): hand-made data, no
training."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from test_gridding import DATA, MJD_OFFSET, hand_made

from plasticc_jax import config as config_lib
from plasticc_jax import early, gridding, prepare
from plasticc_jax.gridding import FEATURE_NAMES, Chunk, GridSpec
from plasticc_jax.lightcurve_rows import Rows
from plasticc_jax.streaming import grid_lightcurves
from plasticc_jax.validate import stage_aurocs

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


def test_stage_aurocs_rank_unscorable_objects_last():
    inf = math.inf
    # Fold 15: positives 1 and 2, negatives 3 and 4. At 5 days object 2 has no row (too few
    # observations) and ranks last; object 4 has none either: they tie.
    rows = [
        (1, inf, True, 5.0),
        (2, inf, True, 4.0),
        (3, inf, False, 1.0),
        (4, inf, False, 2.0),
        (1, 5.0, True, 0.5),
        (3, 5.0, False, 1.0),
    ]
    frame = pd.DataFrame(rows, columns=["object_id", "stage", "positive", "anomaly_score"])
    frame.insert(0, "fold", 15)
    out = stage_aurocs(frame, [5.0, inf])
    assert out["complete"] == {"15": 1.0}
    # Pairs (pos, neg): (1,3) 0.5 < 1 -> 0; (1,4) 0.5 > floor -> 1; (2,3) 0; (2,4) tie 0.5.
    assert out["5"] == {"15": pytest.approx(1.5 / 4)}


@pytest.mark.slow  # trains three tiny folds
def test_validate_reports_the_held_out_class_at_every_stage(tmp_path, monkeypatch):
    from plasticc_jax import cli, config_io
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
    monkeypatch.setattr(validate_lib, "SEARCH_TOP", 1)
    monkeypatch.setattr(validate_lib, "WEIGHTS", (0, 1))
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
    # The per-stage AUROCs are those of the stored scores.
    again = validate_lib.stage_aurocs(staged, [5.0, 10.0, np.inf])
    assert again == {s: row["folds"] for s, row in early_result["aurocs"].items()}
