"""`make evaluate`: encode every prepared object, fit the anomaly detector, score, measure, report.

Protocol (no anomaly label is used to fit or tune anything):

1. Encode all objects of the train, val and test splits with the run's best checkpoint, shard by
   shard, in one pass of the VAE (`scoring.model_outputs`): latent means, the head's class
   probabilities, the reconstruction's chi-square; the prepared features come with the shards.
2. Fit the detector's components on the **train** split's known classes and calibrate them, the
   fusion and the flag threshold on the **val** split's known classes (`detector.Detector.fit`).
3. Score every object (`scoring.score_table`); the train split's known objects are scored by
   components fitted without them (`eval.cross_fit_folds` folds): in the table every known
   object's score is out of sample for the detector. Rank within each split (1 = most anomalous).
4. Baseline (a) on the same objects: an Isolation Forest on the `light-curve` package's features
   alone, fitted on the same train known objects. Every component alone is reported too; the seed
   pipeline's method is the `seed` preset (`make evaluate CONFIG=seed`).
5. Metrics on the **test** split (known classes vs anomaly classes): AUROC (with a bootstrap 95%
   interval per class for the anomaly score) and AP overall and per anomaly class, recall in the
   top 1/5/15% and top 100/1000/2000, purity of the top 100 and at k = the number of anomalies,
   all of these at a realistic anomaly rate (`eval.realistic_anomaly_rate`, `eval.n_draws`
   draws), and the false-positive rate at the threshold and per-class AUROC per signal-to-noise
   tercile (`depth`).

Outputs in the run directory: `models/` (the detector and its `provenance.json`),
`scores.parquet` and `scores.csv`, `metrics.json` (naming the checkpoint and the dataset),
`metrics.md`, `reports/figures/*.png`, `report.md` (`report`). The dataset must be the one the run
was trained on (`provenance`); while the outputs are rewritten the run holds an `INCOMPLETE`
marker.

Early detection (opt-in: `configs/early.py`, docs/early.md; `stages`): when the dataset
was prepared with staged rows (`data.stages`: every object also as it was some days after its
first detection), the test split's rows give AUROC and recall in the top 1% per anomaly class
against days since first detection, and the first stage at which each anomaly is flagged
(`metrics.json` `early`, `scores_stages.parquet`, `early.png`); with `train.partial_curves` the
detector is also fitted and calibrated on one partial row per train and val object. Every other
metric is about the complete light curves. Without staged rows (the default) none of this is
computed and the outputs are those of complete light curves alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from plasticc_jax import config as config_lib
from plasticc_jax import interrupts, metrics, plasticc, provenance, report, runs, scoring, stages
from plasticc_jax.calibration import DEPTH_FEATURE, bin_index
from plasticc_jax.components import Evidence, FeatureForest
from plasticc_jax.config import Config
from plasticc_jax.dataset import SPLITS, LightCurveArrays, iter_split, read_manifest
from plasticc_jax.detector import Detector
from plasticc_jax.encoder import TrainedVae, load_vae
from plasticc_jax.errors import TRAIN_FIRST, UserError
from plasticc_jax.features import LC_NAMES
from plasticc_jax.gridding import FEATURE_NAMES, GridSpec
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write_text,
    folder_lock,
    remove_unfinished_writes,
)

if TYPE_CHECKING:
    from plasticc_jax.figures import FigureProcess  # matplotlib: imported by `report`

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Encoded:
    """Every prepared object through the VAE, and what the report needs of the test split.

    Attributes:
        objects: per-object arrays over all splits (train, val, test in order):
            `scoring.object_labels` and `scoring.model_outputs`.
        test: the test split's arrays; test_mean, test_sigma: their reconstruction
            (n_test, n_bands, n_times).
    """

    objects: dict[str, np.ndarray]
    test: LightCurveArrays
    test_mean: np.ndarray
    test_sigma: np.ndarray


def encode_splits(vae: TrainedVae, dataset_dir: Path) -> Encoded:
    """Encode every object of every split, its complete and its partial light curves (`stage`),
    shard by shard, reading each shard once."""
    parts, test, test_out = [], [], []
    for split in SPLITS:
        for shard in iter_split(dataset_dir, split, partial=True):
            out = scoring.model_outputs(vae, shard, reconstruction=split == "test")
            if split == "test":
                complete = shard.complete
                test.append(shard.take(complete))
                test_out.append((out.pop("mean")[complete], out.pop("sigma")[complete]))
            labels = scoring.object_labels(shard, split)
            parts.append({**labels, "stage": shard.stage, **out})
    if not parts:
        raise UserError(f"{dataset_dir} holds no objects: re-run prepare")
    if not test:
        raise UserError(f"split 'test' of {dataset_dir} holds no objects: re-run prepare")
    objects = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    mean, sigma = (np.concatenate(values) for values in zip(*test_out, strict=True))
    return Encoded(objects, LightCurveArrays.concatenate(test), mean, sigma)


def fit_and_score(
    evidence: Evidence,
    target: np.ndarray,
    split: np.ndarray,
    known: np.ndarray,
    config: Config,
    object_id: np.ndarray | None = None,
    fit_rows: np.ndarray | None = None,
) -> tuple[Detector, dict[str, np.ndarray]]:
    """Fit the detector (train known), calibrate it (val known) and score every object; the
    train known objects out of fold.

    Args:
        evidence: every object; target, split, known: (n,) their class, split and whether they
            are of a known class.
        config: the run's config (its `eval` section).
        object_id: (n,) which rows are one object (complete and partial light curves): the
            cross-fitting folds hold out whole objects. None: every row is an object.
        fit_rows: (n,) bool, the rows the detector may be fitted and calibrated on (None: all):
            complete light curves only for a run trained without partial ones.
    """
    ev = config.eval
    usable = np.ones(len(target), bool) if fit_rows is None else np.asarray(fit_rows, bool)
    train = np.flatnonzero((split == "train") & known & usable)
    val = np.flatnonzero((split == "val") & known & usable)
    detector = Detector.fit(
        evidence.take(train), target[train], evidence.take(val), target[val], ev
    )
    scores = detector.score(evidence)
    if ev.cross_fit_folds >= 2:
        groups = None if object_id is None else object_id[train]
        oof = detector.out_of_fold(evidence.take(train), target[train], ev.cross_fit_folds, groups)
        for name, values in oof.items():
            scores[name][train] = values
    return detector, scores


def _baseline(evidence: Evidence, fit: np.ndarray, config: Config) -> np.ndarray:
    """Baseline (a): a forest on the light-curve package's (normalised) features alone."""
    columns = [FEATURE_NAMES.index(name) for name in LC_NAMES]
    view = dataclasses.replace(evidence, features=evidence.features[:, columns])
    forest = FeatureForest(config.eval).fit(view.take(np.flatnonzero(fit)), np.zeros(0))
    return forest.score(view)


