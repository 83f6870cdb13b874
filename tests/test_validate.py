"""`plasticc-jax validate` on complete light curves (the default preset's kind of run): three
tiny folds on synthetic data; the staged validation is in test_anchor.py."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys

import pandas as pd
import pytest

from plasticc_jax import cli, config_io, fusion_search
from plasticc_jax import config as config_lib
from plasticc_jax import validate as validate_lib
from plasticc_jax.detector import parse_fusion
from plasticc_jax.errors import UserError
from plasticc_jax.synthetic import write_synthetic

pytestmark = pytest.mark.slow  # trains three tiny folds
FUSED = ("fused (configured)", "fused (best found)")


def test_validate_reports_every_component_and_the_best_fusion(tmp_path, monkeypatch, caplog):
    write_synthetic(tmp_path / "data" / "raw", 300, fmt="unblinded", seed=1)
    overrides = ["data.protocol=sn"]  # three known classes: three folds
    args = ["prepare", "--config", "tiny", "--workdir", str(tmp_path), "--set=data.protocol=sn"]
    assert cli.main(args) == 0
    monkeypatch.setattr(fusion_search, "SEARCH_TOP", 2)
    config = config_lib.resolve(config_io.apply_overrides(config_io.load_preset("tiny"), overrides))
    out = validate_lib.validate(config, tmp_path)

    result = json.loads((out / "validation.json").read_text())
    assert "stages" not in result
    folds = [str(c) for c in config.data.known_classes]
    assert result["folds"] == list(config.data.known_classes)
    for name in [*config.eval.components, "fused (configured)", "fused (best found)"]:
        row = result["aurocs"][name]
        assert sorted(row["folds"]) == sorted(folds) and 0.0 <= row["mean"] <= 1.0
    assert result["configured_fusion"] == ",".join(config.eval.fusion)
    best = result["search"][0]
    assert result["best_fusion"] == fusion_search.fusion_spec(best["weights"])
    assert result["aurocs"]["fused (best found)"]["mean"] == pytest.approx(best["mean_auroc"])
    tried = [round(t["mean_auroc"], 6) for t in result["search"]]  # best first
    assert tried == sorted(tried, reverse=True)
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores["split"]) <= {"train", "val"}  # never the test split
    assert (scores["positive"] == (scores["target"] == scores["fold"])).all()
    assert "Best fusions found" in (out / "validation.md").read_text()
    # Run again: the folds are reused with the same settings, scored again with others (an
    # audit found that a fold of other settings was reused while validation.json named the new).
    calls = []
    score_fold = validate_lib._fold_scores

    def counted(*args, **kwargs):
        calls.append(args[2])
        return score_fold(*args, **kwargs)

    monkeypatch.setattr(validate_lib, "_fold_scores", counted)
    validate_lib.validate(config, tmp_path)
    assert calls == []
    # Nor with settings of evaluate's report alone (found by an audit: every fold was scored
    # again for `eval.figures=false`, 1 min 42 s on the default run).
    report_only = ["eval.figures=false", "eval.n_bootstrap=10", "eval.umap=false"]
    leftover = out / f"fold-{config.data.known_classes[0]}" / ".tmp-scores.parquet.x1y2"
    leftover.write_bytes(b"a write a kill cut short")
    validate_lib.validate(config_io.apply_overrides(config, report_only), tmp_path)
    assert calls == [] and not leftover.exists()
    # Another fusion alone is recomputed from the stored component scores: no fold scored again
    # (an earlier release re-scored every fold: 85 s against 15 s on the default run), also for a
    # fold.json of an earlier release, which names the fusion.
    record = out / f"fold-{config.data.known_classes[0]}" / "fold.json"
    earlier = json.loads(record.read_text())
    earlier["config"]["eval"]["fusion"] = list(config.eval.fusion)
    record.write_text(json.dumps(earlier))
    fusion = ("recon_chi2:1", "latent_knn:2")
    other_fusion = dataclasses.replace(config, eval=dataclasses.replace(config.eval, fusion=fusion))
    result = json.loads(
        (validate_lib.validate(other_fusion, tmp_path) / "validation.json").read_text()
    )
    assert calls == []
    assert result["configured_fusion"] == ",".join(fusion)
    folds = fusion_search.Folds(pd.read_parquet(out / "scores.parquet"))
    recomputed = folds.aurocs(folds.fused(parse_fusion(fusion)))
    assert result["aurocs"]["fused (configured)"]["folds"] == pytest.approx(
        {str(k): v for k, v in recomputed.items()}
    )
    other = dataclasses.replace(config, eval=dataclasses.replace(config.eval, knn_neighbours=3))
    with caplog.at_level(logging.INFO, "plasticc_jax.validate"):
        validate_lib.validate(other, tmp_path)
    assert sorted(calls) == sorted(config.data.known_classes)
    # The log says what changed (found by an audit: "other settings or data" only).
    assert re.search(r"scored with other settings \(eval\.knn_neighbours \d+ -> 3\)", caplog.text)
    # Damaged fold files are scored again, not a traceback (found by an audit); the fold of an
    # earlier release (no detector groups) too.
    calls.clear()
    first, second, third = (out / f"fold-{c}" for c in config.data.known_classes)
    (first / "fold.json").write_text("{not json")
    (second / "scores.parquet").write_bytes(b"PAR1 cut short")
    frame = pd.read_parquet(third / "scores.parquet")
    frame.drop(columns="group").to_parquet(third / "scores.parquet")
    caplog.clear()
    with caplog.at_level(logging.INFO, "plasticc_jax.validate"):
        validate_lib.validate(other, tmp_path)
    assert sorted(calls) == sorted(config.data.known_classes)
    assert "without a readable record (fold.json)" in caplog.text
    # Other train settings than the folds' networks were trained with: refused in one line
    # (the networks were reused while fold.json and validation.json named the new settings).
    # A refused validate changes nothing (found by an audit: it removed the first fold's record
    # before the refusal, and a later run of the folds' own settings scored that fold again).
    records = {f: f.read_bytes() for f in out.glob("fold-*/fold.json")}
    assert len(records) == len(config.data.known_classes)
    slower = config_io.apply_overrides(config, ["train.learning_rate=0.02"])
    other_train = r"fold-\d+ holds a network trained with other settings \(train\.learning_rate"
    with pytest.raises(UserError, match=other_train):
        validate_lib.validate(slower, tmp_path)
    # More epochs too (found by an audit: `train` resumed the finished fold networks for the
    # extra epochs, their schedule fitted to the fewer, under the new setting's name).
    longer = config_io.apply_overrides(config, [f"train.max_epochs={config.train.max_epochs + 1}"])
    with pytest.raises(UserError, match=r"other settings \(train\.max_epochs"):
        validate_lib.validate(longer, tmp_path)
    wider = config_io.apply_overrides(config, [f"model.latent_dim={config.model.latent_dim + 1}"])
    with pytest.raises(UserError, match=r"other settings \(model\.latent_dim"):
        validate_lib.validate(wider, tmp_path)
    assert {f: f.read_bytes() for f in out.glob("fold-*/fold.json")} == records
    # A fold's record goes before its files are replaced (found by an audit: a kill between the
    # new scores and the new record left the old record naming the new scores, reused later).
    killed = dataclasses.replace(config, eval=dataclasses.replace(config.eval, knn_neighbours=4))

    def killed_before_the_record(path, text):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(validate_lib, "atomic_write_text", killed_before_the_record)
        with pytest.raises(KeyboardInterrupt):
            validate_lib.validate(killed, tmp_path)
    assert not (first / "fold.json").exists()
    calls.clear()
    validate_lib.validate(config, tmp_path)
    assert calls[:1] == [config.data.known_classes[0]]
    # The dataset is held for the whole validation (found by an audit: a `prepare` between
    # two folds replaced it): another process's `prepare` is refused while a fold is scored.
    refused = []

    prepare_again = [sys.executable, "-m", "plasticc_jax", *args, "--set=data.seed=5"]

    def with_prepare(*fold_args, **kwargs):
        refused.append(subprocess.run(prepare_again, capture_output=True, text=True, timeout=120))
        return score_fold(*fold_args, **kwargs)

    (first / "fold.json").unlink()
    monkeypatch.setattr(validate_lib, "_fold_scores", with_prepare)
    validate_lib.validate(config, tmp_path)
    assert refused and refused[0].returncode != 0 and "is in use by" in refused[0].stderr
    monkeypatch.setattr(validate_lib, "_fold_scores", counted)
    # An empty eval.components (the fusion's): the search runs over the fusion's components.
    fused_only = config_io.apply_overrides(config, ["eval.components="])
    result = json.loads(
        (validate_lib.validate(fused_only, tmp_path) / "validation.json").read_text()
    )
    assert {c.partition(":")[0] for c in config.eval.fusion} <= set(result["aurocs"])
    # Then a fusion of fewer components: the folds are reused, and the component only the
    # earlier fusion fitted is neither reported nor searched (found by a review: it was, and
    # a fold scored again without it made its AUROC NaN).
    fewer = config_io.apply_overrides(fused_only, ["eval.fusion=latent_knn:1,recon_chi2:1"])
    calls.clear()
    result = json.loads((validate_lib.validate(fewer, tmp_path) / "validation.json").read_text())
    assert calls == []
    assert set(result["aurocs"]) == {"latent_knn", "recon_chi2", *FUSED}
    (out / f"fold-{config.data.known_classes[0]}" / "scores.parquet").unlink()
    result = json.loads((validate_lib.validate(fewer, tmp_path) / "validation.json").read_text())
    assert calls == [config.data.known_classes[0]]
    assert set(result["aurocs"]) == {"latent_knn", "recon_chi2", *FUSED}
    # What each fold's `train` would refuse is refused first, before any folder is made (an
    # audit found `validation/` and its lock left inside the prepared data).
    inside = config_io.apply_overrides(config, [f"run_dir={config.data.dataset_dir}"])
    with pytest.raises(UserError, match="overlaps the data folder"):
        validate_lib.validate(config_lib.resolve(inside), tmp_path)
    assert not (tmp_path / config.data.dataset_dir / "validation").exists()
    other_grid = config_io.apply_overrides(config, ["data.n_time_bins=32", "run_dir=runs/grid"])
    with pytest.raises(UserError, match=r"prepared with other data settings .*n_time_bins"):
        validate_lib.validate(config_lib.resolve(other_grid), tmp_path)
    assert not (tmp_path / "runs" / "grid").exists()
