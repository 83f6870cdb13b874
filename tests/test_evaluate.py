"""Pieces of the evaluation stage: per-method metrics, the report, the score table, baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import running, tiny_config

from plasticc_jax import evaluate, losses, metrics, report, scoring
from plasticc_jax.errors import UserError


def test_method_metrics_per_class_and_realistic():
    rng = np.random.default_rng(0)
    target = np.r_[np.full(900, 90), np.full(50, 6), np.full(50, 64)]
    is_anomaly = target != 90
    scores = rng.normal(size=1000) + np.where(target == 6, 3.0, 0.0)  # class 6 separable
    out = metrics.method_metrics(scores, target, is_anomaly, (6, 64, 95), 0.01, 20, seed=0)
    assert set(out["per_class"]) == {"6", "64"}  # 95 absent from the test split
    assert out["per_class"]["6"]["auroc"] > 0.95
    assert 0.35 < out["per_class"]["64"]["auroc"] < 0.65
    assert out["mean_class_auroc"] == pytest.approx(
        (out["per_class"]["6"]["auroc"] + out["per_class"]["64"]["auroc"]) / 2
    )
    assert out["realistic"]["n_anomalies"] == 9  # round(0.01 * 900 / 0.99)
    assert len(out["realistic"]["std"]) == len(out["overall"])


def test_markdown_tables_and_json():
    methods = {
        name: {
            "overall": {
                k: 0.5
                for k in (
                    "auroc",
                    "ap",
                    "recall_top_1pct",
                    "recall_top_5pct",
                    "recall_top_15pct",
                    "recall_top_100",
                    "recall_top_1000",
                    "recall_top_2000",
                    "purity_top_100",
                    "precision_at_n_anomalies",
                )
            },
            "per_class": {"6": {"auroc": 0.75, "ap": math.nan}},
            "mean_class_auroc": 0.75,
        }
        for name in ("fused", "recon_chi2")
    }
    methods["fused"]["per_class"]["6"]["auroc_ci"] = [0.7, 0.8]
    result = {
        "anomaly_classes_present": [6],
        "methods": methods,
        "realistic_anomaly_rate": 0.01,
        "detector": {"fusion": {"recon_chi2": 1.0}},
    }
    text = report.markdown_tables(result)
    assert (
        "| **anomaly score (fused)** | 0.750 | 0.500 | 0.500 | 0.750 [0.700, 0.800] | n/a |" in text
    )
    assert text.count("\n| reconstruction chi2 (weight 1.000) |") == 2
    assert "best possible" not in text  # an older metrics.json: no ceiling row
    assert json.loads(json.dumps(report.jsonable({"x": math.nan, "y": np.float32(2)}))) == {
        "x": None,
        "y": 2.0,
    }


def test_evaluate_without_a_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="make train"):
        evaluate.evaluate(tiny_config(), tmp_path)


def test_evaluate_without_figures(tiny_run, tmp_path):
    """The shared run is evaluated with `eval.figures=false`: no PNG, a report that says so;
    and such an evaluation removes the figures of an earlier one."""
    assert not list((tiny_run.run_dir / "reports" / "figures").glob("*.png"))
    assert tiny_run.metrics["figures"] == []
    assert (
        "No figures: evaluated with `eval.figures = false`."
        in (tiny_run.run_dir / "report.md").read_text()
    )
    stale = tmp_path / "figures"
    stale.mkdir()
    (stale / "roc.png").write_bytes(b"old")
    (stale / "notes.txt").write_text("kept")
    report.remove_figures(stale)
    assert sorted(p.name for p in stale.iterdir()) == ["notes.txt"]


def test_reduced_chi2_by_hand():
    shape = (2, 6, 4)
    flux = np.zeros(shape, np.float32)
    flux_err = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    # Object 0: two observed cells, residuals 3 and 1, variances 9 (err 0 + sigma 3) and 1.
    flux[0, 1, 0], flux[0, 2, 3] = 3.0, 1.0
    mask[0, 1, 0] = mask[0, 2, 3] = True
    sigma = np.ones(shape, np.float32)
    sigma[0, 1, 0] = 3.0
    flux[0, 5, 2] = 100.0  # unobserved: ignored
    flux_err[0, 4, 1] = np.nan  # unobserved: ignored, even NaN
    chi2 = losses.reduced_chi2(flux, flux_err, mask, np.zeros(shape, np.float32), sigma)
    np.testing.assert_allclose(chi2, [(9 / 9 + 1 / 1) / 2, 0.0])  # object 1: nothing observed


def test_ranks_are_within_each_split_with_ties_in_table_order():
    scores = np.array([0.5, 2.0, 0.5, 1.0, 3.0, 0.1])
    assert scoring.ranks(scores).tolist() == [4, 2, 5, 3, 1, 6]
    table = pd.DataFrame(
        {
            "split": ["a", "b", "a", "b", "a", "b"],
            "anomaly_score": scores,
            "flagged": False,
        }
    )
    scoring.insert_rank(table)
    assert list(table.columns) == ["split", "anomaly_score", "rank", "flagged"]
    assert table["rank"].tolist() == [2, 1, 3, 2, 1, 3]


def test_the_report_states_the_realistic_rate_reached(tiny_run):
    """Found by an audit: report.md gave the rate asked for (1%), not the one the draws reached
    (a tiny test split cannot go below one anomaly a draw)."""
    drawn = tiny_run.metrics["methods"]["fused"]["realistic"]
    report = (tiny_run.run_dir / "report.md").read_text()
    assert f"reached {drawn['rate']:.1%} with {drawn['n_anomalies']} anomalies a draw" in report
    assert "classification head" in report and "bootstrap intervals" in report


def test_the_report_says_what_its_numbers_can_reach(tiny_run):
    """Found by an audit: a recall in the top 1% that is at its ceiling read as poor, a score
    beyond the val objects read as a measured frequency, the anomalies' nature went unsaid."""
    metrics_ = tiny_run.metrics
    labels = tiny_run.table.query("split == 'test'")["is_anomaly"].to_numpy(bool)
    best = metrics_["best_possible"]
    k = metrics.top_k(labels.size, 0.01)
    assert best["recall_top_1pct"] == min(k, labels.sum()) / labels.sum()
    assert best["auroc"] == best["ap"] == best["recall_top_2000"] == 1.0
    text = (tiny_run.run_dir / "report.md").read_text()
    ceiling = f"| *best possible (every anomaly ranked first)* | {best['recall_top_1pct']:.3f} |"
    assert ceiling in text
    assert "standing in for unknown ones" in text and "fitted exponential tail" in text
    for group, n in metrics_["counts"]["val_known_per_group"].items():
        assert f"{math.log10(n + 1):.1f} ({group}, {n} objects)" in text
    assert [report._range(*r) for r in ([None, 1.3], [1.3, 1.7], [1.7, None], [None, None])] == [
        "< 1.30",
        "1.30 - 1.70",
        "> 1.70",
        "",
    ]


