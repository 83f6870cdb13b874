"""Early detection: the truncation kernel, partial light curves in training and evaluation,
`score --as-of`, and `replay` (counts, resume after an interruption, bad input)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import running, tiny_config
from test_processes import workers as _workers

from plasticc_jax import (
    cli,
    early,
    gp_features,
    gridding,
    io_utils,
    lightcurve_rows,
    provenance,
    readers,
    replay_groups,
    replay_input,
    replay_nights,
    scoring,
    streaming,
)
from plasticc_jax import replay as replay_lib
from plasticc_jax.calibration import DEPTH_FEATURE, AgeThreshold
from plasticc_jax.dataset import load_split
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import Chunk, GridSpec
from plasticc_jax.lightcurve_rows import Rows
from plasticc_jax.score_output import FLAG_THRESHOLDS_KEY
from plasticc_jax.scoring import score_dataframe
from plasticc_jax.train import epoch_rows

pytestmark = pytest.mark.slow  # `make test-slow`: see the Makefile

SPEC = GridSpec(16, 32.0, 96.0, 5)


def _chunk(objects: list[dict]) -> Chunk:
    """A chunk of objects given as dicts of equal-length arrays (mjd, flux, detected)."""
    parts = {k: [] for k in ("object_id", "mjd", "passband", "flux", "flux_err", "detected")}
    starts, n = [], 0
    for i, obj in enumerate(objects):
        m = len(obj["mjd"])
        starts.append(n)
        n += m
        parts["object_id"].append(np.full(m, i + 1, np.int64))
        parts["mjd"].append(np.asarray(obj["mjd"], np.float64))
        parts["passband"].append(np.asarray(obj.get("passband", np.arange(m) % 6), np.int64))
        parts["flux"].append(np.asarray(obj.get("flux", np.ones(m)), np.float64))
        parts["flux_err"].append(np.ones(m))
        parts["detected"].append(np.asarray(obj.get("detected", np.zeros(m)), bool))
    rows = Rows(*(np.concatenate(parts[k]) for k in parts), 0)
    m = len(objects)
    return Chunk(rows, np.asarray(starts), np.zeros((m, 5), np.float32), np.full(m, 90))


def test_first_detection_flag_then_snr_then_first_point():
    days = np.arange(0.0, 40.0, 2.0) + 60000
    flagged = np.zeros(20, bool)
    flagged[[7, 3]] = True
    bright = np.ones(20)
    bright[12] = 9.0  # S/N 9 >= 5, no flag
    chunk = _chunk(
        [
            {"mjd": days, "detected": flagged},
            {"mjd": days, "flux": bright},
            {"mjd": days},
        ]
    )
    np.testing.assert_array_equal(early.first_detection(chunk) - 60000, [6.0, 24.0, 0.0])


def test_truncate_keeps_rows_up_to_the_cut_and_bad_rows():
    mjd = np.arange(10.0) + 60000
    mjd[8] = np.nan  # a bad row is kept whatever the cut: the object is rejected, not cleaned
    late = np.arange(10.0) + 60000
    late[9] = 2_459_750.5  # a JD given as MJD, after every cut: kept too
    chunk = _chunk([{"mjd": mjd}, {"mjd": np.arange(10.0) + 60100}, {"mjd": late}])
    cuts = np.array([60003.0, 60050.0, 60005.0])
    cut, present = early.truncate(chunk, cuts)
    assert present.tolist() == [True, False, True]  # the second has nothing before its cut
    assert cut.rows.mjd[:4].tolist() == [60000.0, 60001.0, 60002.0, 60003.0]
    assert np.isnan(cut.rows.mjd[4]) and len(cut.rows) == 5 + 7
    result = early.grid_cut(chunk, SPEC, cuts, np.array([1.0, 2.0, 3.0]))
    assert result.rejected_ids.tolist() == [1, 3, 2]  # bad rows first, then too few by the cut
    assert [gridding.rejection_reason(c, 5) for c in result.rejected_codes] == [
        "mjd missing or not finite",
        gridding.OUTSIDE_SPAN,
        "fewer than 5 observations",
    ]


def test_grid_stages_and_as_of_match_gridding_the_truncated_rows():
    rng = np.random.default_rng(0)
    objects = []
    for _ in range(4):
        mjd = np.sort(rng.uniform(60000, 60200, 60))
        detected = np.zeros(60, bool)
        detected[rng.integers(5, 50) :] = True
        objects.append({"mjd": mjd, "flux": rng.normal(10, 3, 60), "detected": detected})
    chunk = _chunk(objects)
    first = early.first_detection(chunk)
    result = early.grid_stages(chunk, SPEC, (5.0, 20.0))
    arrays = result.arrays
    assert arrays.complete.sum() == 4 and np.isinf(arrays.stage[0])
    # Each object's rows together, complete first, in the chunk's object order.
    assert (np.diff(arrays.object_id) >= 0).all()
    assert np.isinf(arrays.stage[np.r_[0, np.flatnonzero(np.diff(arrays.object_id)) + 1]]).all()
    for days in (5.0, 20.0):
        rows = arrays.take(np.flatnonzero(arrays.stage == days))
        manual = gridding.grid_chunk(early.truncate(chunk, first + days)[0], SPEC).arrays
        assert rows.object_id.tolist() == manual.object_id.tolist()
        np.testing.assert_array_equal(rows.flux, manual.flux)
        np.testing.assert_array_equal(rows.features, manual.features)
    # As of a date: the truncated rows, days counted from the first detection known then; an
    # object not detected by then (object 5: S/N 1, never flagged) is not scored.
    chunk = _chunk([*objects, {"mjd": np.sort(rng.uniform(60000, 60200, 60))}])
    result = early.grid_as_of(chunk, SPEC, 60100.0)
    truncated = early.truncate(chunk, np.full(5, 60100.0))[0]
    manual = gridding.grid_chunk(truncated, SPEC).arrays
    assert result.arrays.object_id.tolist() == [1, 2, 3, 4] == manual.object_id.tolist()[:4]
    np.testing.assert_array_equal(result.arrays.flux, manual.flux[:4])
    so_far = early.first_detection(truncated)[:4]
    np.testing.assert_allclose(result.arrays.stage, 60100.0 - so_far)
    assert result.rejected_ids.tolist() == [5]
    assert [gridding.REASONS[c] for c in result.rejected_codes] == [gridding.NOT_DETECTED]
    # Not detected yet, but with a bad value among its rows so far: the bad value is named.
    bad = np.ones(60)
    bad[3] = np.nan
    chunk = _chunk([*objects, {"mjd": np.sort(rng.uniform(60000, 60200, 60)), "flux": bad}])
    result = early.grid_as_of(chunk, SPEC, 60100.0)
    assert result.rejected_ids.tolist() == [5]
    assert [gridding.REASONS[c] for c in result.rejected_codes] == [
        "flux missing or not finite (NaN or inf)"
    ]
    # Or a duplicated observation: named too.
    mjd = np.sort(rng.uniform(60000, 60200, 60))
    mjd[4] = mjd[3]
    chunk = _chunk([*objects, {"mjd": mjd, "passband": np.zeros(60, np.int64)}])
    result = early.grid_as_of(chunk, SPEC, 60100.0)
    assert [gridding.REASONS[c] for c in result.rejected_codes] == [gridding.DUPLICATED]


def test_epoch_rows_show_each_object_once_at_a_random_stage():
    ids = np.repeat(np.arange(50), 3)
    picks = [epoch_rows(ids, np.random.default_rng(seed)) for seed in range(30)]
    for rows in picks:
        assert sorted(ids[rows]) == list(range(50))
    assert len({int(r) for rows in picks for r in rows}) == ids.size  # every stage gets its turn
    unique = np.arange(7)
    assert sorted(epoch_rows(unique, np.random.default_rng(0))) == list(range(7))


# ---------------------------------------------------------------------------------------------
# The shared runs: the evaluation of the early run (staged rows, partial light curves); as-of
# scoring and replay with the default run (early detection is opt-in, these work with any run).


def test_default_run_has_no_staged_rows(tiny_run):
    manifest = json.loads((tiny_run.dataset_dir / "manifest.json").read_text())
    assert manifest["stages"] == [] and set(manifest["stage_rows"]["train"]) == {"inf"}
    assert "early" not in tiny_run.metrics
    assert not (tiny_run.run_dir / "scores_stages.parquet").exists()
    assert not (tiny_run.run_dir / "reports" / "figures" / "early.png").exists()


def test_early_run_trains_and_fits_on_partial_curves(tiny_early_run, caplog):
    run = tiny_early_run
    scoring.Scorer.load(run.run_dir).warn_if_complete_only("replay")  # trained on partial ones
    assert "complete light curves only" not in caplog.text
    assert run.dataset_dir != run.workdir / tiny_config().data.dataset_dir
    manifest = json.loads((run.dataset_dir / "manifest.json").read_text())
    train_rows = load_split(run.dataset_dir, "train", partial=True)
    assert manifest["stage_rows"]["train"]["inf"] == int(train_rows.complete.sum())
    assert (
        sum(manifest["stage_rows"]["train"].values())
        == len(train_rows)
        > manifest["objects"]["train"]
    )
    # The detector's fit: each train known object's complete light curve and one partial one.
    _, one_each = np.unique(train_rows.object_id[~train_rows.complete], return_index=True)
    assert run.metrics["counts"]["train_known"] == int(train_rows.complete.sum()) + one_each.size


def test_evaluate_reports_early_detection(tiny_early_run):
    tiny_run = tiny_early_run
    early_metrics = tiny_run.metrics["early"]
    assert early_metrics["stages"] == ["5", "20", "complete"]
    staged = pd.read_parquet(tiny_run.run_dir / "scores_stages.parquet")
    assert set(staged["stage"]) == {5.0, 20.0, np.inf}
    test = tiny_run.table[tiny_run.table["split"] == "test"]
    complete = staged[np.isinf(staged["stage"])].set_index("object_id")
    assert sorted(complete.index) == sorted(test["object_id"])
    np.testing.assert_allclose(
        complete.loc[test["object_id"], "anomaly_score"], test["anomaly_score"]
    )
    # With complete light curves the early table is the main table's per-class AUROC.
    last = early_metrics["rows"][-1]
    for c in tiny_run.metrics["anomaly_classes_present"]:
        fused = tiny_run.metrics["methods"]["fused"]["per_class"][str(c)]["auroc"]
        assert last[f"auroc_{c}"] == pytest.approx(fused)
    assert (tiny_run.run_dir / "reports" / "figures" / "early.png").is_file()
    report = (tiny_run.run_dir / "report.md").read_text()
    assert "days since first detection" in report
    # The known flag rate also among the objects scorable then (a review: the share of all
    # known objects counts the unscorable as not flagged, which reads lower than an FPR).
    for row in early_metrics["rows"]:
        rate, scorable = row["known_flag_rate"], row["known_scorable"]
        line = next(x for x in report.splitlines() if x.startswith(f"| {row['stage']} |"))
        assert line.endswith(f" {rate:.2%} | {rate / scorable:.2%} |")


BEFORE = 3  # nights of each small replay input before its objects' first detection


def _detection_night(lcs: pd.DataFrame) -> pd.Series:
    """Each object's night of first detection (flagged, or S/N >= 5), as the replay's rule."""
    bright = (lcs["detected_bool"] == 1) | (lcs["flux"] / lcs["flux_err"] >= 5.0)
    return np.floor(lcs["mjd"] - 0.5)[bright].groupby(lcs["object_id"][bright]).min()


def _small_input(tiny_run, tmp_path: Path, n_objects: int = 12, n_nights: int = 12):
    """A few detected objects of the shared project's files (fast to replay): each from
    `BEFORE` nights before its first detection, for `n_nights` nights, its MJDs shifted by whole
    days so that every object is first detected on the same night."""
    raw = tiny_run.workdir / "data" / "raw"
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz")
    detection = _detection_night(lcs)
    ids = meta["object_id"][meta["object_id"].isin(detection.index)].iloc[:n_objects]
    lcs = lcs[lcs["object_id"].isin(ids)].copy()
    start = lcs["object_id"].map(detection) - BEFORE
    night = np.floor(lcs["mjd"] - 0.5)
    lcs = lcs[(night >= start) & (night < start + n_nights)]
    lcs["mjd"] -= lcs["object_id"].map(detection) - detection.min()
    meta_path = tmp_path / "meta.csv"
    meta[meta["object_id"].isin(ids)].to_csv(meta_path, index=False)
    return lcs.reset_index(drop=True), meta_path


def _replay(tiny_run, lcs: pd.DataFrame, meta: Path, out: Path, **kwargs):
    path = out.parent / f"{out.name}-input.csv"
    lcs.to_csv(path, index=False)
    return replay_lib.replay(tiny_run.run_dir, [path], [meta], out, **kwargs)


def _candidates(out: Path) -> pd.DataFrame:
    """The candidates folder read as one Parquet dataset partitioned by night."""
    table = pd.read_parquet(out / "candidates")
    table["night"] = table["night"].astype(np.int64)
    return table.sort_values(["night", "rank"], kind="stable").reset_index(drop=True)


def test_score_as_of_scores_what_was_known_then(tiny_run, tmp_path: Path, caplog):
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=10, n_nights=400)
    full = tmp_path / "lc.csv"
    lcs.to_csv(full, index=False)
    as_of = float(lcs["mjd"].min() + 200)
    cut = tmp_path / "cut.csv"
    lcs[lcs["mjd"] <= as_of].to_csv(cut, index=False)
    run = str(tiny_run.run_dir)
    base = ["score", "--run", run, "--metadata", str(meta)]
    assert cli.main([*base, "--lightcurves", str(full), "--as-of", str(as_of),
                     "--output", str(tmp_path / "as_of.parquet")]) == 0  # fmt: skip
    # The shared run is trained on complete light curves only: partial ones are warned of.
    assert "trained and calibrated on complete light curves only" in caplog.text
    assert "its flag threshold does not hold" in caplog.text
    # With a replay's thresholds, the threshold used is not the one said not to hold (a review).
    message = scoring.Scorer.load(run).complete_only_message("score", tmp_path / "replay")
    assert "does not hold" not in message
    assert f"the flags come from the thresholds of {tmp_path / 'replay'}" in message
    caplog.clear()
    assert (
        cli.main([*base, "--lightcurves", str(cut), "--output", str(tmp_path / "cut.parquet")]) == 0
    )
    assert "complete light curves only" not in caplog.text
    as_of_table = pd.read_parquet(tmp_path / "as_of.parquet")
    cut_table = pd.read_parquet(tmp_path / "cut.parquet")
    assert as_of_table["object_id"].tolist() == cut_table["object_id"].tolist()
    np.testing.assert_allclose(as_of_table["anomaly_score"], cut_table["anomaly_score"])
    assert "days_since_detection" in as_of_table and "days_since_detection" not in cut_table
    # The Python API scores as the command does (found by a review: it had no as_of, and its
    # caller's cut rows scored objects not detected yet too).
    with pytest.warns(UserWarning, match="trained and calibrated on complete light curves only"):
        api = score_dataframe(lcs, tiny_run.run_dir, pd.read_csv(meta), as_of=as_of)
    scored = api[api["rejected_reason"].isna()].reset_index(drop=True)
    assert scored["object_id"].tolist() == sorted(as_of_table["object_id"])
    expected = as_of_table.sort_values("object_id", ignore_index=True)
    for column in ("days_since_detection", "anomaly_score"):
        np.testing.assert_allclose(scored[column], expected[column], rtol=1e-6)
    assert list(api.columns[:2]) == ["object_id", "days_since_detection"]
    with pytest.raises(UserError, match=r"as_of \S+ looks like a Julian date"):
        score_dataframe(lcs, tiny_run.run_dir, pd.read_csv(meta), as_of=as_of + 2_400_000.5)
    for bad, message in ((np.nan, "give a finite MJD"), ("60000", "give a finite MJD"),
                         (10**400, r"100000000000\.\.\. is outside the survey")):  # fmt: skip
        with pytest.raises(UserError, match=rf"grid_lightcurves: as_of .*{message}"):
            # The gridding's own check too (a review).
            streaming.grid_lightcurves(lcs, pd.read_csv(meta), tiny_run.config.data, as_of=bad)
    # Before any detection (each object's first comes BEFORE nights after its first point):
    # every object is listed as not detected yet, none is scored.
    early_as_of = float(np.floor(lcs["mjd"].min() - 0.5) + 1.5)
    output = tmp_path / "before.parquet"
    assert cli.main([*base, "--lightcurves", str(full), "--as-of", str(early_as_of),
                     "--output", str(output)]) == 0  # fmt: skip
    assert pd.read_parquet(output).empty
    rejected = pd.read_csv(tmp_path / "before.rejected.csv")
    assert set(rejected["reason"]) == {gridding.NOT_DETECTED}
    assert set(rejected["object_id"]) == set(lcs["object_id"])  # observed by then or not
    with pytest.warns(UserWarning, match="complete light curves only"):
        api = score_dataframe(lcs, tiny_run.run_dir, pd.read_csv(meta), as_of=early_as_of)
    assert set(api["rejected_reason"]) == {gridding.NOT_DETECTED}


def test_replay_counts_add_up_and_match_scoring_by_hand(
    tiny_run, tmp_path: Path, caplog, monkeypatch
):
    lcs, meta = _small_input(tiny_run, tmp_path)
    labels = pd.read_csv(meta)
    unseen = int(lcs["object_id"].value_counts().index[0])  # the most observed: it is scored
    labels.loc[labels["object_id"] == unseen, "target"] = 991  # a class the run never saw
    labels.to_csv(meta, index=False)
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        manifest = _replay(tiny_run, lcs, meta, tmp_path / "out")
    assert "(is_anomaly) where scored: microlens-binary (991): 1" in caplog.text
    nights = manifest["nights"]
    night = np.floor(lcs["mjd"] - 0.5).astype(int)
    assert [n["night"] for n in nights] == sorted(set(night))
    assert manifest["finished_through"] == night.max()
    assert manifest["empty_nights"] == night.max() - night.min() + 1 - len(nights)
    for n in nights:
        assert n["objects_with_data"] == n["rescored"] + sum(n["rejected"].values())
        assert n["objects_with_data"] == lcs.loc[night == n["night"], "object_id"].nunique()
        assert n["seen"] == n["open"] + n["closed"]
    assert nights[-1]["seen"] == lcs["object_id"].nunique()
    assert sum(n["first_seen"] for n in nights) == lcs["object_id"].nunique()
    candidates = _candidates(tmp_path / "out")
    assert sum(n["rescored"] for n in nights) == len(candidates)
    known = candidates["target"].isin(tiny_run.config.data.known_classes)
    np.testing.assert_array_equal(candidates["is_anomaly"], ~known)
    assert (candidates["object_id"] == unseen).any() and not known.all()
    rejected = [pd.read_parquet(p) for p in (tmp_path / "out").glob("rejected/night=*/*")]
    assert sum(sum(n["rejected"].values()) for n in nights) == sum(len(r) for r in rejected)
    # Scored from the first detection on; the nights with data before it are listed.
    detection = _detection_night(lcs)
    assert (candidates["night"] >= candidates["object_id"].map(detection)).all()
    waiting = pd.concat(rejected)
    waiting = waiting[waiting["reason"] == gridding.NOT_DETECTED]
    assert len(waiting) == sum(n["rejected"].get(gridding.NOT_DETECTED, 0) for n in nights) > 0
    # A night's score is the object's score with the observations known that night.
    last = candidates.sort_values("night").groupby("object_id").tail(1).iloc[:3]
    for _, row in last.iterrows():
        known = lcs[(lcs["object_id"] == row["object_id"]) & (night <= row["night"])]
        path = tmp_path / f"known-{row['object_id']}.csv"
        known.to_csv(path, index=False)
        output = tmp_path / f"known-{row['object_id']}.parquet"
        args = ["score", "--run", str(tiny_run.run_dir), "--lightcurves", str(path)]
        assert cli.main([*args, "--metadata", str(meta), "--output", str(output)]) == 0
        assert pd.read_parquet(output)["anomaly_score"].iloc[0] == pytest.approx(
            row["anomaly_score"], rel=1e-5
        )
        assert row["n_obs"] == len(known)
    # Ranked within each night.
    for _, group in candidates.groupby("night"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert group["anomaly_score"].is_monotonic_decreasing
    # Each night's candidates name the checkpoint of their latents, as score tables do.
    parts = sorted((tmp_path / "out").glob("candidates/night=*/part-0.parquet"))
    run_checkpoint = provenance.table_checkpoint(tiny_run.run_dir / "scores.parquet")
    assert parts and run_checkpoint is not None
    assert all(provenance.table_checkpoint(p) == run_checkpoint for p in parts)
    assert provenance.table_checkpoint(tmp_path / "out" / "candidates") == run_checkpoint
    # The Gaussian-process features kept from earlier nights (`gp_features.FitCache`) change no
    # score: the same replay with every object's fitted again every night.
    grid_chunk = gridding.grid_chunk
    monkeypatch.setattr(
        gridding,
        "grid_chunk",
        lambda chunk, spec, cache=None, stop=None: grid_chunk(chunk, spec, None, stop),
    )
    _replay(tiny_run, lcs, meta, tmp_path / "refitted")
    pd.testing.assert_frame_equal(_candidates(tmp_path / "refitted"), candidates)


def test_nights_gridded_ahead_are_scored_the_same(tiny_run, tmp_path: Path):
    # A replay grids the next night with data in a thread while one is scored (`NightScorer`
    # as a context manager): each night's candidates, rejections and counts are those of nights
    # gridded one at a time, also when a night is skipped (its gridding ahead left unused).
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=8, n_nights=30)
    path = tmp_path / "input.csv"
    lcs.to_csv(path, index=False)
    scorer = scoring.Scorer.load(tiny_run.run_dir)

    def nights_scored(asked: list[int], ahead: bool) -> list:
        data = replay_input.ReplayInput(
            lightcurve_rows.read_files([path]), readers.read_metadata(meta), None
        )
        night_scorer = replay_nights.NightScorer(data, scorer)
        with night_scorer if ahead else contextlib.nullcontext():
            return [night_scorer.night(n) for n in asked]

    nights = sorted(set(np.floor(lcs["mjd"] - 0.5).astype(int)))
    asked = nights[:5] + nights[6:]  # one skipped
    one_at_a_time = nights_scored(asked, ahead=False)
    assert sum(counts["rescored"] for _, _, counts in one_at_a_time) > 0
    for (candidates, rejected, counts), (c, r, n) in zip(
        one_at_a_time, nights_scored(asked, ahead=True), strict=True
    ):
        pd.testing.assert_frame_equal(c, candidates)
        pd.testing.assert_frame_equal(r, rejected)
        assert n == counts


def test_a_replay_stopped_stops_the_fit_of_the_night_gridded_ahead(
    tiny_run, tmp_path: Path, monkeypatch
):
    # A Ctrl-C (or an error) while a night is scored leaves the context: the next night's fit,
    # in the gridding thread, stops at its next call instead of running to its end unused.
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=4, n_nights=20)
    path = tmp_path / "input.csv"
    lcs.to_csv(path, index=False)
    data = replay_input.ReplayInput(
        lightcurve_rows.read_files([path]), readers.read_metadata(meta), None
    )
    told_to_stop = []
    grid_chunk = gridding.grid_chunk

    def slow_ahead(chunk, spec, gp_cache=None, stop=None):
        if stop is None:  # the night asked for, gridded in the caller's thread
            return grid_chunk(chunk, spec, gp_cache)
        told_to_stop.append(stop.wait(timeout=30.0))
        raise gp_features.FitStopped

    monkeypatch.setattr(gridding, "grid_chunk", slow_ahead)
    nights = sorted(set(np.floor(lcs["mjd"] - 0.5).astype(int)))
    night_scorer = replay_nights.NightScorer(data, scoring.Scorer.load(tiny_run.run_dir))
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), night_scorer:
        night_scorer.night(nights[-2])  # the last night is gridded ahead meanwhile
        raise KeyboardInterrupt
    assert told_to_stop == [True]
    assert time.perf_counter() - t0 < 25.0


def test_replay_resumes_after_an_interruption(tiny_run, tmp_path: Path, monkeypatch, caplog):
    lcs, meta = _small_input(tiny_run, tmp_path)
    reference = _replay(tiny_run, lcs, meta, tmp_path / "ref")
    original = replay_nights.write_night
    calls = {"n": 0}

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 4:  # killed in the middle of the fourth night with data
            raise KeyboardInterrupt
        original(*args)

    monkeypatch.setattr(replay_nights, "write_night", failing)
    with pytest.raises(KeyboardInterrupt):
        _replay(tiny_run, lcs, meta, tmp_path / "out")
    stopped = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(stopped["nights"]) == 3
    monkeypatch.setattr(replay_nights, "write_night", original)
    with caplog.at_level(logging.INFO, logger="plasticc_jax.replay_nights"):
        resumed = _replay(tiny_run, lcs, meta, tmp_path / "out")
    assert resumed["nights"] == reference["nights"]
    assert resumed["empty_nights"] == reference["empty_nights"]
    # The log counts the nights this run replayed, not those before the interruption too.
    (summary,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replayed")]
    first, last = map(int, re.search(r"nights (\d+)-(\d+)", summary).groups())
    run_nights = last - first + 1
    assert f", {run_nights - (len(reference['nights']) - 3)} empty nights" in summary
    pd.testing.assert_frame_equal(_candidates(tmp_path / "out"), _candidates(tmp_path / "ref"))
    # Finished: a third run does nothing; other input is refused.
    assert _replay(tiny_run, lcs, meta, tmp_path / "out")["nights"] == reference["nights"]
    with pytest.raises(UserError, match=r"other inputs .*the same names, but other contents"):
        _replay(tiny_run, lcs.iloc[:-1], meta, tmp_path / "out")
    other_meta = tmp_path / "meta-other.csv"
    pd.read_csv(meta).assign(mwebv=0.5).to_csv(other_meta, index=False)
    with pytest.raises(UserError, match=r"other inputs .*metadata: \['meta.csv'\] then"):
        _replay(tiny_run, lcs, other_meta, tmp_path / "out")
    # What a kill leaves: a temporary file (removed on resume); a damaged manifest (refused).
    leftover = tmp_path / "out" / ".tmp-manifest.json.abc123"
    leftover.write_text("{")
    _replay(tiny_run, lcs, meta, tmp_path / "out")
    assert not leftover.exists()
    (tmp_path / "out" / "manifest.json").write_text('{"fingerprint": "x", "nig')
    with pytest.raises(UserError, match=r"manifest\.json is damaged"):
        _replay(tiny_run, lcs, meta, tmp_path / "out")


def test_replay_bad_input(tiny_run, tmp_path: Path, monkeypatch, caplog):
    lcs, meta = _small_input(tiny_run, tmp_path, n_nights=30)
    reference = _replay(tiny_run, lcs, meta, tmp_path / "ref")
    # Out of time order within objects: sorted, counted, same result.
    shuffled = lcs.sample(frac=1.0, random_state=0)
    manifest = _replay(tiny_run, shuffled, meta, tmp_path / "shuffled")
    multi = (lcs["object_id"].value_counts() > 1).sum()
    assert 0 < manifest["reordered_objects"] <= multi
    assert reference["reordered_objects"] == 0
    assert manifest["nights"] == reference["nights"]
    # A non-finite MJD: the object is rejected at load and listed.
    bad = lcs.copy()
    bad_id = int(bad["object_id"].iloc[0])
    bad.loc[bad.index[0], "mjd"] = np.nan
    manifest = _replay(tiny_run, bad, meta, tmp_path / "bad")
    assert manifest["rejected_at_load"] == {"mjd missing or not finite": 1}
    listed = pd.read_csv(tmp_path / "bad" / "rejected_at_load.csv")
    assert listed["object_id"].tolist() == [bad_id]
    assert manifest["objects"] == lcs["object_id"].nunique() - 1
    # A JD given as MJD (millions of nights away): rejected at load, the nights unchanged.
    jd = lcs.copy()
    jd.loc[jd.index[0], "mjd"] += 2_400_000.5
    manifest = _replay(tiny_run, jd, meta, tmp_path / "jd")
    assert manifest["rejected_at_load"] == {gridding.OUTSIDE_SPAN: 1}
    assert manifest["last_night"] == reference["last_night"]
    # A bad value before the first detection is the reason on the nights the object waits.
    nan_flux = lcs.copy()
    nan_flux.loc[nan_flux.index[0], "flux"] = np.nan
    manifest = _replay(tiny_run, nan_flux, meta, tmp_path / "nan-flux")
    first = int(np.floor(lcs["mjd"].iloc[0] - 0.5))
    entry = next(n for n in manifest["nights"] if n["night"] == first)
    assert entry["rejected"].get("flux missing or not finite (NaN or inf)") == 1
    assert entry["objects_with_data"] == entry["rescored"] + sum(entry["rejected"].values())
    # So is an observation given twice (same object, mjd and passband) before the detection.
    night = np.floor(lcs["mjd"] - 0.5)
    waiting = lcs[night < lcs["object_id"].map(_detection_night(lcs))].iloc[:1]
    twice = pd.concat([waiting, lcs], ignore_index=True)
    manifest = _replay(tiny_run, twice, meta, tmp_path / "twice")
    entry = next(n for n in manifest["nights"] if n["night"] == night[waiting.index[0]])
    assert entry["rejected"].get(gridding.DUPLICATED) == 1
    assert manifest["repeating_objects"] == 1 and reference["repeating_objects"] == 0
    # Every row twice (a file and its copy): said at the start, not only at the end.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        manifest = _replay(tiny_run, pd.concat([lcs, lcs]), meta, tmp_path / "all-twice")
    n = lcs["object_id"].nunique()
    assert manifest["repeating_objects"] == n
    assert f"{n} of the {n} objects have two rows of the same mjd and passband" in caplog.text
    assert "the same rows given twice" in caplog.text
    assert entry["objects_with_data"] == entry["rescored"] + sum(entry["rejected"].values())
    # Nothing left to replay (every MJD non-finite): an empty replay whose rejections are
    # listed, not a crash; a file of a header alone is refused, as `score` refuses it.
    manifest = _replay(tiny_run, bad.assign(mjd=np.nan), meta, tmp_path / "all-bad")
    assert manifest["objects"] == 0 and manifest["nights"] == []
    listed = pd.read_csv(tmp_path / "all-bad" / "rejected_at_load.csv")
    assert sorted(listed["object_id"]) == sorted(lcs["object_id"].unique())
    with pytest.raises(UserError, match="no light-curve rows"):
        _replay(tiny_run, lcs.iloc[:0], meta, tmp_path / "header")
    # A metadata object without a row, beside the others: listed, not lost.
    extra = pd.read_csv(meta)
    extra = pd.concat([extra, extra.iloc[:1].assign(object_id=999_999_999)])
    extra.to_csv(tmp_path / "meta-extra.csv", index=False)
    manifest = _replay(tiny_run, lcs, tmp_path / "meta-extra.csv", tmp_path / "extra")
    assert manifest["rejected_at_load"] == {"metadata without light curve": 1}
    assert manifest["nights"] == reference["nights"]
    # Only some objects (`--split`): the others are counted as left out, not listed as lost.
    ids = lcs["object_id"].unique()
    manifest = _replay(tiny_run, lcs, meta, tmp_path / "some", objects=ids[:5])
    assert manifest["objects"] == 5 and manifest["left_out_objects"] == ids.size - 5
    assert manifest["rejected_at_load"] == {}
    # A metadata object without rows outside the split is left out too, not lost (a review).
    manifest = _replay(tiny_run, lcs, tmp_path / "meta-extra.csv", tmp_path / "some-extra",
                       objects=ids[:5])  # fmt: skip
    assert manifest["left_out_objects"] == ids.size - 5 + 1
    assert manifest["rejected_at_load"] == {}
    # A user mistake about the output folder: one clear error, before any work.
    (tmp_path / "a-file").write_text("")
    for output in [tmp_path / "a-file", tmp_path / "a-file" / "sub"]:
        with pytest.raises(UserError, match="a-file is a file"):
            replay_lib.replay(tiny_run.run_dir, [tmp_path / "ref-input.csv"], [meta], output)
    # A folder holding another command's output (a Parquet dataset): refused, left as it was.
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "part-0.parquet").write_bytes(b"PAR1")
    (tmp_path / "scores" / ".a.parquet.lock").write_bytes(b"")  # named first, it hid the rest
    with pytest.raises(UserError, match=r"holding other files \(part-0.parquet\)"):
        _replay(tiny_run, lcs, meta, tmp_path / "scores")
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == [
        ".a.parquet.lock",
        "part-0.parquet",
    ]

    # A folder whose lock file (beside it) this user may not create: one line, before the run
    # is read (root may write anywhere, so the file system's answer is simulated).
    locked = tmp_path / "locked"
    monkeypatch.setattr(io_utils.os, "access", lambda path, mode: Path(path) != locked.parent)
    monkeypatch.setattr(scoring.Scorer, "load", None)  # reading the run would fail
    with pytest.raises(UserError, match=r"lock file .*\.locked\.lock cannot be created"):
        _replay(tiny_run, lcs, meta, locked)
    monkeypatch.undo()
    # An object first seen late, after empty nights: new that night, nights between counted.
    late = lcs.copy()
    late_id = int(late["object_id"].iloc[-1])
    late.loc[late["object_id"] == late_id, "mjd"] += 100.0
    manifest = _replay(tiny_run, late, meta, tmp_path / "late")
    first_night = int(np.floor(late.loc[late["object_id"] == late_id, "mjd"].min() - 0.5))
    entry = next(n for n in manifest["nights"] if n["night"] == first_night)
    assert entry["first_seen"] == 1 and entry["seen"] == lcs["object_id"].nunique()
    span = manifest["last_night"] - manifest["first_night"] + 1
    assert manifest["empty_nights"] == span - len(manifest["nights"]) > 50
    # Closing: after a gap longer than close_after, the object's later data is rejected.
    gap = late.copy()
    gap_id = int(gap["object_id"].iloc[0])
    rows = gap["object_id"] == gap_id
    later = rows & (gap["mjd"] > gap.loc[rows, "mjd"].median())
    gap.loc[later, "mjd"] += 100.0
    manifest = _replay(tiny_run, gap, meta, tmp_path / "closed", close_after=30)
    closed = [n for n in manifest["nights"] if n["rejected"].get("object closed")]
    reopened = np.floor(gap.loc[later, "mjd"] - 0.5).astype(int)
    assert [n["night"] for n in closed] == sorted(set(reopened))
    for n in manifest["nights"]:
        assert n["objects_with_data"] == n["rescored"] + sum(n["rejected"].values())
        assert n["seen"] == n["open"] + n["closed"]
    assert manifest["nights"][-1]["closed"] >= 1
    for days in (0, 0.5, float("inf"), 1e20):
        with pytest.raises(UserError, match="a number of nights from 1 to 36525"):
            _replay(tiny_run, lcs, meta, tmp_path / "zero", close_after=days)
    # An input where the replay writes: refused, not overwritten.
    (tmp_path / "clash").mkdir()
    lcs.to_csv(tmp_path / "clash" / "rejected_at_load.csv", index=False)
    with pytest.raises(UserError, match="would overwrite the input"):
        replay_lib.replay(
            tiny_run.run_dir,
            [tmp_path / "clash" / "rejected_at_load.csv"],
            [meta],
            tmp_path / "clash",
        )


def test_a_replay_input_written_to_while_it_is_read_is_refused(tiny_run, tmp_path, monkeypatch):
    """As `score` (a review: a copy still being written was scored as far as it had got)."""
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=4, n_nights=5)
    path = tmp_path / "lc.csv"
    lcs.to_csv(path, index=False)

    def growing(read):
        def read_and_grow(*args, **kwargs):
            result = read(*args, **kwargs)  # the copy writes on meanwhile
            os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))
            return result

        return read_and_grow

    monkeypatch.setattr(lightcurve_rows, "read_files", growing(lightcurve_rows.read_files))
    with pytest.raises(UserError, match=f"{path} changed while the run was going"):
        replay_lib.replay(tiny_run.run_dir, [path], [meta], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written, the folder it made removed
    monkeypatch.undo()
    monkeypatch.setattr(replay_groups, "partition_rows", growing(replay_groups.partition_rows))
    with pytest.raises(UserError, match=f"{path} changed while the run was going"):
        replay_lib.replay(tiny_run.run_dir, [path], [meta], tmp_path / "grouped", groups=2)
    assert not (tmp_path / "grouped" / replay_groups.GROUPS).exists()  # no partition kept


def test_replay_cli(tiny_run, tmp_path: Path, capsys, caplog):
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=4, n_nights=5)
    path = tmp_path / "lc.csv"
    lcs.to_csv(path, index=False)
    args = ["replay", str(path), "--run", str(tiny_run.run_dir), "--metadata", str(meta)]
    assert cli.main([*args, "--output", str(tmp_path / "out")]) == 0
    assert "replayed through night" in capsys.readouterr().out
    # Nothing scored: the warning says why (found by a review: it always said "the same rows
    # given twice, say").
    first = int(np.floor(lcs["mjd"].min() - 0.5))
    caplog.clear()
    assert cli.main([*args, "--output", str(tmp_path / "o1"), "--last-night", str(first)]) == 0
    (warning,) = [r.message for r in caplog.records if "no object was scored" in r.message]
    assert "(objects by reason: 4 fewer than 5 observations; see " in warning, warning
    # Every object rejected at load (a Julian date for an MJD): said so, not "night -1".
    jd = tmp_path / "jd.csv"
    lcs.assign(mjd=lcs["mjd"] + 2_400_000.5).to_csv(jd, index=False)
    rejected_all = ["replay", str(jd), *args[2:], "--output", str(tmp_path / "all-rejected")]
    assert cli.main(rejected_all) == 0
    out = capsys.readouterr().out
    assert "nothing replayed: no observations to replay (4 objects rejected at load: " in out
    assert cli.main([*args, "--output", str(tmp_path / "o2"), "--close-after", "-1"]) == 2
    # A night before the data's first (a count of nights, not a night): refused, nothing written.
    assert cli.main([*args, "--output", str(tmp_path / "o3"), "--last-night", "3"]) == 2
    assert "--last-night 3: before the input's first night" in capsys.readouterr().err
    assert not (tmp_path / "o3" / "manifest.json").exists()
    # A Julian date (found by a review: the whole input was replayed).
    assert cli.main([*args, "--output", str(tmp_path / "o3"), "--last-night", "2459700"]) == 2
    assert "--last-night 2459700 looks like a Julian date" in capsys.readouterr().err
    replay_nights.check_last_night(10**400, 0, 1)  # after the last night: accepted, no overflow
    assert not (tmp_path / "o3").exists()  # not even the folder it made (a review)
    assert cli.main([*args, "--output", str(tmp_path / "o4"), "--groups", "0"]) == 2
    assert "--groups 0: give a number from 1 to 1024" in capsys.readouterr().err
    assert cli.main([*args, "--output", str(tmp_path / "o5"), "--groups", "2"]) == 0
    grouped = json.loads((tmp_path / "o5" / "manifest.json").read_text())
    whole = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert grouped["groups"] == 2 and grouped["nights"] == whole["nights"]


def test_replay_thresholds_from_a_replay_of_the_val_split(tiny_early_run, tmp_path, capsys, caplog):
    """`--threshold-from`: thresholds set on the val split's replay, per age and depth."""
    run = tiny_early_run
    raw = run.workdir / "data" / "raw"
    meta = raw / "plasticc_train_metadata.csv.gz"
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    detection = _detection_night(lcs)
    night = np.floor(lcs["mjd"] - 0.5)
    lcs = lcs[night <= lcs["object_id"].map(detection).fillna(np.inf) + 60]  # 60 nights each
    path = tmp_path / "lc.csv"
    lcs.to_csv(path, index=False)

    def replay(output: Path, split: str, *more: str) -> int:
        args = ["replay", str(path), "--run", str(run.run_dir), "--metadata", str(meta)]
        args += ["--workdir", str(run.workdir), "--split", split, "--output", str(output)]
        return cli.main([*args, *more])

    val, test = tmp_path / "val", tmp_path / "test"
    assert replay(val, "val") == 0
    assert json.loads((val / "manifest.json").read_text())["split"] == "val"
    assert replay(test, "test", "--threshold-from", str(val)) == 0
    known = pd.read_parquet(val / "candidates")
    # The candidates name the split replayed (they said "new": a review).
    assert set(known["split"]) == {"val"} and set(_candidates(test)["split"]) == {"test"}
    known = known[~known["is_anomaly"]]
    threshold = AgeThreshold.fit(
        known["anomaly_score"],
        known["days_since_detection"],
        known[DEPTH_FEATURE],
        run.config.eval.target_fpr,
    )
    manifest = json.loads((test / "manifest.json").read_text())
    assert AgeThreshold.from_json(manifest["threshold"]) == threshold
    assert manifest["threshold_from"] == str(val)
    flagged = _candidates(test)
    expected = threshold.flag(
        flagged["anomaly_score"], flagged["days_since_detection"], flagged[DEPTH_FEATURE]
    )
    np.testing.assert_array_equal(flagged["flagged"], expected)
    assert sum(n["flagged"] for n in manifest["nights"]) == expected.sum()
    # `score --as-of` flags by the same thresholds, at each object's age on that date.
    as_of = float(json.loads((val / "manifest.json").read_text())["first_night"]) + 40
    score = ["score", "--run", str(run.run_dir), "--lightcurves", str(path), "--metadata"]
    score += [str(meta), "--as-of", str(as_of), "--output"]
    scored = tmp_path / "as-of.parquet"
    with caplog.at_level("INFO", logger="plasticc_jax"):
        assert cli.main([*score, str(scored), "--threshold-from", str(val)]) == 0
    assert f"flagged by the thresholds from {val}" in caplog.text
    table = pd.read_parquet(scored)
    expected = threshold.flag(
        table["anomaly_score"], table["days_since_detection"], table[DEPTH_FEATURE]
    )
    np.testing.assert_array_equal(table["flagged"], expected)
    recorded = pq.read_schema(scored).metadata[FLAG_THRESHOLDS_KEY]
    assert AgeThreshold.from_json(json.loads(recorded)) == threshold
    assert cli.main([*score, str(tmp_path / "x.parquet"), "--threshold-from", str(test)]) == 2
    assert "is a replay of the test split" in capsys.readouterr().err
    # A val replay that closed objects: `score` has no --close-after to match it (found by a
    # review: it was told to give both the same).
    closed = tmp_path / "closed"
    shutil.copytree(val, closed)
    manifest = json.loads((closed / "manifest.json").read_text())
    (closed / "manifest.json").write_text(json.dumps({**manifest, "close_after_days": 20.0}))
    assert cli.main([*score, str(tmp_path / "y.parquet"), "--threshold-from", str(closed)]) == 2
    assert "replay the val split without --close-after" in capsys.readouterr().err
    capsys.readouterr()
    # Refused: a replay not of the val split, no replay at all, an unfinished one, a replay
    # with another run; resuming a replay with other thresholds.
    assert replay(tmp_path / "a", "test", "--threshold-from", str(test)) == 2
    assert "is a replay of the test split, not of the run's val split" in capsys.readouterr().err
    (tmp_path / "no-replay").mkdir()
    assert replay(tmp_path / "b", "test", "--threshold-from", str(tmp_path / "no-replay")) == 2
    assert "not a replay's output folder" in capsys.readouterr().err
    first = int(json.loads((val / "manifest.json").read_text())["first_night"])
    assert replay(tmp_path / "part", "val", "--last-night", str(first + 5)) == 0
    assert replay(tmp_path / "c", "test", "--threshold-from", str(tmp_path / "part")) == 2
    assert "that replay is unfinished" in capsys.readouterr().err
    assert replay(tmp_path / "d", "test", "--last-night", str(first + 5)) == 0
    assert replay(tmp_path / "d", "test", "--threshold-from", str(val)) == 2
    assert f"threshold_from: None then, {val} now" in capsys.readouterr().err
    other = ["replay", str(path), "--run", str(run.run_dir.parent / "tiny-rare")]
    other += ["--metadata", str(meta), "--output", str(tmp_path / "e")]
    assert cli.main([*other, "--threshold-from", str(val)]) == 2
    assert "a replay with another run" in capsys.readouterr().err
    assert replay(tmp_path / "f", "test", "--close-after", "30", "--threshold-from", str(val)) == 2
    err = capsys.readouterr().err
    assert "was replayed without --close-after and this replay has --close-after 30.0" in err
    assert replay(val / "inside", "test", "--threshold-from", str(val)) == 2
    assert "lies in --threshold-from" in capsys.readouterr().err
    # A val replay of part of the split, or whose candidates are not its manifest's.
    ids = load_split(run.dataset_dir, "val").object_id
    path_all = path
    path = tmp_path / "some.csv"
    lcs[lcs["object_id"] != ids[0]].to_csv(path, index=False)
    assert replay(tmp_path / "some", "val") == 0
    assert replay(tmp_path / "g", "test", "--threshold-from", str(tmp_path / "some")) == 2
    assert f"of the val split's {len(np.unique(ids))} objects" in capsys.readouterr().err
    path = path_all
    shutil.copytree(val, tmp_path / "damaged")
    shutil.rmtree(next((tmp_path / "damaged" / "candidates").iterdir()))
    assert replay(tmp_path / "h", "test", "--threshold-from", str(tmp_path / "damaged")) == 2
    assert "its candidates are not the ones its manifest counts" in capsys.readouterr().err