def depth(
    table: pd.DataFrame, snr: np.ndarray, known: np.ndarray, anomaly_classes: list[int]
) -> dict[str, Any]:
    """Does the detector drift with depth? Per signal-to-noise tercile (`DEPTH_FEATURE`; tercile
    edges from the val known objects): the false-positive rate at the threshold on the val and
    the test split's known objects, and each anomaly class's test AUROC against the test known
    objects of the same tercile."""
    split = table["split"].to_numpy()
    flagged = table["flagged"].to_numpy(bool)
    score = table["anomaly_score"].to_numpy(np.float64)
    target = table["target"].to_numpy()
    val_known = (split == "val") & known
    finite = snr[val_known & np.isfinite(snr)]
    edges = np.quantile(finite, [1 / 3, 2 / 3]) if finite.size else np.full(2, np.nan)
    # Binned as the flag threshold bins them (no depth: the first).
    tercile = bin_index(snr, edges) if finite.size else np.zeros(snr.size, np.int64)
    rows = []
    for t in range(3):
        in_t = tercile == t
        row: dict[str, Any] = {
            "tercile": t,
            "log10_snr_range": [
                float(edges[t - 1]) if t else None,
                float(edges[t]) if t < 2 else None,
            ],
            "val_fpr": _rate(flagged[val_known & in_t]),
            "test_fpr": _rate(flagged[(split == "test") & known & in_t]),
        }
        for c in anomaly_classes:
            pos = (split == "test") & (target == c) & in_t
            neg = (split == "test") & known & in_t
            chosen = pos | neg
            row[f"auroc_{c}"] = (
                metrics.auroc(score[chosen], pos[chosen]) if pos.any() and neg.any() else math.nan
            )
            row[f"n_{c}"] = int(pos.sum())
        rows.append(row)
    return {"feature": DEPTH_FEATURE, "edges": edges.tolist(), "terciles": rows}