@pytest.mark.slow
def test_the_figure_process_ends_with_a_killed_evaluate() -> None:
    """Found by an audit: `kill -9` of evaluate left its figure process waiting for ever."""
    import subprocess
    import sys
    import time

    code = (
        "import os, time\n"
        "from plasticc_jax.figures import FigureProcess\n"
        "process = FigureProcess()\n"
        "print(process.submit(os.getpid).result(), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: no clean-up of any kind
    parent.wait()

    deadline = time.monotonic() + 30
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(child), "the figure process outlived its parent"


@pytest.mark.slow
def test_an_unfinished_training_is_evaluated_as_such(tiny_run, tmp_path, monkeypatch, caplog):
    """Found by an audit: a run killed at epoch 2 of 30 was evaluated as if finished."""
    from conftest import SHARED_OVERRIDES, copy_project

    from plasticc_jax import interrupts
    from plasticc_jax.train import train

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run_dir = workdir / tiny_config().run_path
    checks = []

    def stopped_at_the_second_epoch() -> None:  # as Ctrl-C after epoch 3 of 4
        checks.append(1)
        if len(checks) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(interrupts, "check", stopped_at_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config("train.max_epochs=4"), workdir)
    monkeypatch.undo()
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        evaluate.evaluate(tiny_config(*SHARED_OVERRIDES), workdir)
    assert "is unfinished: it stopped after epoch 3 of 4 (interrupted)" in caplog.text
    training = json.loads((run_dir / "metrics.json").read_text())["training"]
    assert training == {
        "epochs": 3,
        "max_epochs": 4,
        "finished": False,
        "stop_reason": "interrupted",
    }
    assert (
        "**training unfinished**: stopped after epoch 3 of 4" in (run_dir / "report.md").read_text()
    )
    assert tiny_run.metrics["training"]["finished"]  # the shared run, trained to its end


def test_the_fusion_filled_in_is_the_runs_classes(tiny_run, tmp_path, monkeypatch):
    """Found by an audit: `evaluate --run-dir` of a `sn` run, with the command line's protocol
    left at `rare`, fused with rare's weights (the run's data are used, its fusion was not); a
    fusion given explicitly is kept."""
    from conftest import copy_project

    from plasticc_jax.config import VALIDATED_FUSION

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    used = []

    class Stop(Exception):
        pass

    def stop(run_dir, config):
        used.append(config.eval.fusion)
        raise Stop

    monkeypatch.setattr(evaluate, "_training", stop)
    run_dir = f"run_dir={tiny_config().run_path}"  # the shared run: rare's classes
    for given in (["data.protocol=sn"], ["data.protocol=sn", "eval.fusion=latent_knn:1"]):
        with pytest.raises(Stop):
            evaluate.evaluate(tiny_config(run_dir, *given), workdir)
    assert used == [VALIDATED_FUSION["rare"], ("latent_knn:1",)]


def test_the_evaluation_settings_are_checked_against_the_runs_model(tiny_run, tmp_path):
    """Found by an audit: head_maxprob fused for a run trained without the classification head
    (checked only against the command line's model) scored a constant, AUROC 0.5."""
    from conftest import copy_project

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    config_path = workdir / tiny_config().run_path / "config.json"
    recorded = json.loads(config_path.read_text())
    recorded["model"]["classifier_head"] = False  # as a run trained without the head
    config_path.write_text(json.dumps(recorded))
    with pytest.raises(UserError, match=r"head_maxprob needs model\.classifier_head=true"):
        evaluate.evaluate(tiny_config("eval.fusion=head_maxprob:1"), workdir)


def test_evaluation_settings_unlike_the_runs_are_named(tiny_run, tmp_path, monkeypatch, caplog):
    """Found by an audit: `evaluate --run-dir` of an `early` or `seed` run fits the default
    preset's detector (the settings given now), and nothing said the run's own were not used."""
    from conftest import copy_project

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)

    class Stop(Exception):
        pass

    def stop(run_dir, config):
        raise Stop

    monkeypatch.setattr(evaluate, "_training", stop)
    with caplog.at_level("INFO", logger="plasticc_jax"), pytest.raises(Stop):
        evaluate.evaluate(tiny_config("eval.knn_neighbours=7"), workdir)
    assert "evaluation settings given now, not the run's: eval.knn_neighbours=7" in caplog.text


