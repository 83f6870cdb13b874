"""prepare -> train -> evaluate -> score on tiny synthetic data, through the command line.

The shared `tiny_run` (conftest) is prepared, trained and evaluated through the command line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_project

from plasticc_jax import cli, metrics, provenance
from plasticc_jax import report as report_module
from plasticc_jax.calibration import FlagThreshold
from plasticc_jax.dataset import read_manifest

pytestmark = pytest.mark.slow  # `make test-slow`: see the Makefile


def test_table_covers_every_prepared_object(tiny_run):
    table = tiny_run.table
    manifest = read_manifest(tiny_run.dataset_dir)
    assert len(table) == sum(manifest["objects"].values())
    assert table["object_id"].is_unique
    for split, n in manifest["objects"].items():
        ranks = table.loc[table["split"] == split, "rank"].to_numpy()
        assert sorted(ranks) == list(range(1, n + 1))
    mu_columns = [c for c in table if c.startswith("mu_")]
    assert len(mu_columns) == 4  # tiny preset: latent_dim 4
    assert table["is_anomaly"].equals(table["target"].isin([6, 53, 64, 95]))
    assert not table.loc[table["split"] != "test", "is_anomaly"].any()
    threshold = FlagThreshold.from_json(tiny_run.detector_params["threshold"])
    flagged = threshold.flag(table["anomaly_score"], table["log10_peak_snr"])
    assert (table["flagged"] == flagged).all()
    assert np.isfinite(table["anomaly_score"]).all()
    for name in tiny_run.detector_params["components"]:
        assert np.isfinite(table.loc[table["split"] != "train", name]).all(), name
    # Every object's nearest known class is a known class of its own kind.
    known = set(tiny_run.config.data.known_classes)
    assert set(table["nearest_class"]) <= known
    galactic = {6, 16, 53, 65, 92}
    assert (table["nearest_class"].isin(galactic) == table["is_galactic"]).all()
    # Within a split, rank 1 has the highest anomaly score.
    test = table[table["split"] == "test"].sort_values("rank")
    assert test["anomaly_score"].is_monotonic_decreasing
    csv = pd.read_csv(tiny_run.run_dir / "scores.csv")
    np.testing.assert_allclose(csv["anomaly_score"], table["anomaly_score"])


def test_detector_never_sees_anomalies_or_the_objects_it_scores(tiny_run):
    table, fits = tiny_run.table, tiny_run.detector_fits
    train_known = table[(table["split"] == "train") & ~table["is_anomaly"]]
    known = set(tiny_run.config.data.known_classes)
    # The detector's fit: the train split's known objects, and only them.
    assert sorted(fits[0]) == sorted(train_known["target"])
    # The out-of-fold fits (cross_fit_folds = 2): each leaves out the objects it scores.
    folds = tiny_run.config.eval.cross_fit_folds
    assert len(fits) == 1 + folds
    assert sum(len(f) for f in fits[1:]) == (folds - 1) * len(train_known)
    assert all(set(np.unique(f)) <= known for f in fits)


def test_metrics_agree_with_the_table(tiny_run):
    result, table = tiny_run.metrics, tiny_run.table
    test = table[table["split"] == "test"]
    labels = test["is_anomaly"].to_numpy()
    assert result["counts"]["test_anomaly"] == labels.sum()
    components = tiny_run.detector_params["components"]
    assert set(result["methods"]) == {"fused", *components, "lc_features"}
    for name, column in (("fused", "anomaly_score"), ("recon_chi2", "recon_chi2")):
        expected = metrics.detection_metrics(test[column].to_numpy(), labels)
        for key, value in expected.items():
            assert result["methods"][name]["overall"][key] == pytest.approx(value), (name, key)
    fused = result["methods"]["fused"]
    assert set(fused["per_class"]) == {str(c) for c in np.unique(test["target"][labels])}
    assert fused["realistic"]["n_anomalies"] >= 1
    assert 0.0 <= fused["mean_class_auroc"] <= 1.0
    low, high = fused["mean_class_auroc_ci"]
    assert low <= fused["mean_class_auroc"] <= high
    assert (
        f"**{fused['mean_class_auroc']:.3f}** [{low:.3f}, {high:.3f}]"
        in (tiny_run.run_dir / "report.md").read_text()
    )
    for entry in fused["per_class"].values():
        low, high = entry["auroc_ci"]
        assert low <= entry["auroc"] <= high
    assert [t["tercile"] for t in result["depth"]["terciles"]] == [0, 1, 2]
    flagged = test["flagged"].to_numpy()
    assert result["threshold"]["test_fpr_known"] == pytest.approx(flagged[~labels].mean())


def test_figures_and_report_exist(tiny_run, tmp_path: Path):
    # The shared run has no figures (`eval.figures=false`): a copy is evaluated with them, and
    # they change nothing else.
    assert not list((tiny_run.run_dir / "reports" / "figures").glob("*.png"))
    assert "No figures" in (tiny_run.run_dir / "report.md").read_text()
    workdir = copy_project(tiny_run.workdir, tmp_path, run=True)
    # A figure of an earlier evaluation this one does not draw (the tiny preset draws no UMAP)
    # goes (a review found it left beside newer scores); another command's stays.
    fig_dir = workdir / tiny_run.config.run_path / "reports" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    (fig_dir / "umap.png").write_bytes(b"an earlier checkpoint's")
    (fig_dir / "review_discovery.png").write_bytes(b"review --simulate's")
    assert cli.main(["evaluate", "--config", "tiny", "--workdir", str(workdir)]) == 0
    run_dir = workdir / tiny_run.config.run_path
    assert not (fig_dir / "umap.png").exists() and (fig_dir / "review_discovery.png").exists()
    (fig_dir / "review_discovery.png").unlink()
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "scores.parquet"), tiny_run.table)
    report = (run_dir / "report.md").read_text()
    for name in ("roc.png", "pr.png", "score_hist.png", "reconstructions.png"):
        path = run_dir / "reports" / "figures" / name
        assert path.is_file() and path.stat().st_size > 10_000, name
        assert f"reports/figures/{name}" in report
        assert (
            f"![{name}](reports/figures/{name})\n\n*{report_module.FIGURE_CAPTIONS[name]}*"
            in report
        )
    for name in (p.name for p in (run_dir / "reports" / "figures").glob("*.png")):
        assert name in report_module.FIGURE_CAPTIONS, f"{name} has no caption in report.md"
    assert "No figures" not in report
    assert "| **anomaly score (fused)** |" in report
    tables = (run_dir / "metrics.md").read_text()
    assert "| **anomaly score (fused)** |" in tables
    assert tables.startswith(f"# {run_dir.name}: protocol rare, test split (")  # its context
    assert "SNR tercile" in report
    for name in ("detector.json", "detector.npz", "detector-classifier.skops"):
        assert (run_dir / "models" / name).is_file()


def test_score_cli_matches_evaluate(tiny_run, tmp_path: Path, caplog):
    """Scoring the training files again reproduces evaluate's scores; extra inputs are either
    scored or listed as rejected."""
    raw = tiny_run.workdir / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
    ghost = meta.iloc[[0]].copy()
    ghost["object_id"] = 999_999  # metadata without a light curve
    meta_path = tmp_path / "meta.csv"
    unlabelled = meta["object_id"].iloc[[1, 2]].tolist()
    meta = meta.astype({"target": object})
    meta.loc[1, "target"] = 90.5  # not a class number: scored without a label (score needs none)
    meta.loc[2, "target"] = "SNIa"  # nor a number (it refused the whole file before)
    # Classes the run never saw (PLAsTiCC's test-only microlens-binary, a number of one's own):
    # anomalies to it, said in a warning (they were counted as known objects, in silence).
    unseen = meta["object_id"].iloc[[3, 4]].tolist()
    meta.loc[3, "target"], meta.loc[4, "target"] = 991, 123
    pd.concat([meta, ghost]).to_csv(meta_path, index=False)
    output = tmp_path / "out" / "scores.parquet"
    args = [
        "score",
        "--run",
        str(tiny_run.run_dir),
        "--lightcurves",
        str(raw / "plasticc_train_lightcurves.csv.gz"),
        "--metadata",
        str(meta_path),
        "--output",
        str(output),
    ]
    with caplog.at_level("WARNING", logger="plasticc_jax"):
        assert cli.main(args) == 0
    scored = pd.read_parquet(output)
    # The table names the checkpoint of its latents, as the run's own does (`review` checks it).
    checkpoint = provenance.table_checkpoint(output)
    assert checkpoint and checkpoint == provenance.table_checkpoint(
        tiny_run.run_dir / "scores.parquet"
    )
    rejected = pd.read_csv(tmp_path / "out" / "scores.rejected.csv")
    assert 999_999 in set(rejected["object_id"])
    # The synthetic objects never detected (no flag, no point at S/N >= 5) are scored and said.
    rows = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    seen = rows["detected_bool"].astype(bool) | (rows["flux"] / rows["flux_err"] >= 5)
    never = set(seen.groupby(rows["object_id"]).any().loc[lambda d: ~d].index)
    n_never = len(never & set(scored["object_id"]))
    assert n_never > 0
    assert f"{n_never} scored objects were never detected" in caplog.text
    assert scored.loc[scored["object_id"].isin(unlabelled), "target"].tolist() == [-1, -1]
    assert "2 objects of the metadata are labelled with classes the run neither" in caplog.text
    assert "(is_anomaly) where scored: 123: 1, microlens-binary (991): 1" in caplog.text
    labels = scored.set_index("object_id")
    assert labels.loc[unseen, "is_anomaly"].all()
    known = labels["target"].isin(tiny_run.config.data.known_classes)
    assert known.any() and not labels.loc[known, "is_anomaly"].any()
    held_out = labels["target"].isin(tiny_run.config.data.anomaly_classes)
    assert held_out.any() and labels.loc[held_out, "is_anomaly"].all()
    assert not labels.loc[labels["target"] == -1, "is_anomaly"].any()
    ids = np.concatenate([scored["object_id"], rejected["object_id"]])
    assert sorted(ids) == sorted([*meta["object_id"].tolist(), 999_999])
    assert sorted(scored["rank"]) == list(range(1, len(scored) + 1))
    # One score table: the columns and types of evaluate's, without its baseline column and the
    # components that are not fused (evaluate reports them; score skips them for speed).
    fused = {c.split(":")[0] for c in tiny_run.config.eval.fusion}
    unfused = [c for c in tiny_run.detector_params["components"] if c not in fused]
    assert unfused  # the tiny preset reports more components than it fuses
    evaluated = tiny_run.table.drop(columns=["lc_forest_score", *unfused])
    assert list(scored.columns) == list(evaluated.columns)
    assert scored.dtypes.to_dict() == evaluated.dtypes.to_dict()
    merged = scored.merge(tiny_run.table, on="object_id", suffixes=("", "_eval"))
    assert len(merged) == len(tiny_run.table)
    # evaluate scores the train split out of fold; score sees the detector's full fit.
    same = merged["split_eval"] != "train"
    np.testing.assert_allclose(
        merged["anomaly_score"][same], merged["anomaly_score_eval"][same], rtol=1e-5
    )
    assert (merged["flagged"][same] == merged["flagged_eval"][same]).all()
    assert (scored["split"] == "new").all()
    assert sorted(p.name for p in output.parent.iterdir()) == [
        ".scores.parquet.lock",  # one writer at a time (`io_utils.folder_lock`)
        "scores.parquet",
        "scores.rejected.csv",
    ]  # no scratch files left behind
    # The same table as gzipped CSV (the suffix picks the format).
    assert cli.main([*args[:-1], str(tmp_path / "csv" / "scores.csv.gz")]) == 0
    as_csv = pd.read_csv(tmp_path / "csv" / "scores.csv.gz")
    assert list(as_csv.columns) == list(scored.columns)
    np.testing.assert_array_equal(as_csv["rank"], scored["rank"])
    np.testing.assert_allclose(as_csv["anomaly_score"], scored["anomaly_score"])


def test_score_cli_reports_user_errors(tiny_run, tmp_path: Path, capsys):
    args = ["score", "--run", str(tmp_path), "--lightcurves", str(tmp_path / "x.csv")]
    args += ["--metadata", str(tmp_path / "m.csv"), "--output", str(tmp_path / "o.parquet")]
    assert cli.main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    raw = tiny_run.workdir / "data" / "raw"
    args = ["score", "--run", str(tiny_run.run_dir)]
    args += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    args += ["--metadata", str(raw / "plasticc_train_metadata.csv.gz")]
    args += ["--output", str(tmp_path / "o.txt")]
    assert cli.main(args) == 2
    assert "suffix picks the format" in capsys.readouterr().err


def test_the_seed_method_without_a_head_trains_evaluates_and_scores(project, tmp_path):
    """The seed preset's choices (no classification head, forest + chi2) on the tiny preset."""
    workdir = copy_project(project, tmp_path)
    args = [
        "--config", "tiny", "--workdir", str(workdir), "--run-dir", "runs/seed",
        "--set", "model.classifier_head=false",
        "--set", "eval.components=latent_forest,recon_chi2",
        "--set", "eval.fusion=latent_forest:1,recon_chi2:1",
    ]  # fmt: skip
    assert cli.main(["train", *args]) == 0
    assert cli.main(["evaluate", *args]) == 0
    table = pd.read_parquet(workdir / "runs" / "seed" / "scores.parquet")
    assert np.isfinite(table["anomaly_score"]).all()
    assert {"latent_forest", "recon_chi2"} <= set(table.columns)
    assert "classifier" not in table.columns