def _rate(flags: np.ndarray) -> float:
    """The fraction of True; NaN (without NumPy's warning) for no object."""
    return float(flags.mean()) if flags.size else math.nan


def _measure(
    config: Config,
    table: pd.DataFrame,
    in_test: np.ndarray,
    methods: dict[str, str],
    detector: Detector,
    checkpoint_epoch: int,
) -> dict[str, Any]:
    """The metrics of every method on the test split's known and anomaly objects."""
    ev, data = config.eval, config.data
    test = table[in_test]
    target, labels = test["target"].to_numpy(), test["is_anomaly"].to_numpy(bool)
    flagged = test["flagged"].to_numpy(bool)
    present = [c for c in data.anomaly_classes if (target == c).any()]
    if labels.all():
        raise UserError(
            f"the test split of {config.data.dataset_dir} holds no object of a known class, so "
            "nothing can be measured: prepare again with a larger data.test_fraction (or more "
            "objects)"
        )
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
            "train_known": detector.info["n_train_known"],
            "val_known": detector.info["n_val_known"],
            "val_known_per_group": detector.info["n_val_known_per_group"],
        },
        "realistic_anomaly_rate": ev.realistic_anomaly_rate,
        "n_draws": ev.n_draws,
        "n_bootstrap": ev.n_bootstrap,
        "classifier_head": config.model.classifier_head,
        "detector": {
            "components": list(detector.names),
            "fusion": detector.weights,
            "fusion_origin": config_lib.fusion_origin(config),
            "groups": detector.info["groups"],
            "cross_fit_folds": ev.cross_fit_folds,
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
                n_bootstrap=ev.n_bootstrap if name == "fused" else 0,
            )
            for name, column in methods.items()
        },
        # What a perfect ranking (every anomaly first) reaches: a recall in the top k is at most
        # k / (anomalies), and a top k as large as the split says nothing.
        "best_possible": metrics.detection_metrics(labels.astype(np.float64), labels),
        "threshold": {
            **detector.threshold.to_json(),
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
        recorded = runs.read_config(run_dir)
        given, config = config, dataclasses.replace(recorded, eval=config.eval)
        run_fusion = config_lib.validated_fusion(config.data)
        if given.eval.fusion == config_lib.validated_fusion(given.data) != run_fusion:
            # The fusion filled in for the classes given now is not the run's: `evaluate
            # --run-dir` of a `sn` run took rare's without a word (an audit).
            config = dataclasses.replace(
                config, eval=dataclasses.replace(config.eval, fusion=run_fusion)
            )
            log.info("eval.fusion: the run's classes' validated fusion, %s", ", ".join(run_fusion))
        evaluation = config_lib.differences(config, recorded, sections=("eval",))
        if evaluation:  # `evaluate --run-dir` of an `early` or `seed` run: the preset's are not
            log.info("evaluation settings given now, not the run's: %s", ", ".join(evaluation))
        # The evaluation settings against the run's model: head_maxprob fused for a run without
        # the head scored a constant (AUROC 0.5) without a word (an audit).
        config_lib.validate(config)
        ignored = config_lib.differences(given, config, sections=("data", "model", "train"))
        if ignored:
            log.warning(
                "evaluate uses the run's own data, model and training settings; not these, "
                "of this command's preset and --set: %s",
                ", ".join(ignored),
            )
        own_classes = config.data.tag != config.data.protocol
        if own_classes and config.eval.fusion == config_lib.VALIDATED_FUSION["rare"]:
            log.warning(
                "classes of your own (%s): the fusion is rare's, validated with each of rare's "
                "known classes held out in turn (some may be your anomalies); `plasticc-jax "
                "validate` with the same settings finds this protocol's own (then --set "
                "eval.fusion=...)",
                config.data.tag,
            )
        alone = config_lib.alone_in_their_kind(config.data)
        if alone:
            log.warning(
                "no known class is of the kind of the anomaly classes %s: they are scored "
                "against the known objects of the other kind, from which their kind alone "
                "(hostgal_photoz 0 or not) sets them apart; their AUROC measures that",
                ", ".join(f"{plasticc.class_name(c)} ({c})" for c in alone),
            )
        training = _training(run_dir, config)
        dataset_dir = workdir / config.data.dataset_dir
        with folder_lock(dataset_dir, "evaluate", shared=True):
            manifest = read_manifest(dataset_dir)
            provenance.check_run_dataset(run_dir, config, dataset_dir, manifest)
            # Until every output is written, the run is marked incomplete, and the old detector
            # loses its record: `score` refuses the run in between.
            # The figures' process starts first (its imports overlap the work) and is stopped
            # however the rest ends, marking the run incomplete included.
            figures = report.start_figures() if config.eval.figures else nullcontext()
            with figures as painter, provenance.incomplete(run_dir, "evaluate"):
                (run_dir / "models" / provenance.RECORD).unlink(missing_ok=True)
                # Writes of an evaluate that a kill interrupted (evaluate's folders only: a
                # validate may be writing beside them).
                remove_unfinished_writes(run_dir, "models", "reports", "reports/figures")
                _evaluate(config, run_dir, dataset_dir, manifest, painter, training)
    return run_dir


def _training(run_dir: Path, config: Config) -> dict[str, Any]:
    """How far the run's training got, for metrics.json and the report; a warning if it did not
    finish (found by an audit: a run killed at epoch 2 of 30 was evaluated without a word).

    Raises:
        UserError: no checkpoint yet (before the run is marked incomplete: nothing changes).
    """
    progress = runs.training_progress(run_dir)
    if progress is None:
        raise UserError(f"{run_dir} holds no finished checkpoint: {TRAIN_FIRST}")
    finished = progress.done(config.train)
    if not finished:
        log.warning(
            "the training of %s is unfinished: it stopped after epoch %d of %d (interrupted); "
            "evaluated as it is, with its best checkpoint so far (metrics.json and the report "
            "say so). `plasticc-jax train` with the same settings finishes it (it resumes), then "
            "evaluate again",
            run_dir,
            progress.epoch,
            config.train.max_epochs,
        )
    return {
        "epochs": progress.epoch,
        "max_epochs": config.train.max_epochs,
        "finished": finished,
        "stop_reason": (progress.stop_reason or "max_epochs") if finished else "interrupted",
    }


def _evaluate(
    config: Config,
    run_dir: Path,
    dataset_dir: Path,
    manifest: dict[str, Any],
    painter: FigureProcess | None,
    training: dict[str, Any],
) -> None:
    """The evaluation (`evaluate`'s locks held); `painter`: the figures' child process, None
    for no figures (`eval.figures`); `training`: how far training got (`_training`)."""
    ev = config.eval
    timing: dict[str, float] = {}
    start = time.perf_counter()

    vae = load_vae(run_dir, max_batch=ev.batch_size)
    encoded = encode_splits(vae, dataset_dir)
    rows = encoded.objects
    complete = np.isinf(rows["stage"])
    known_rows = np.isin(rows["target"], config.data.known_classes) & ~rows["is_anomaly"]
    evidence_rows = scoring.evidence(rows, vae.stats, vae.encoder.classes)
    # Everything below but the early-detection metrics is about objects: complete light curves.
    objects = {k: v[complete] for k, v in rows.items()}
    split, known = objects["split"], known_rows[complete]
    in_test = (split == "test") & (known | objects["is_anomaly"])
    umap = None
    if painter is not None and ev.umap:
        umap = report.start_umap(painter, objects["mu"][in_test], ev.seed)
    timing["encode_s"] = time.perf_counter() - start

    t = time.perf_counter()
    detector, score_rows = fit_and_score(
        evidence_rows,
        rows["target"],
        rows["split"],
        known_rows,
        config,
        object_id=rows["object_id"],
        fit_rows=stages.detector_rows(rows["object_id"], complete, config),
    )
    detector.save(run_dir / "models")
    scores = {k: v[complete] for k, v in score_rows.items()}
    evidence = evidence_rows.take(np.flatnonzero(complete))
    table = scoring.insert_rank(scoring.score_table(objects, scores, detector))
    # The test split at every stage: only with staged rows (`data.stages`, opt-in).
    staged = None if complete.all() else stages.early_table(rows, score_rows, detector)
    timing["detector_s"] = time.perf_counter() - t

    methods = {"fused": "anomaly_score", **{name: name for name in detector.names}}
    if ev.baselines:
        table["lc_forest_score"] = _baseline(evidence, (split == "train") & known, config)
        methods["lc_features"] = "lc_forest_score"
    interrupts.check()
    result = _measure(config, table, in_test, methods, detector, vae.epoch)
    result["training"] = training
    snr = objects["features"][:, FEATURE_NAMES.index(DEPTH_FEATURE)]
    result["depth"] = depth(table, snr, known, result["anomaly_classes_present"])
    if staged is not None:
        result["early"] = stages.early_metrics(
            staged, config.data.known_classes, result["anomaly_classes_present"], detector
        )
    # What these outputs were made from: the checkpoint measured and the dataset.
    result["checkpoint"] = provenance.checkpoint_record(vae.epoch, vae.params)
    result["dataset"] = provenance.dataset_record(dataset_dir, manifest)
    with atomic_path(run_dir / "scores.parquet") as tmp:
        provenance.write_parquet(table, tmp, result["checkpoint"])
    if staged is not None:
        with atomic_path(run_dir / "scores_stages.parquet") as tmp:
            staged.to_parquet(tmp, index=False)
    else:  # not left from an evaluation of staged rows
        (run_dir / "scores_stages.parquet").unlink(missing_ok=True)
    with atomic_path(run_dir / "scores.csv") as tmp:
        table.to_csv(tmp, index=False)
    tables = report.markdown_tables(result)
    atomic_write_text(run_dir / "metrics.md", report.metrics_heading(result) + tables)

    t = time.perf_counter()
    fig_dir = run_dir / "reports" / "figures"
    names = []
    if painter is None:
        report.remove_figures(fig_dir)  # none left from an evaluation with figures
    else:
        names = report.draw_figures(
            fig_dir,
            table[in_test],
            methods,
            result["anomaly_classes_present"],
            detector.threshold.values,
            report.examples(table, known, encoded.test, encoded.test_mean, encoded.test_sigma),
            GridSpec.from_config(config.data).bin_centres(),
            painter=painter,
            umap=umap,
            early=result.get("early"),
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
        threshold=detector.threshold.to_json(),
    )
    fused = result["methods"]["fused"]
    ci = fused.get("mean_class_auroc_ci")  # with eval.n_bootstrap > 0
    log.info(
        "evaluated %s in %.1f s: mean class AUROC %.3f%s; all anomalies pooled: AUROC %.3f, "
        "AP %.3f (test: %d known, %d anomalies); wrote %s",
        run_dir,
        timing["total_s"],
        fused["mean_class_auroc"],
        f" (95% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci and np.isfinite(ci).all() else "",
        fused["overall"]["auroc"],
        fused["overall"]["ap"],
        result["counts"]["test_known"],
        result["counts"]["test_anomaly"],
        run_dir / "report.md",
    )