def _same_replay(grouped: Path, whole: Path) -> None:
    """A replay in groups wrote what the replay of every object at once wrote."""
    a, b = (json.loads((out / "manifest.json").read_text()) for out in (grouped, whole))
    assert a["groups"] > 1 and b["groups"] == 1
    for key in set(b) - {"fingerprint", "groups", "inputs"}:  # inputs: other file names
        assert a[key] == b[key], key
    left, right = _candidates(grouped), _candidates(whole)
    assert left["object_id"].tolist() == right["object_id"].tolist()
    np.testing.assert_allclose(left["anomaly_score"], right["anomaly_score"], rtol=1e-6)
    pd.testing.assert_frame_equal(
        left.drop(columns=left.select_dtypes("float").columns),
        right.drop(columns=right.select_dtypes("float").columns),
    )
    for name in ("rejected_at_load.csv",):
        frames = [pd.read_csv(out / name).sort_values("object_id") for out in (grouped, whole)]
        pd.testing.assert_frame_equal(*(f.reset_index(drop=True) for f in frames))
    rejected = [pd.read_parquet(out / "rejected") for out in (grouped, whole)]
    rejected = [r.sort_values(["night", "object_id"]).reset_index(drop=True) for r in rejected]
    pd.testing.assert_frame_equal(*rejected, check_categorical=False)
    assert not (grouped / "groups").exists()  # the working folder, removed at the end


