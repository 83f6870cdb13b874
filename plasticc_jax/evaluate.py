"""`make evaluate`: encode every prepared object, fit the anomaly detector, score, measure, draw.

Protocol (no anomaly label is used to fit or tune anything):

1. Encode all objects of the train, val and test splits with the run's best checkpoint
   (`TrainedVae.evaluate`, shard by shard): latent means, reconstruction NLL, KL.
2. Fit the Isolation Forest on the latent means of the **train** split's known classes; fit the
   fusion's ECDF references and the flag threshold on the **val** split's known classes
   (`anomaly.fit_detector`).
3. Score every object; rank within each split (1 = most anomalous).
4. Baselines on the same objects: (a) an Isolation Forest on hand-crafted light-curve features
   (`baselines`), fitted on the same train known objects; (b) reconstruction NLL per cell alone;
   (c) the forest on latents alone; (e) the KL alone. (d) is the fused score.
5. Metrics on the **test** split (known classes vs anomaly classes): AUROC and AP overall and per
   anomaly class, recall in the top 1/5/15% and top 100/1000/2000, purity of the top 100, and all
   of these at a realistic anomaly rate (`eval.realistic_anomaly_rate`, `eval.n_draws` draws).

Outputs in the run directory: `models/` (forest.skops, anomaly.json), `scores.parquet` and
`scores.csv`, `metrics.json`, `metrics.md`, `reports/figures/*.png`, `report.md`.
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

from plasticc_jax import anomaly, baselines, figures, metrics
from plasticc_jax import config as config_lib
from plasticc_jax.config import Config
from plasticc_jax.dataset import SPLITS, LightCurveArrays, iter_split, read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

# Method name -> column of the scores table, in the order of the report's tables.
METHODS: dict[str, str] = {
    "fused": "fused_score",
    "forest_latent": "forest_score",
    "recon": "recon_nll_per_cell",
    "chi2": "chi2_per_cell",
    "kl": "kl",
    "lc_features": "lc_forest_score",
}
METHOD_LABELS: dict[str, str] = {
    "fused": "fused (d)",
    "forest_latent": "forest on latents (c)",
    "recon": "reconstruction NLL (b)",
    "chi2": "reconstruction chi2",
    "kl": "latent KL",
    "lc_features": "forest on light-curve features (a)",
}
# What the detector needs from the VAE, per object.
OUTPUT_KEYS: tuple[str, ...] = ("mu", "logvar", "recon_nll", "n_observed", "kl", "chi2")
N_EXAMPLES = 3  # light curves per group in the reconstruction figure


def grid_times(data: config_lib.DataConfig) -> np.ndarray:
    """Centres of the time bins, (T,) days relative to each object's reference time."""
    width = (data.window_before + data.window_after) / data.n_time_bins
    return -data.window_before + (np.arange(data.n_time_bins) + 0.5) * width


def _run_config(config: Config, workdir: Path) -> tuple[Config, Path]:
    """The run's saved config, with the evaluation settings of the config given now."""
    run_dir = workdir / config.run_path
    path = run_dir / "config.json"
    if not path.is_file():
        raise UserError(
            f"no trained run at {run_dir} (missing config.json): run `make train` (or "
            "`plasticc-jax train`) with the same --config/--protocol/--set options first"
        )
    saved = config_lib.read_config(path)
    return dataclasses.replace(saved, eval=config.eval), run_dir


