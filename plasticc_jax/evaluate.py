"""`make evaluate`: encode every prepared object, fit the anomaly detector, score, measure, report.

Protocol (no anomaly label is used to fit or tune anything):

1. Encode all objects of the train, val and test splits with the run's best checkpoint, shard by
   shard, in one pass of the VAE (`scoring.vae_outputs`): latent means, reconstruction NLL, KL,
   reduced chi2.
2. Fit the Isolation Forest on the latent means of the **train** split's known classes; fit the
   fusion's ECDF references and the flag threshold on the **val** split's known classes
   (`anomaly.fit_detector`).
3. Score every object (`scoring.score_table`); rank within each split (1 = most anomalous).
4. Baselines on the same objects: (a) an Isolation Forest on hand-crafted light-curve features
   (`baselines`), fitted on the same train known objects; (b) reconstruction NLL per cell alone;
   (c) the forest on latents alone; (e) the KL alone. (d) is the fused score.
5. Metrics on the **test** split (known classes vs anomaly classes): AUROC and AP overall and per
   anomaly class, recall in the top 1/5/15% and top 100/1000/2000, purity of the top 100, and all
   of these at a realistic anomaly rate (`eval.realistic_anomaly_rate`, `eval.n_draws` draws).

Outputs in the run directory: `models/` (forest.skops, anomaly.json, provenance.json),
`scores.parquet` and `scores.csv`, `metrics.json` (naming the checkpoint and the dataset),
`metrics.md`, `reports/figures/*.png`, `report.md` (`report`). The dataset must be the one the run
was trained on (`provenance`); while the outputs are rewritten the run holds an `INCOMPLETE`
marker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plasticc_jax import anomaly, baselines, metrics, provenance, report, runs, scoring
from plasticc_jax import config as config_lib
from plasticc_jax.config import Config, EvalConfig
from plasticc_jax.dataset import SPLITS, LightCurveArrays, iter_split, read_manifest
from plasticc_jax.encoder import TrainedVae, load_vae
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import GridSpec
from plasticc_jax.io_utils import atomic_path, atomic_write_text, folder_lock

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Encoded:
    """Every prepared object through the VAE, and what the report needs of the test split.

    Attributes:
        objects: per-object arrays over all splits (train, val, test in order):
            `scoring.object_labels` and `scoring.vae_outputs`.
        test: the test split's arrays; test_mean, test_sigma: their reconstruction
            (n_test, n_bands, n_times).
    """

    objects: dict[str, np.ndarray]
    test: LightCurveArrays
    test_mean: np.ndarray
    test_sigma: np.ndarray


def encode_splits(vae: TrainedVae, dataset_dir: Path) -> Encoded:
    """Encode every object of every split, shard by shard, reading each shard once."""
    parts, test, test_out = [], [], []
    for split in SPLITS:
        for shard in iter_split(dataset_dir, split):
            out = scoring.vae_outputs(vae, shard, reconstruction=split == "test")
            if split == "test":
                test.append(shard)
                test_out.append((out.pop("mean"), out.pop("sigma")))
            parts.append({**scoring.object_labels(shard, split), **out})
    if not parts:
        raise UserError(f"{dataset_dir} holds no objects: re-run prepare")
    if not test:
        raise UserError(f"split 'test' of {dataset_dir} holds no objects: re-run prepare")
    objects = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    mean, sigma = (np.concatenate(values) for values in zip(*test_out, strict=True))
    return Encoded(objects, LightCurveArrays.concatenate(test), mean, sigma)


def _fit_detector(
    objects: dict[str, np.ndarray], known: np.ndarray, ev: EvalConfig
) -> anomaly.AnomalyDetector:
    """The forest on train known objects, references and threshold on val known objects."""
    split = objects["split"]

    def outputs(name: str) -> dict[str, np.ndarray]:
        return {k: objects[k][split == name] for k in scoring.OUTPUT_KEYS}

    # Anything not of a known class (anomalies, unlabelled objects) is kept out of every fit.
    train, val = split == "train", split == "val"
    return anomaly.fit_detector(outputs("train"), ~known[train], outputs("val"), ~known[val], ev)


def _baseline_scores(
    dataset_dir: Path,
    workdir: Path,
    objects: dict[str, np.ndarray],
    known: np.ndarray,
    ev: EvalConfig,
) -> np.ndarray:
    """Baseline (a): the forest on light-curve features, fitted on train known objects."""
    ids = objects["object_id"]
    raw = baselines.read_raw_lightcurves(dataset_dir, workdir, ids)
    features = baselines.lightcurve_features(raw, ids)
    fit = (objects["split"] == "train") & known
    return baselines.FeatureForest(ev).fit(features[fit], ~known[fit]).score(features)


def _measure(
    config: Config,
    test: pd.DataFrame,
    methods: dict[str, str],
    detector: anomaly.AnomalyDetector,
    checkpoint_epoch: int,
) -> dict[str, Any]:
    """The metrics of every method on the test split's known and anomaly objects."""
    ev, data = config.eval, config.data
    target, labels = test["target"].to_numpy(), test["is_anomaly"].to_numpy(bool)
    flagged = test["flagged"].to_numpy(bool)
    present = [c for c in data.anomaly_classes if (target == c).any()]
    if not labels.any():
        log.warning("the test split holds no anomaly: metrics that need anomalies are NaN")
    return {
        "run": config.run_path.name,
        "protocol": data.tag,
        "split": "test",
        "known_classes": list(data.known_classes),
        "anomaly_classes": list(data.anomaly_classes),
        "anomaly_classes_present": present,
        "checkpoint_epoch": checkpoint_epoch,
        "counts": {
            "test_known": int((~labels).sum()),
            "test_anomaly": int(labels.sum()),
            "test_anomaly_fraction": float(labels.mean()) if labels.size else math.nan,
            "test_per_class": {str(c): int(n) for c, n in test["target"].value_counts().items()},
            "forest_fit": detector.info["n_fit"],
            "val_known": detector.info["n_val_known"],
        },
        "realistic_anomaly_rate": ev.realistic_anomaly_rate,
        "n_draws": ev.n_draws,
        "forest": {"n_estimators": ev.n_estimators, "max_samples": ev.max_samples, "seed": ev.seed},
        "fusion": {
            "weights": detector.weights,
            "val_spearman": detector.info["val_spearman"],
            "val_spearman_noise": detector.info["val_spearman_noise"],
        },
        "methods": {
            name: metrics.method_metrics(
                test[column].to_numpy(np.float64),
                target,
                labels,
                tuple(present),
                ev.realistic_anomaly_rate,
                ev.n_draws,
                ev.seed,
            )
            for name, column in methods.items()
        },
        "threshold": {
            "value": detector.threshold,
            "target_fpr": detector.target_fpr,
            "val_fpr_known": detector.info["val_flag_rate"],
            "test_fpr_known": float(flagged[~labels].mean()) if (~labels).any() else math.nan,
            "test_recall": float(flagged[labels].mean()) if labels.any() else math.nan,
        },
    }