def test_replay_in_groups_writes_what_the_whole_replay_writes(
    tiny_run, tmp_path: Path, monkeypatch
):
    lcs, meta = _small_input(tiny_run, tmp_path, n_objects=12, n_nights=40)
    # What the merge must carry: objects rejected at load (a non-finite MJD; metadata without
    # a light curve), closed objects, objects waiting for their first detection.
    lcs.loc[lcs.index[0], "mjd"] = np.nan
    gap_id = int(lcs["object_id"].iloc[-1])
    later = (lcs["object_id"] == gap_id) & (lcs["mjd"] > lcs["mjd"].median())
    lcs.loc[later, "mjd"] += 60.0
    extra = pd.read_csv(meta)
    pd.concat([extra, extra.iloc[:1].assign(object_id=999_999_999)]).to_csv(meta, index=False)
    whole = _replay(tiny_run, lcs, meta, tmp_path / "whole", close_after=20)
    assert whole["rejected_at_load"] and any(n["closed"] for n in whole["nights"])
    grouped = _replay(tiny_run, lcs, meta, tmp_path / "grouped", close_after=20, groups=3)
    assert grouped["nights"] == whole["nights"]
    _same_replay(tmp_path / "grouped", tmp_path / "whole")
    # Two groups at once, each in a process of its own: the same.
    _replay(tiny_run, lcs, meta, tmp_path / "jobs", close_after=20, groups=3, jobs=2)
    _same_replay(tmp_path / "jobs", tmp_path / "whole")
    for groups, jobs in ((1, 2), (3, 4), (3, 0)):
        with pytest.raises(UserError, match=f"--jobs {jobs}: give a number from 1 to --groups"):
            _replay(tiny_run, lcs, meta, tmp_path / "bad-jobs", groups=groups, jobs=jobs)
    # SIGTERM to the command while its processes replay: they are stopped with it, and the
    # same command resumes to the same output.
    out, path = tmp_path / "jobs-stopped", tmp_path / "jobs-stopped-input.csv"  # as `_replay`
    lcs.to_csv(path, index=False)
    argv = [sys.executable, "-m", "plasticc_jax", "replay", str(path), "--run"]
    argv += [str(tiny_run.run_dir), "--metadata", str(meta), "--output", str(out)]
    argv += ["--close-after", "20", "--groups", "3", "--jobs", "2"]
    command = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _workers(command.pid)) < 2:
            assert time.monotonic() < deadline and command.poll() is None
            time.sleep(0.05)
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 143, command.stderr.read()
        assert not any(running(w) for w in workers)
    finally:
        command.kill()
        command.stderr.close()
    assert not (out / "manifest.json").exists()  # stopped before the merge
    _replay(tiny_run, lcs, meta, out, close_after=20, groups=3, jobs=2)  # the CLI's 20.0
    _same_replay(out, tmp_path / "whole")
    # A process that finds the run changed since the replay began (evaluated again) refuses.
    job = replay_nights.Job([], [], tmp_path / "jobs", "x", None, None, None, 3, model="other")
    with pytest.raises(UserError, match="changed during the replay"):
        replay_groups._replay_groups_in_process(tiny_run.run_dir, job, {0: pd.DataFrame()})
    # An object's rows with the rows of another, rejected at load and of another group, between
    # them: counted as reordered, as all at once (its rows are consecutive in its group's file).
    ids = lcs["object_id"].unique()
    kept = next(i for i in ids[1:] if replay_groups.group_of(np.array([i]), 3)[0] != 0)
    bad = next(
        i
        for i in ids[1:]
        if replay_groups.group_of(np.array([i]), 3)[0]
        != (replay_groups.group_of(np.array([kept]), 3)[0])
    )
    rows_kept = lcs[lcs["object_id"] == kept]
    half = len(rows_kept) // 2
    spread = pd.concat(
        [
            lcs[~lcs["object_id"].isin([kept, bad])],
            rows_kept.iloc[:half],
            lcs[lcs["object_id"] == bad].assign(mjd=np.nan),
            rows_kept.iloc[half:],
        ]
    )
    whole_spread = _replay(tiny_run, spread, meta, tmp_path / "whole-spread", close_after=20)
    assert whole_spread["reordered_objects"] == 1
    _replay(tiny_run, spread, meta, tmp_path / "grouped-spread", close_after=20, groups=3)
    _same_replay(tmp_path / "grouped-spread", tmp_path / "whole-spread")
    # Rows in time order (objects interleaved, as an alert stream): each object counted as
    # reordered, as all at once.
    by_time = lcs.sort_values("mjd", kind="stable")
    whole_by_time = _replay(tiny_run, by_time, meta, tmp_path / "whole-time", close_after=20)
    assert whole_by_time["reordered_objects"] > whole["reordered_objects"]
    _replay(tiny_run, by_time, meta, tmp_path / "grouped-time", close_after=20, groups=3)
    _same_replay(tmp_path / "grouped-time", tmp_path / "whole-time")

    # Killed in a group's replay, then in the merge (a night written to the output itself):
    # resumed, the same output.
    original = replay_nights.write_night
    for phase in ("group", "merge"):
        out = tmp_path / f"killed-in-{phase}"
        calls = {"n": 0}

        def failing(folder, *args, phase=phase, out=out, calls=calls):
            calls["n"] += (folder == out) == (phase == "merge")
            if calls["n"] == 2:
                raise KeyboardInterrupt
            original(folder, *args)

        monkeypatch.setattr(replay_nights, "write_night", failing)
        with pytest.raises(KeyboardInterrupt):
            _replay(tiny_run, lcs, meta, out, close_after=20, groups=3)
        monkeypatch.setattr(replay_nights, "write_night", original)
        assert (out / "manifest.json").exists() == (phase == "merge")
        if phase == "group":  # a refused --last-night keeps the groups' work
            with pytest.raises(UserError, match="before the input's first night"):
                _replay(tiny_run, lcs, meta, out, close_after=20, groups=3, last_night=3)
            assert (out / "groups" / "group-0" / "manifest.json").is_file()
        if phase == "group":  # other settings, refused naming them; the replay all at once too
            with pytest.raises(UserError, match=r"groups: 3 then, 2 now"):
                _replay(tiny_run, lcs, meta, out, close_after=20, groups=2)
            with pytest.raises(UserError, match="the working folder of a replay in groups"):
                _replay(tiny_run, lcs, meta, out, close_after=20)
        _replay(tiny_run, lcs, meta, out, close_after=20, groups=3)
        _same_replay(out, tmp_path / "whole")
    # Killed while its working folder was removed, at the end: the next run removes the rest.
    out = tmp_path / "grouped"
    (out / "groups" / "group-0").mkdir(parents=True)
    _replay(tiny_run, lcs, meta, out, close_after=20, groups=3)
    (out / ".groups-removed" / "group-1").mkdir(parents=True)
    _replay(tiny_run, lcs, meta, out, close_after=20, groups=3)
    _same_replay(out, tmp_path / "whole")
    assert not (out / ".groups-removed").exists()
    # A --last-night before the first night: refused, nothing left behind.
    with pytest.raises(UserError, match="before the input's first night"):
        _replay(tiny_run, lcs, meta, tmp_path / "too-early", groups=3, last_night=3)
    assert not (tmp_path / "too-early").exists()
    # A mistake in the metadata: told before the partition, so the corrected file replays
    # (found by an audit: the partition left behind refused it as another replay's).
    fixed = meta.read_text()
    meta.write_text(fixed + fixed.splitlines()[1] + "\n")  # an object twice
    with pytest.raises(UserError, match="appears more than once"):
        _replay(tiny_run, lcs, meta, tmp_path / "bad-meta", close_after=20, groups=3)
    assert not (tmp_path / "bad-meta" / "groups").exists()
    meta.write_text(fixed)
    _replay(tiny_run, lcs, meta, tmp_path / "bad-meta", close_after=20, groups=3)
    _same_replay(tmp_path / "bad-meta", tmp_path / "whole")
    # Stopped at a night, then continued; other settings refused.
    out = tmp_path / "stopped"
    middle = whole["nights"][len(whole["nights"]) // 2]["night"]
    _replay(tiny_run, lcs, meta, out, close_after=20, groups=3, last_night=middle)
    assert (out / "groups").is_dir()
    with pytest.raises(UserError, match="before the input's first night"):  # its work is kept
        _replay(tiny_run, lcs, meta, out, close_after=20, groups=3, last_night=3)
    assert (out / "groups" / "group-0" / "manifest.json").is_file()
    with pytest.raises(UserError, match=r"groups: 3 then, 2 now"):
        _replay(tiny_run, lcs, meta, out, close_after=20, groups=2)
    _replay(tiny_run, lcs, meta, out, close_after=20, groups=3)
    _same_replay(out, tmp_path / "whole")
    for groups in (0, 5000):
        with pytest.raises(UserError, match="--groups"):
            _replay(tiny_run, lcs, meta, tmp_path / "bad-groups", groups=groups)