def reduced_chi2(arrays: LightCurveArrays, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Mean over observed cells of `(flux - mean)**2 / (flux_err**2 + sigma**2)`, (n,).

    The variance is the VAE likelihood's (`losses.masked_grid_nll`); the decoder's sigma is
    floored above 0, so no cell divides by zero. Objects without observed cells get 0.
    """
    observed = arrays.mask.astype(bool)
    z2 = np.square(arrays.flux - mean) / (np.square(arrays.flux_err) + np.square(sigma))
    z2 = np.where(observed, z2, np.float32(0.0))
    return z2.sum(axis=(1, 2), dtype=np.float64) / np.maximum(observed.sum(axis=(1, 2)), 1)


def vae_outputs(vae: Any, arrays: LightCurveArrays, batch_size: int) -> dict[str, np.ndarray]:
    """`TrainedVae.evaluate` outputs plus `chi2` (`reduced_chi2`), from one pass of the VAE."""
    out = vae.evaluate(arrays, batch_size, reconstruction=True)
    out["chi2"] = reduced_chi2(arrays, out.pop("mean"), out.pop("sigma"))
    return out


def encode_splits(vae: Any, dataset_dir: Path, batch_size: int) -> dict[str, np.ndarray]:
    """Encode every object of every split, shard by shard.

    Returns:
        Arrays over all n objects (splits in order train, val, test): object_id, split (str),
        target, is_anomaly (n,); mu, logvar (n, L); recon_nll, n_observed, kl, chi2 (n,).
    """
    parts = []
    for split in SPLITS:
        for shard in iter_split(dataset_dir, split):
            out = vae_outputs(vae, shard, batch_size)
            parts.append(
                {
                    "object_id": shard.object_id.astype(np.int64),
                    "split": np.full(len(shard), split),
                    "target": shard.target.astype(np.int64),
                    "is_anomaly": shard.is_anomaly.astype(bool),
                    **{k: np.asarray(out[k]) for k in OUTPUT_KEYS},
                }
            )
    if not parts:
        raise UserError(f"{dataset_dir} holds no objects: re-run prepare")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _raw_lightcurves(dataset_dir: Path, workdir: Path, object_ids: np.ndarray) -> pd.DataFrame:
    """Raw observations of the dataset's objects, from the files its manifest names."""
    from plasticc_jax.input_pipeline import read_lightcurves

    manifest = read_manifest(dataset_dir)
    frames = []
    for entry in manifest["inputs"]["files"]:
        if entry["kind"] != "lightcurves":
            continue
        path = Path(entry["path"])
        path = path if path.is_absolute() else workdir / path
        if not path.is_file():
            raise UserError(
                f"{path}, an input of {dataset_dir}, is missing: the light-curve-feature baseline "
                "reads the raw observations; restore it or set eval.baselines=false"
            )
        rows = read_lightcurves(path)
        frames.append(rows[rows["object_id"].isin(object_ids)])
    return pd.concat(frames, ignore_index=True)


def _populations(
    table: pd.DataFrame, known_classes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of (known-class objects, anomaly objects); unlabelled objects are in neither."""
    is_anomaly = table["is_anomaly"].to_numpy(bool)
    known = np.isin(table["target"].to_numpy(), known_classes) & ~is_anomaly
    return known, is_anomaly


def method_metrics(
    scores: np.ndarray,
    target: np.ndarray,
    is_anomaly: np.ndarray,
    anomaly_classes: tuple[int, ...],
    rate: float,
    n_draws: int,
    seed: int,
) -> dict[str, Any]:
    """All test-split metrics of one method (`scores` over known + anomaly objects only)."""
    per_class = {}
    for c in anomaly_classes:
        subset = ~is_anomaly | (target == c)
        labels = is_anomaly[subset]
        if labels.any():
            per_class[str(c)] = {
                "n": int(labels.sum()),
                "auroc": metrics.auroc(scores[subset], labels),
                "ap": metrics.average_precision(scores[subset], labels),
            }
    aurocs = [v["auroc"] for v in per_class.values()]
    out: dict[str, Any] = {
        "overall": metrics.detection_metrics(scores, is_anomaly),
        "per_class": per_class,
        "mean_class_auroc": float(np.mean(aurocs)) if aurocs else math.nan,
    }
    if is_anomaly.any() and (~is_anomaly).any() and n_draws >= 2:
        out["realistic"] = metrics.realistic_rate_metrics(scores, is_anomaly, rate, n_draws, seed)
    return out


def _markdown_tables(result: dict[str, Any]) -> str:
    """The metrics as two markdown tables (per-class separation; ranking quality)."""
    classes = result["anomaly_classes_present"]
    methods = result["methods"]

    def fmt(x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    head = ["method", "mean class AUROC", "AUROC all", "AP all"]
    head += [f"AUROC {figures.class_name(c)}" for c in classes]
    head += [f"AP {figures.class_name(c)}" for c in classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in methods.items():
        row = [METHOD_LABELS[name], fmt(m["mean_class_auroc"])]
        row += [fmt(m["overall"]["auroc"]), fmt(m["overall"]["ap"])]
        row += [fmt(m["per_class"][str(c)]["auroc"]) for c in classes]
        row += [fmt(m["per_class"][str(c)]["ap"]) for c in classes]
        lines.append("| " + " | ".join(row) + " |")
    keys = metrics.RANKING_KEYS
    rate = result["realistic_anomaly_rate"]
    head = ["method", *(k.replace("_", " ") for k in keys)]
    head += [f"AUROC @{rate:.0%}", f"AP @{rate:.0%}", f"purity top 100 @{rate:.0%}"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in methods.items():
        row = [METHOD_LABELS[name], *(fmt(m["overall"][k]) for k in keys)]
        real = m.get("realistic")
        for k in ("auroc", "ap", "purity_top_100"):
            row.append(f"{fmt(real['mean'][k])} ± {fmt(real['std'][k])}" if real else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _examples(
    vae: Any, dataset_dir: Path, table: pd.DataFrame, known: np.ndarray, anomalous: np.ndarray
) -> list[figures.Example]:
    """The top-scoring test anomalies and the most typical (median-score) known test objects."""
    test = (table["split"] == "test").to_numpy()
    fused = table["fused_score"].to_numpy()
    chosen: list[tuple[int, str]] = []
    top = np.flatnonzero(test & anomalous)
    for i in top[np.argsort(-fused[top], kind="stable")][:N_EXAMPLES]:
        chosen.append((i, "top anomaly"))
    typical = np.flatnonzero(test & known)
    if typical.size:
        median = np.median(fused[typical])
        for i in typical[np.argsort(np.abs(fused[typical] - median), kind="stable")][:N_EXAMPLES]:
            chosen.append((i, "typical known"))
    wanted = {int(table["object_id"].iat[i]): (i, why) for i, why in chosen}
    found: list[LightCurveArrays] = []
    for shard in iter_split(dataset_dir, "test"):
        keep = np.flatnonzero(np.isin(shard.object_id, list(wanted)))
        if keep.size:
            found.append(shard.take(keep))
    if not found:
        return []
    arrays = LightCurveArrays.concatenate(found)
    mean, sigma = vae.reconstruct(arrays)
    position = {int(o): k for k, o in enumerate(arrays.object_id)}
    examples = []
    for oid, (i, why) in wanted.items():
        k = position[oid]
        title = (
            f"{why}: {oid}, {table['class_name'].iat[i]}, "
            f"score {fused[i]:.2f} (rank {table['rank'].iat[i]})"
        )
        examples.append(
            figures.Example(
                title, arrays.flux[k], arrays.flux_err[k], arrays.mask[k], mean[k], sigma[k]
            )
        )
    return examples


def _report(result: dict[str, Any], manifest: dict, figure_names: list[str], tables: str) -> str:
    known = ", ".join(f"{figures.class_name(c)} ({c})" for c in result["known_classes"])
    anomalies = ", ".join(f"{figures.class_name(c)} ({c})" for c in result["anomaly_classes"])
    counts = result["counts"]
    fused = result["methods"]["fused"]
    threshold = result["threshold"]
    files = ", ".join(Path(f["path"]).name for f in manifest["inputs"]["files"])
    weights = ", ".join(f"{k} {w:g}" for k, w in result["fusion"]["weights"].items() if w > 0)
    lines = [
        f"# Anomaly detection report: {result['run']}",
        "",
        f"**Data.** {files} ({manifest['inputs']['format']} format); "
        f"{manifest['objects']['train']} train, {manifest['objects']['val']} val, "
        f"{manifest['objects']['test']} test objects on a {manifest['grid']['n_time_bins']}-bin "
        f"grid x 6 passbands; {manifest['rejected']['total']} input objects rejected.",
        "",
        f"**Protocol** `{result['protocol']}`. Known classes: {known}. Anomaly classes (never "
        f"seen in training, all in the test split): {anomalies}.",
        "",
        "**Method.** VAE trained on the train split of known classes (best checkpoint by val "
        f"loss, epoch {result['checkpoint_epoch']}). Isolation Forest "
        f"({result['forest']['n_estimators']} trees, {result['forest']['max_samples']} samples "
        "per tree) on the latent means of the train split's known classes. Fused score: weighted "
        f"mean of rank-normalised components (weights: {weights}), ranks "
        "against the val split of known classes (reported as -log10 of the mean tail "
        f"probability). Flag threshold {threshold['value']:.3f}, set for a false-positive rate of "
        f"{threshold['target_fpr']:.1%} on val known objects. No anomaly label is used to fit or "
        "tune anything.",
        "",
        f"**Test split**: {counts['test_known']} known-class objects, {counts['test_anomaly']} "
        f"anomalies ({counts['test_anomaly_fraction']:.1%}). Mean per-class AUROC of the fused "
        f"score: **{fused['mean_class_auroc']:.3f}**. At the threshold: false-positive rate on "
        f"test known {threshold['test_fpr_known']:.2%}, recall of anomalies "
        f"{threshold['test_recall']:.1%}. Realistic-rate columns subsample the anomalies to "
        f"{result['realistic_anomaly_rate']:.0%} of the test split ({result['n_draws']} draws, "
        "mean ± std).",
        "",
        tables,
        "",
    ]
    for name in figure_names:
        lines += [f"![{name}](reports/figures/{name})", ""]
    return "\n".join(lines)


def scores_table(enc: dict[str, np.ndarray], scored: dict[str, np.ndarray]) -> pd.DataFrame:
    """The per-object table: encoder outputs, component scores, fused score, rank, flag."""
    latent_dim = enc["mu"].shape[1]
    table = pd.DataFrame(
        {
            "object_id": enc["object_id"],
            "split": enc["split"],
            "target": enc["target"],
            "class_name": [figures.class_name(c) for c in enc["target"]],
            "is_anomaly": enc["is_anomaly"],
            **{f"mu_{j}": enc["mu"][:, j] for j in range(latent_dim)},
            "mean_logvar": enc["logvar"].mean(axis=1),
            "recon_nll": enc["recon_nll"],
            "n_observed": enc["n_observed"].astype(np.int64),
            "recon_nll_per_cell": scored["recon_nll_per_cell"],
            "chi2_per_cell": scored["chi2_per_cell"],
            "kl": enc["kl"],
            "forest_score": scored["forest_score"],
            "fused_score": scored["fused_score"],
        }
    )
    table["anomaly_score"] = table["fused_score"]
    # Rank within each split (1 = most anomalous); ties keep table order.
    ranks = table.groupby("split")["fused_score"].rank(ascending=False, method="first")
    table["rank"] = ranks.astype(np.int64)
    table["flagged"] = scored["flagged"]
    return table


def split_metrics(
    test: pd.DataFrame,
    methods: dict[str, str],
    anomaly_classes: tuple[int, ...],
    detector: anomaly.AnomalyDetector,
    ev: config_lib.EvalConfig,
) -> dict[str, Any]:
    """Metrics of every method on the test split (known-class and anomaly objects only)."""
    target, labels = test["target"].to_numpy(), test["is_anomaly"].to_numpy(bool)
    flagged = test["flagged"].to_numpy(bool)
    return {
        "methods": {
            name: method_metrics(
                test[column].to_numpy(np.float64),
                target,
                labels,
                anomaly_classes,
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


def draw_figures(
    fig_dir: Path,
    test: pd.DataFrame,
    test_mu: np.ndarray,
    methods: dict[str, str],
    anomaly_classes: list[int],
    threshold: float,
    examples: list[figures.Example],
    times: np.ndarray,
    *,
    umap: bool,
    seed: int,
) -> list[str]:
    """Write the report's figures; returns their file names."""
    target, labels = test["target"].to_numpy(), test["is_anomaly"].to_numpy(bool)
    figures.curve_figures(
        {METHOD_LABELS[m]: test[c].to_numpy() for m, c in methods.items()},
        target,
        labels,
        anomaly_classes,
        fig_dir / "roc.png",
        fig_dir / "pr.png",
    )
    figures.score_hist_figure(
        test["fused_score"].to_numpy(), target, labels, threshold, fig_dir / "score_hist.png"
    )
    names = ["roc.png", "pr.png", "score_hist.png"]
    if umap:
        path = fig_dir / "umap.png"
        figures.umap_figure(test_mu, target, labels, path, seed=seed, what="test split")
        names.append("umap.png")
    if examples:
        figures.reconstruction_figure(examples, times, fig_dir / "reconstructions.png")
        names.append("reconstructions.png")
    return names


def evaluate(config: Config, workdir: Path) -> Path:
    """Run the evaluation of a trained run; returns the run directory.

    Args:
        config: selects the run (`config.run_path`); its `eval` section applies, the data and
            model settings are the run's own (`<run>/config.json`).
        workdir: project folder; relative paths resolve against it.

    Raises:
        UserError: no trained run, no prepared dataset, or a split without the objects needed.
    """
    from plasticc_jax.encoder import load_vae

    workdir = Path(workdir)
    config, run_dir = _run_config(config_lib.resolve(config), workdir)
    ev = config.eval
    known_classes, anomaly_classes = config.data.classes()
    dataset_dir = workdir / config.data.dataset_dir
    manifest = read_manifest(dataset_dir)
    timing: dict[str, float] = {}
    start = time.perf_counter()

    vae = load_vae(run_dir, max_batch=ev.batch_size)
    enc = encode_splits(vae, dataset_dir, ev.batch_size)
    timing["encode_s"] = time.perf_counter() - start
    split = enc["split"]
    # Anything not of a known class (anomalies, unlabelled objects) is kept out of every fit.
    known_mask = np.isin(enc["target"], known_classes) & ~enc["is_anomaly"]

    def subset(name: str) -> dict[str, np.ndarray]:
        return {k: enc[k][split == name] for k in OUTPUT_KEYS}

    t = time.perf_counter()
    detector = anomaly.fit_detector(
        subset("train"),
        ~known_mask[split == "train"],
        subset("val"),
        ~known_mask[split == "val"],
        ev,
    )
    detector.save(run_dir / "models")
    table = scores_table(enc, detector.score({k: enc[k] for k in OUTPUT_KEYS}))
    timing["detector_s"] = time.perf_counter() - t

    methods = dict(METHODS)
    if ev.baselines:
        t = time.perf_counter()
        raw = _raw_lightcurves(dataset_dir, workdir, enc["object_id"])
        features = baselines.lightcurve_features(raw, enc["object_id"])
        fit = (split == "train") & known_mask
        forest = baselines.FeatureForest(ev).fit(features[fit], ~known_mask[fit])
        table["lc_forest_score"] = forest.score(features)
        timing["baseline_s"] = time.perf_counter() - t
    else:
        del methods["lc_features"]

    test_sel = (split == "test") & (known_mask | enc["is_anomaly"])
    test = table[test_sel]
    labels = test["is_anomaly"].to_numpy(bool)
    present = [c for c in anomaly_classes if (test["target"] == c).any()]
    if not labels.any():
        log.warning("the test split holds no anomaly: metrics that need anomalies are NaN")
    result: dict[str, Any] = {
        "run": config.run_path.name,
        "protocol": config.data.tag,
        "split": "test",
        "known_classes": list(known_classes),
        "anomaly_classes": list(anomaly_classes),
        "anomaly_classes_present": present,
        "checkpoint_epoch": vae.epoch,
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
        **split_metrics(test, methods, tuple(present), detector, ev),
    }

    with atomic_path(run_dir / "scores.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(run_dir / "scores.csv") as tmp:
        table.to_csv(tmp, index=False)
    tables = _markdown_tables(result)
    atomic_write_text(run_dir / "metrics.md", tables)

    t = time.perf_counter()
    names = draw_figures(
        run_dir / "reports" / "figures",
        test,
        enc["mu"][test_sel],
        methods,
        present,
        detector.threshold,
        _examples(vae, dataset_dir, table, known_mask, enc["is_anomaly"]),
        grid_times(config.data),
        umap=ev.umap,
        seed=ev.seed,
    )
    timing["figures_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - start
    result["timing_s"] = timing
    result["figures"] = [f"reports/figures/{n}" for n in names]
    atomic_write_text(run_dir / "metrics.json", json.dumps(_jsonable(result), indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", _report(result, manifest, names, tables))
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
    return run_dir


def _jsonable(value: Any) -> Any:
    """NaN -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