def evaluate(config: Config, workdir: Path) -> Path:
    """Run the evaluation of a trained run; returns the run directory.

    Args:
        config: the resolved config (`config.resolve`); it selects the run (`run_path`) and its
            `eval` section applies; the data and model settings are the run's own
            (`<run>/config.json`).
        workdir: project folder; relative paths resolve against it.

    Raises:
        UserError: no trained run, no prepared dataset, a dataset that is not the run's, or a
            split without the objects needed.
        FolderBusy: another process writes the run directory or the dataset.
    """
    config_lib.require_resolved(config)
    workdir = Path(workdir)
    run_dir = workdir / config.run_path
    with folder_lock(run_dir, "evaluate"):
        # The run's own data and model settings, with the evaluation settings given now.
        config = dataclasses.replace(runs.read_config(run_dir), eval=config.eval)
        dataset_dir = workdir / config.data.dataset_dir
        with folder_lock(dataset_dir, "evaluate", shared=True):
            manifest = read_manifest(dataset_dir)
            provenance.check_run_dataset(run_dir, config, dataset_dir, manifest)
            # Until every output is written, the run is marked incomplete, and the old detector
            # loses its record: `score` refuses the run in between.
            with provenance.incomplete(run_dir, "evaluate"):
                (run_dir / "models" / provenance.RECORD).unlink(missing_ok=True)
                _evaluate(config, workdir, run_dir, dataset_dir, manifest)
    return run_dir


