"""prepare -> train -> evaluate -> score on tiny synthetic data, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from plasticc_jax import cli, metrics, synthetic
from plasticc_jax.dataset import read_manifest

N_OBJECTS = 500


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny run (module scope: a few seconds), recording what the forest is fitted on."""
    workdir = tmp_path_factory.mktemp("e2e")
    synthetic.write_synthetic(workdir / "data" / "raw", N_OBJECTS, seed=0)
    fitted: list[np.ndarray] = []
    # Wrap the class's own fit (not a subclass: the saved forest must stay a plain
    # IsolationForest, the only type `score` trusts on load).
    original_fit = IsolationForest.fit

    def recording_fit(self, X, y=None, sample_weight=None):
        fitted.append(np.array(X))
        return original_fit(self, X, y, sample_weight)

    IsolationForest.fit = recording_fit
    try:
        for stage in ("prepare", "train", "evaluate"):
            args = [stage, "--config", "tiny", "--workdir", str(workdir)]
            assert cli.main(args) == 0, stage
    finally:
        IsolationForest.fit = original_fit
    run_dir = workdir / "runs" / "tiny-rare"
    return {
        "workdir": workdir,
        "run_dir": run_dir,
        "table": pd.read_parquet(run_dir / "scores.parquet"),
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "params": json.loads((run_dir / "models" / "anomaly.json").read_text()),
        "fitted": fitted,
    }


def test_table_covers_every_prepared_object(run):
    table = run["table"]
    manifest = read_manifest(run["workdir"] / "data" / "processed" / "rare")
    assert len(table) == sum(manifest["objects"].values())
    assert table["object_id"].is_unique
    for split, n in manifest["objects"].items():
        ranks = table.loc[table["split"] == split, "rank"].to_numpy()
        assert sorted(ranks) == list(range(1, n + 1))
    mu_columns = [c for c in table if c.startswith("mu_")]
    assert len(mu_columns) == 4  # tiny preset: latent_dim 4
    assert table["is_anomaly"].equals(table["target"].isin([6, 53, 64, 95]))
    assert not table.loc[table["split"] != "test", "is_anomaly"].any()
    assert (table["anomaly_score"] == table["fused_score"]).all()
    assert (table["flagged"] == (table["fused_score"] > run["params"]["threshold"])).all()
    np.testing.assert_allclose(
        table["recon_nll_per_cell"], table["recon_nll"] / table["n_observed"], rtol=1e-6
    )
    # Within a split, rank 1 has the highest fused score.
    test = table[table["split"] == "test"].sort_values("rank")
    assert test["fused_score"].is_monotonic_decreasing
    csv = pd.read_csv(run["run_dir"] / "scores.csv")
    np.testing.assert_allclose(csv["fused_score"], table["fused_score"])


def test_forest_never_sees_anomalies(run):
    table = run["table"]
    latent_forest = run["fitted"][0]  # the first fit is the latent forest, then the baseline
    train_known = table[(table["split"] == "train") & ~table["is_anomaly"]]
    mu = train_known[[c for c in table if c.startswith("mu_")]].to_numpy(np.float32)
    np.testing.assert_array_equal(latent_forest, mu)
    assert run["params"]["info"]["n_fit"] == len(train_known)
    # The baseline forest is fitted on the same objects (one row each).
    assert len(run["fitted"]) == 2 and len(run["fitted"][1]) == len(train_known)


def test_metrics_agree_with_the_table(run):
    result, table = run["metrics"], run["table"]
    test = table[table["split"] == "test"]
    labels = test["is_anomaly"].to_numpy()
    assert result["counts"]["test_anomaly"] == labels.sum()
    assert set(result["methods"]) == {
        "fused",
        "forest_latent",
        "recon",
        "chi2",
        "kl",
        "lc_features",
    }
    for name, column in (("fused", "fused_score"), ("chi2", "chi2_per_cell")):
        expected = metrics.detection_metrics(test[column].to_numpy(), labels)
        for key, value in expected.items():
            assert result["methods"][name]["overall"][key] == pytest.approx(value), (name, key)
    fused = result["methods"]["fused"]
    assert set(fused["per_class"]) == {str(c) for c in np.unique(test["target"][labels])}
    assert fused["realistic"]["n_anomalies"] >= 1
    assert 0.0 <= fused["mean_class_auroc"] <= 1.0
    flagged = test["flagged"].to_numpy()
    assert result["threshold"]["test_fpr_known"] == pytest.approx(flagged[~labels].mean())