def test_evaluate_run_dir_without_config_takes_the_runs_own_settings(
    tiny_run, tmp_path, monkeypatch, caplog
):
    """`evaluate --run-dir RUN` evaluated with the default preset's evaluation settings (an
    early run with the default fusion), where the README says "with the run's own settings";
    now the run's, unless --config or --set chooses others."""
    from conftest import copy_project

    from plasticc_jax import cli

    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    run = str(tiny_config().run_path)
    used = []

    def stop(run_dir, config):
        used.append(config.eval.knn_neighbours)
        raise UserError("stopped")

    monkeypatch.setattr(evaluate, "_training", stop)
    common = ["evaluate", "--workdir", str(workdir), "--run-dir", run]
    for extra in ([], ["--set", "eval.knn_neighbours=4"], ["--config", "default"]):
        assert cli.main([*common, *extra]) == 2
    # `--set run_dir=RUN`, which --help calls the same (found by a review: the default
    # preset's evaluation settings were used).
    assert cli.main(["evaluate", "--workdir", str(workdir), "--set", f"run_dir={run}"]) == 2
    # tiny's 5 (the run's), a --set, the default preset's 10 when it is asked for, tiny's 5.
    assert used == [5, 4, 10, 5]
    # Another protocol given now: said (found by an audit: the run's was evaluated silently).
    caplog.clear()
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        assert cli.main([*common, "--protocol", "sn"]) == 2
        assert cli.main([*common, "--set", "data.protocol=rare"]) == 2
    said = [r.getMessage() for r in caplog.records if "own protocol" in r.getMessage()]
    assert said == [
        "evaluate uses the run's own protocol, rare, not sn given now: evaluate a run trained "
        "for sn (plasticc-jax train --protocol sn)"
    ]


def test_depth_terciles_bin_a_missing_depth_as_the_flag_threshold_does():
    """Found by a review: a NaN depth made the report's tercile edges NaN and fell in the last
    tercile, where the flag threshold's bins put it in the first."""
    rng = np.random.default_rng(0)
    n = 90
    snr = rng.uniform(0.5, 3.0, n)
    snr[[0, 45]] = np.nan
    table = pd.DataFrame(
        {
            "split": np.repeat(["val", "test"], n // 2),
            "flagged": np.arange(n) == 0,  # the val object without a depth
            "anomaly_score": rng.normal(size=n),
            "target": np.full(n, 42),
        }
    )
    out = evaluate.depth(table, snr, np.ones(n, bool), [])
    edges = np.quantile(snr[1:45], [1 / 3, 2 / 3])
    assert [r["log10_snr_range"] for r in out["terciles"]] == [
        [None, edges[0]],
        [edges[0], edges[1]],
        [edges[1], None],
    ]
    # The NaN one in the first tercile, with the lowest 15 of the 44 others.
    assert [r["val_fpr"] for r in out["terciles"]] == [1 / 16, 0.0, 0.0]
    # No val known object with a depth: one tercile holds them all, no crash (a later review).
    snr[:45] = np.nan
    out = evaluate.depth(table, snr, np.ones(n, bool), [])
    assert out["terciles"][0]["val_fpr"] == 1 / 45
    assert all(math.isnan(r["val_fpr"]) for r in out["terciles"][1:])