def _evaluate(
    config: Config, workdir: Path, run_dir: Path, dataset_dir: Path, manifest: dict[str, Any]
) -> None:
    ev = config.eval
    timing: dict[str, float] = {}
    start = time.perf_counter()

    vae = load_vae(run_dir, max_batch=ev.batch_size)
    encoded = encode_splits(vae, dataset_dir)
    objects, split = encoded.objects, encoded.objects["split"]
    known = np.isin(objects["target"], config.data.known_classes) & ~objects["is_anomaly"]
    timing["encode_s"] = time.perf_counter() - start

    t = time.perf_counter()
    detector = _fit_detector(objects, known, ev)
    detector.save(run_dir / "models")
    table = scoring.insert_rank(scoring.score_table(objects, detector))
    timing["detector_s"] = time.perf_counter() - t

    methods = dict(report.METHODS)
    if ev.baselines:
        t = time.perf_counter()
        table["lc_forest_score"] = _baseline_scores(dataset_dir, workdir, objects, known, ev)
        timing["baseline_s"] = time.perf_counter() - t
    else:
        del methods["lc_features"]

    in_test = (split == "test") & (known | objects["is_anomaly"])
    test = table[in_test]
    result = _measure(config, test, methods, detector, vae.epoch)
    # What these outputs were made from: the checkpoint measured and the dataset.
    result["checkpoint"] = provenance.checkpoint_record(vae.epoch, vae.params)
    result["dataset"] = provenance.dataset_record(dataset_dir, manifest)
    with atomic_path(run_dir / "scores.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(run_dir / "scores.csv") as tmp:
        table.to_csv(tmp, index=False)
    tables = report.markdown_tables(result)
    atomic_write_text(run_dir / "metrics.md", tables)

    t = time.perf_counter()
    names = report.draw_figures(
        run_dir / "reports" / "figures",
        test,
        objects["mu"][in_test],
        methods,
        result["anomaly_classes_present"],
        detector.threshold,
        report.examples(table, known, encoded.test, encoded.test_mean, encoded.test_sigma),
        GridSpec.from_config(config.data).bin_centres(),
        umap=ev.umap,
        seed=ev.seed,
    )
    timing["figures_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - start
    result["timing_s"] = timing
    result["figures"] = [f"reports/figures/{n}" for n in names]
    text = report.report_markdown(result, manifest, names, tables)
    atomic_write_text(
        run_dir / "metrics.json", json.dumps(report.jsonable(result), indent=2) + "\n"
    )
    atomic_write_text(run_dir / "report.md", text)
    provenance.record_detector(
        run_dir / "models",
        checkpoint=result["checkpoint"],
        dataset=result["dataset"],
        threshold=detector.threshold,
    )
    fused = result["methods"]["fused"]
    log.info(
        "evaluated %s in %.1f s: fused mean class AUROC %.3f, AUROC %.3f, AP %.3f (test: %d known, "
        "%d anomalies); wrote %s",
        run_dir,
        timing["total_s"],
        fused["mean_class_auroc"],
        fused["overall"]["auroc"],
        fused["overall"]["ap"],
        result["counts"]["test_known"],
        result["counts"]["test_anomaly"],
        run_dir / "report.md",
    )