def test_figures_and_report_exist(run):
    run_dir = run["run_dir"]
    report = (run_dir / "report.md").read_text()
    for name in ("roc.png", "pr.png", "score_hist.png", "reconstructions.png"):
        path = run_dir / "reports" / "figures" / name
        assert path.is_file() and path.stat().st_size > 10_000, name
        assert f"reports/figures/{name}" in report
    assert "| fused (d) |" in report and "| fused (d) |" in (run_dir / "metrics.md").read_text()
    assert (run_dir / "models" / "forest.skops").is_file()


def test_score_cli_matches_evaluate(run, tmp_path: Path):
    """Scoring the training files again reproduces evaluate's scores; extra inputs are either
    scored or listed as rejected."""
    raw = run["workdir"] / "data" / "raw"
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
    ghost = meta.iloc[[0]].copy()
    ghost["object_id"] = 999_999  # metadata without a light curve
    meta_path = tmp_path / "meta.csv"
    pd.concat([meta, ghost]).to_csv(meta_path, index=False)
    output = tmp_path / "out" / "scores.parquet"
    args = [
        "score",
        "--run",
        str(run["run_dir"]),
        "--lightcurves",
        str(raw / "plasticc_train_lightcurves.csv.gz"),
        "--metadata",
        str(meta_path),
        "--output",
        str(output),
    ]
    assert cli.main(args) == 0
    scored = pd.read_parquet(output)
    rejected = pd.read_csv(tmp_path / "out" / "scores.rejected.csv")
    assert 999_999 in set(rejected["object_id"])
    ids = np.concatenate([scored["object_id"], rejected["object_id"]])
    assert sorted(ids) == sorted([*meta["object_id"].tolist(), 999_999])
    assert sorted(scored["rank"]) == list(range(1, len(scored) + 1))
    merged = scored.merge(run["table"], on="object_id", suffixes=("", "_eval"))
    assert len(merged) == len(run["table"])
    np.testing.assert_allclose(merged["fused_score"], merged["fused_score_eval"], rtol=1e-5)
    assert (merged["flagged"] == merged["flagged_eval"]).mean() > 0.99
    assert (scored["split"] == "new").all()
    assert sorted(p.name for p in output.parent.iterdir()) == [
        "scores.parquet",
        "scores.rejected.csv",
    ]  # no scratch files left behind
    # The same table as gzipped CSV (the suffix picks the format).
    assert cli.main([*args[:-1], str(tmp_path / "csv" / "scores.csv.gz")]) == 0
    as_csv = pd.read_csv(tmp_path / "csv" / "scores.csv.gz")
    assert list(as_csv.columns) == list(scored.columns)
    np.testing.assert_array_equal(as_csv["rank"], scored["rank"])
    np.testing.assert_allclose(as_csv["fused_score"], scored["fused_score"])


def test_score_cli_reports_user_errors(run, tmp_path: Path, capsys):
    args = ["score", "--run", str(tmp_path), "--lightcurves", str(tmp_path / "x.csv")]
    args += ["--metadata", str(tmp_path / "m.csv"), "--output", str(tmp_path / "o.parquet")]
    assert cli.main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    raw = run["workdir"] / "data" / "raw"
    args = ["score", "--run", str(run["run_dir"])]
    args += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    args += ["--metadata", str(raw / "plasticc_train_metadata.csv.gz")]
    args += ["--output", str(tmp_path / "o.txt")]
    assert cli.main(args) == 2
    assert "suffix picks the format" in capsys.readouterr().err
