"""The evaluation report: which methods are compared, the markdown tables, `report.md`, and which
figures are drawn from what (`figures` draws them).

Everything here reads results the `evaluate` stage has computed; nothing is fitted or measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from plasticc_jax import metrics, plasticc
from plasticc_jax.calibration import FlagThreshold
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.inputs import FORMAT_NAMES
from plasticc_jax.plasticc import class_name

if TYPE_CHECKING:
    from concurrent.futures import Future

    from plasticc_jax.figures import Example, FigureProcess

# How each method (a score column; see `evaluate`) is named in the tables.
METHOD_LABELS: dict[str, str] = {
    "fused": "**anomaly score (fused)**",
    "latent_knn": "kNN distance in the latent space",
    "latent_mahalanobis": "Mahalanobis distance in the latent space",
    "latent_forest": "Isolation Forest on the latent space",
    "head_maxprob": "1 - max probability of the VAE head",
    "recon_chi2": "reconstruction chi2",
    "classifier": "1 - max probability of the classifier (GBT)",
    "gp_classifier": "1 - max probability of the classifier with the GP features (GBT)",
    "feature_mahalanobis": "Mahalanobis distance in the features",
    "feature_knn": "kNN distance in the features",
    "feature_forest": "Isolation Forest on the features",
    "lc_features": "baseline (a): forest on light-curve features",
}
N_EXAMPLES = 3  # typical known light curves in the reconstruction figure (and anomalies at least)
# What each figure of `report.md` shows: its caption there.
FIGURE_CAPTIONS: dict[str, str] = {
    "roc.png": "ROC curves of every score on the test split: all anomalies, then each anomaly "
    "class, against the known-class objects (AUROC in the legend; the fused score in black).",
    "pr.png": "Precision-recall curves, the same panels (average precision in the legend; the "
    "dotted line is a random ranking, the panel's share of anomalies).",
    "score_hist.png": "The anomaly score per class on the test split (anomaly classes in red; "
    "the dashed lines are the flag thresholds, one per depth bin, each object held to its own "
    "bin's; the axis linear up to 1, logarithmic beyond).",
    "umap.png": "A UMAP map of the VAE's latent means of the test split: known classes as "
    "coloured dots, anomaly classes as black markers.",
    "reconstructions.png": "The top-scoring test anomaly of each anomaly class (the best "
    "first) and the most typical known test objects (median score): observed grid cells per "
    "passband and the VAE's reconstruction (mean ± sigma), in days from the object's reference "
    "time (`data.time_anchor`: by default its detection of highest signal-to-noise).",
    "early.png": "Early detection: each anomaly class's AUROC against the known classes and its "
    "recall in the top 1% of its objects and the known ones (dotted: what a perfect ranking "
    "reaches there), by days since first detection. An object not yet scorable ranks last, so "
    "a class mostly unscorable at a stage can fall below chance: the share "
    "scorable is in metrics.json (`scorable_<class>`).",
}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _pct(x: float | None, places: int) -> str:
    """A rate as a percentage with `places` decimals: n/a where undefined, and a small rate with
    its own first digits where the decimals would round it to 0 (a review: "nan%", "@0%")."""
    if x is None or math.isnan(x):
        return "n/a"
    text = f"{x:.{places}%}"
    return text if not x or float(text[:-1]) else f"{100 * x:.2g}%"


def _range(low: float | None, high: float | None) -> str:
    """`1.29 - 1.71`, `< 1.29` or `> 1.71` (an open end is None)."""
    if low is not None and high is not None:
        return f"{low:.2f} - {high:.2f}"
    if high is not None:
        return f"< {high:.2f}"
    return f"> {low:.2f}" if low is not None else ""


def _label(name: str, weights: dict[str, float]) -> str:
    label = METHOD_LABELS.get(name, name)
    return f"{label} (weight {weights[name]:.3f})" if name in weights else label


def _train_rows(cross_fit_folds: int) -> str:
    """How the train split's known objects were scored (`evaluate.fit_and_score`)."""
    if cross_fit_folds >= 2:
        return (
            f"Train known objects are scored out of fold ({cross_fit_folds} folds; the fused "
            "components only; the VAE, trained on them, still sees them in-sample, so their "
            "scores run low and no metric uses them)."
        )
    return "Train known objects are scored in-sample (`eval.cross_fit_folds` below 2)."


def _table_head(caption: str, head: list[str]) -> list[str]:
    """A table's caption (in italics) and its header lines."""
    return [f"*{caption}*", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def metrics_heading(result: dict[str, Any]) -> str:
    """`metrics.md`'s first line: what its tables measure, so that they keep their context when
    copied on their own."""
    counts = result["counts"]
    return (
        f"# {result['run']}: protocol {result['protocol']}, {result['split']} split "
        f"({counts['test_known']:,} known objects, {counts['test_anomaly']:,} anomalies), "
        f"checkpoint of epoch {result['checkpoint_epoch']}; fused: "
        + ", ".join(f"{name} {w:.3g}" for name, w in result["detector"]["fusion"].items())
        + "\n\n"
    )


def _with_interval(value: float, interval: list[float] | None) -> str:
    """A table cell: the value, and its 95% interval in brackets where there is one."""
    cell = _fmt(value)
    return f"{cell} [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else cell


def markdown_tables(result: dict[str, Any]) -> str:
    """The metrics as markdown tables: per-class separation, ranking quality, depth."""
    classes = result["anomaly_classes_present"]
    methods = result["methods"]
    weights = result["detector"]["fusion"]
    head = ["method", "mean class AUROC", "AUROC all", "AP all"]
    head += [f"AUROC {class_name(c)}" for c in classes]
    head += [f"AP {class_name(c)}" for c in classes]
    lines = _table_head(
        "Separation, test split: AUROC and average precision (AP) of each score, all anomalies "
        "and each anomaly class against the known-class objects.",
        head,
    )
    for name, m in methods.items():
        row = [
            _label(name, weights),
            _with_interval(m["mean_class_auroc"], m.get("mean_class_auroc_ci")),
        ]
        row += [_fmt(m["overall"]["auroc"]), _fmt(m["overall"]["ap"])]
        for c in classes:
            entry = m["per_class"][str(c)]
            row.append(_with_interval(entry["auroc"], entry.get("auroc_ci")))
        row += [_fmt(m["per_class"][str(c)]["ap"]) for c in classes]
        lines.append("| " + " | ".join(row) + " |")
    keys = metrics.RANKING_KEYS
    rate = result["realistic_anomaly_rate"]
    head = ["method", *(k.replace("_", " ") for k in keys)]
    real_keys = ("auroc", "ap", "precision_at_n_anomalies")
    at = _pct(rate, 0)
    head += [f"AUROC @{at}", f"AP @{at}", f"precision at k=n anomalies @{at}"]
    ranking = (
        "Ranking, test split: the share of the anomalies among the top-ranked objects (recall), "
        "the share of anomalies there (purity, precision), and at a realistic anomaly rate "
        f"(anomalies subsampled to {at}, mean ± std of the draws)."
    )
    lines += ["", *_table_head(ranking, head)]
    for name, m in methods.items():
        row = [_label(name, weights), *(_fmt(m["overall"][k]) for k in keys)]
        real = m.get("realistic")
        for k in real_keys:
            row.append(f"{_fmt(real['mean'][k])} ± {_fmt(real['std'][k])}" if real else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    best = result.get("best_possible")
    if best:  # the ceiling of each column on this split (older metrics.json: none)
        row = ["*best possible (every anomaly ranked first)*", *(_fmt(best[k]) for k in keys)]
        lines.append("| " + " | ".join([*row, "", "", ""]) + " |")
    depth = result.get("depth")
    if depth:
        head = ["SNR tercile", "log10 peak S/N", "FPR val known", "FPR test known"]
        head += [f"AUROC {class_name(c)} (n)" for c in classes]
        caption = (
            "Depth: per signal-to-noise tercile (edges from the val known objects), the "
            "false-positive rate at the flag threshold (on val, in-sample: the thresholds are "
            "set on those objects) and the fused score's AUROC per anomaly class (n: its objects "
            "in the tercile)."
        )
        lines += ["", *_table_head(caption, head)]
        for row_data in depth["terciles"]:
            span = _range(*row_data["log10_snr_range"])
            row = [["low", "middle", "high"][row_data["tercile"]], span]
            row += [_pct(row_data["val_fpr"], 2), _pct(row_data["test_fpr"], 2)]
            row += [f"{_fmt(row_data[f'auroc_{c}'])} ({row_data[f'n_{c}']})" for c in classes]
            lines.append("| " + " | ".join(row) + " |")
    early = result.get("early")
    if early:
        lines += ["", early_table(early, classes)]
    return "\n".join(lines) + "\n"


def _reached(threshold: dict[str, Any]) -> str:
    """The false-positive rate the threshold reaches on the val known objects themselves: a
    quantile of a few hundred objects falls short of the target (absent in older results)."""
    rate = threshold.get("val_fpr_known")
    if rate is None:
        return ""
    flags = _pct(rate, 2)
    return f"; it flags {flags} of them (a score must exceed the threshold, one of their scores)"


def _rejected(rejected: dict[str, Any]) -> str:
    """The prepared dataset's rejected input objects, and why: those of classes outside the
    protocol are left out by design, the others are input problems."""
    reasons = rejected.get("by_reason", {})
    outside = sum(n for reason, n in reasons.items() if reason.endswith("not in protocol"))
    if not outside:
        return f"{rejected['total']} input objects rejected"
    problems = rejected["total"] - outside
    return (
        f"{outside} input objects of classes outside the protocol left out, {problems} "
        "rejected for their data"
    )


def _unfinished(result: dict[str, Any]) -> str:
    """A note in the method's sentence when training was cut short (absent in older results)."""
    training = result.get("training") or {}
    if training.get("finished", True):
        return ""
    return (
        f"; **training unfinished**: stopped after epoch {training['epochs']} of "
        f"{training['max_epochs']}, interrupted"
    )


def _early_paragraph(early: dict[str, Any] | None) -> list[str]:
    if not early:
        return []
    parts = [
        f"{r['stage']} d {_fmt(r['mean_class_auroc'])}"
        for r in early["rows"]
        if r["days"] is not None
    ]
    return [
        "**Early detection** (last tables, `early.png`): each test object scored with its light "
        "curve as known that many days after its first detection (an object with too few "
        "observations by then ranks last). Mean per-class AUROC by day: "
        + ", ".join(parts)
        + f"; complete {_fmt(early['rows'][-1]['mean_class_auroc'])}.",
        "",
    ]


def early_table(early: dict[str, Any], classes: list[int]) -> str:
    """Early detection (`stages.early_metrics`): per stage, each anomaly class's AUROC and
    recall in the top 1%, the known flag rate; then the median days to the first flag."""
    head = ["days since first detection", "mean class AUROC"]
    head += [f"AUROC {class_name(c)}" for c in classes]
    head += [f"recall top 1% {class_name(c)}" for c in classes]
    head += ["flag rate known", "of those scorable"]
    lines = _table_head(
        "Early detection, test split: each object scored with its light curve as known that "
        "many days after its first detection (AUROC against the known classes, recall in the top "
        "1% of the class's objects and the known ones together (at most the last row's), and the "
        "share of known objects flagged: of all, an object without enough observations by then "
        "counted as not flagged, and of those with enough to be scored).",
        head,
    )
    for row in early["rows"]:
        cells = [row["stage"], _fmt(row["mean_class_auroc"])]
        cells += [_fmt(row[f"auroc_{c}"]) for c in classes]
        cells += [_fmt(row[f"recall_top1_{c}"]) for c in classes]
        scorable = row["known_scorable"]
        of_scorable = _pct(row["known_flag_rate"] / scorable, 2) if scorable > 0 else "n/a"
        cells += [_pct(row["known_flag_rate"], 2), of_scorable]
        lines.append("| " + " | ".join(cells) + " |")
    first = early["rows"][0]
    if all(f"recall_top1_best_{c}" in first for c in classes):  # not in earlier releases'
        cells = ["a perfect ranking", _fmt(1.0), *(_fmt(1.0) for _ in classes)]
        cells += [_fmt(first[f"recall_top1_best_{c}"]) for c in classes]
        lines.append("| " + " | ".join([*cells, "", ""]) + " |")
    head = ["class", "objects", "median days to first flag", "flagged at some stage"]
    caption = (
        "How early each anomaly class crosses the flag threshold: the median over its objects "
        "of the first stage that flags each (an object never flagged counts as later than every "
        "stage)."
    )
    lines += ["", *_table_head(caption, head)]
    for c in classes:
        entry = early["first_crossing"][str(c)]
        median = entry["median_days"]
        cells = [class_name(c), str(entry["n"])]
        cells.append("not within the stages" if median is None else f"{median:g}")
        cells.append(_pct(entry["fraction_flagged"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Where the fusion weights came from (`config.fusion_origin`), in the report's method sentence.
FUSION_ORIGINS: dict[str, str] = {
    "validated": "chosen by the leave-one-known-class-out validation",
    "rare": "rare's, chosen by rare's leave-one-known-class-out validation: not validated on "
    "these classes (`plasticc-jax validate` finds their own)",
    "given": "given in eval.fusion",
}


def report_markdown(
    result: dict[str, Any], manifest: dict, figure_names: list[str], tables: str
) -> str:
    """`report.md`: data, protocol, method, headline numbers, the tables and the figures."""
    known = ", ".join(f"{class_name(c)} ({c})" for c in result["known_classes"])
    anomalies = ", ".join(f"{class_name(c)} ({c})" for c in result["anomaly_classes"])
    counts = result["counts"]
    fused = result["methods"]["fused"]
    threshold = result["threshold"]
    files = ", ".join(Path(f["path"]).name for f in manifest["inputs"]["files"])
    weights = ", ".join(f"{k} {w:.3f}" for k, w in result["detector"]["fusion"].items())
    stand_ins = all(c in plasticc.TRAINING_CLASSES for c in result["anomaly_classes"])
    fmt = manifest["inputs"]["format"]
    per_group = result["counts"].get("val_known_per_group") or {"": result["counts"]["val_known"]}
    # An early run's references hold each object's complete and partial light curves.
    unit = "light curves" if result.get("early") else "objects"
    by_size: dict[int, list[str]] = {}  # kinds of the same reference said once
    for group, n in per_group.items():
        by_size.setdefault(n, []).append(group)
    beyond = " or ".join(
        f"{math.log10(n + 1):.1f} ("
        + (f"{' and '.join(groups)}, " if any(groups) else "")
        + f"{n} {unit})"
        for n, groups in by_size.items()
    )
    vae = "A VAE with a classification head" if result.get("classifier_head", True) else "A VAE"
    mean_ci = fused.get("mean_class_auroc_ci")  # absent in the metrics of earlier releases
    intervals = (
        f" [{_fmt(mean_ci[0])}, {_fmt(mean_ci[1])}] (95% bootstrap intervals, per class in the "
        "table in brackets)"
        if mean_ci
        else " (95% bootstrap intervals per class in brackets)"
        if result.get("n_bootstrap", 1)
        else ""
    )
    drawn = fused.get("realistic") or {}
    reached = (
        f"; reached {_pct(drawn['rate'], 1)} with {drawn['n_anomalies']} anomalies a draw"
        if "rate" in drawn
        else ""
    )
    lines = [
        f"# Anomaly detection report: {result['run']}",
        "",
        f"**Data.** {files} ({FORMAT_NAMES.get(fmt, fmt + ' format')}); "
        f"{manifest['objects']['train']} train, {manifest['objects']['val']} val, "
        f"{manifest['objects']['test']} test objects on a {manifest['grid']['n_time_bins']}-bin "
        f"grid x 6 passbands; {_rejected(manifest['rejected'])}.",
        "",
        f"**Protocol** `{result['protocol']}`. Known classes: {known}. Anomaly classes (never "
        f"seen in training, all in the test split): {anomalies}."
        + (
            " They are known PLAsTiCC classes held out of every fit, standing in for unknown "
            "ones (PLAsTiCC's own unknown classes, 991-995, are in its test set only)."
            if stand_ins
            else ""
        ),
        "",
        f"**Method.** {vae}, trained on the train split of known "
        f"classes (best checkpoint by val loss, epoch {result['checkpoint_epoch']}"
        f"{_unfinished(result)}); detector "
        f"components ({', '.join(result['detector']['components'])}) fitted per kind "
        f"({', '.join(result['detector']['groups'])}) on the train split's known objects, each "
        "calibrated as -log10 of its tail probability among the val split's known objects of "
        f"the same kind, and fused by a weighted mean (weights: {weights}; "
        f"{FUSION_ORIGINS[result['detector'].get('fusion_origin', 'validated')]}). The anomaly "
        "score is the fused evidence "
        f"calibrated once more the same way (a score of 2 means that 1 in 100 val known {unit} "
        f"score this high; a score above {beyond} lies beyond every val known one of its kind, "
        "where a "
        "fitted exponential tail orders the objects: not a measured frequency). "
        f"Flag threshold {FlagThreshold.from_json(threshold).describe()}, set for a "
        f"false-positive rate of {_pct(threshold['target_fpr'], 1)} on val known objects"
        f"{' in each depth bin' if threshold['edges'] else ''}"
        + (
            " (their complete and partial light curves pooled: the depth table below bins the "
            "complete ones alone)"
            if result.get("early")
            else ""
        )
        + _reached(threshold)
        + ". "
        + _train_rows(result["detector"]["cross_fit_folds"])
        + " Components without a weight are shown for comparison"
        + (
            "; baseline (a) is an Isolation Forest on the `light-curve` package's features "
            "alone, fitted on the train split's known objects (no network, no labels)"
            if "lc_features" in result["methods"]
            else ""
        )
        + ". No anomaly label is used to fit or tune anything.",
        "",
        f"**Test split**: {counts['test_known']} known-class objects, {counts['test_anomaly']} "
        f"anomalies ({_pct(counts['test_anomaly_fraction'], 1)}). Mean per-class AUROC of the "
        f"anomaly score: **{fused['mean_class_auroc']:.3f}**{intervals}. At the threshold: "
        "false-positive rate on "
        f"test known {_pct(threshold['test_fpr_known'], 2)}, recall of anomalies "
        f"{_pct(threshold['test_recall'], 1)}. Realistic-rate columns subsample the anomalies to "
        f"{_pct(result['realistic_anomaly_rate'], 0)} of the test split{reached} "
        f"({result['n_draws']} draws, mean ± std).",
        "",
        *_early_paragraph(result.get("early")),
        tables,
        "",
    ]
    for name in figure_names:
        lines += [f"![{name}](reports/figures/{name})", ""]
        if name in FIGURE_CAPTIONS:
            lines += [f"*{FIGURE_CAPTIONS[name]}*", ""]
    if not figure_names:
        lines += ["No figures: evaluated with `eval.figures = false`.", ""]
    return "\n".join(lines)


def examples(
    table: pd.DataFrame,
    known: np.ndarray,
    test: LightCurveArrays,
    mean: np.ndarray,
    sigma: np.ndarray,
) -> list[Example]:
    """The top-scoring test anomalies, of as many classes as there are (each class's best
    first), and the most typical (median-score) known test objects.

    Args:
        table: the score table (with `rank`); known: (len(table),) bool, known-class objects.
        test: the test split's arrays, with `mean`, `sigma` (n_test, n_bands, n_times) their
            reconstruction.
    """
    from plasticc_jax.figures import Example  # matplotlib: imported when figures are drawn

    in_test = (table["split"] == "test").to_numpy()
    anomalous = table["is_anomaly"].to_numpy(bool)
    score = table["anomaly_score"].to_numpy()
    chosen: list[tuple[int, str]] = []
    top = np.flatnonzero(in_test & anomalous)
    top = top[np.argsort(-score[top], kind="stable")]
    target = table["target"].to_numpy()
    _, best_of_class = np.unique(target[top], return_index=True)
    first = top[np.sort(best_of_class)]  # one of each class, by score
    rest = top[~np.isin(top, first)]
    for i in np.r_[first, rest][: max(N_EXAMPLES, first.size)]:
        chosen.append((int(i), "top anomaly"))
    typical = np.flatnonzero(in_test & known)
    if typical.size:
        median = np.median(score[typical])
        for i in typical[np.argsort(np.abs(score[typical] - median), kind="stable")][:N_EXAMPLES]:
            chosen.append((i, "typical known"))
    position = {int(o): k for k, o in enumerate(test.object_id)}
    drawn = []
    for i, why in chosen:
        oid = int(table["object_id"].iat[i])
        k = position[oid]
        title = (
            f"{why}: {oid}, {table['class_name'].iat[i]}, "
            f"score {score[i]:.2f} (rank {table['rank'].iat[i]} of {in_test.sum()})"
        )
        drawn.append(
            Example(title, test.flux[k], test.flux_err[k], test.mask[k], mean[k], sigma[k])
        )
    return drawn


def draw_figures(
    fig_dir: Path,
    test: pd.DataFrame,
    methods: dict[str, str],
    anomaly_classes: list[int],
    thresholds: Sequence[float],
    chosen: list[Example],
    times: np.ndarray,
    *,
    painter: FigureProcess,
    umap: Future | None,
    early: dict[str, Any] | None = None,
) -> list[str]:
    """Write the report's figures; returns their file names.

    Args:
        fig_dir: where the PNGs go.
        test: the score table's test rows of known and anomaly objects.
        methods: method name -> score column, one curve each.
        anomaly_classes: the anomaly classes present in `test`.
        thresholds: the flag thresholds of the anomaly score (one per depth bin).
        chosen: the light curves of the reconstruction figure (`examples`).
        times: (n_time_bins,) bin centres in days from each object's reference time.
        painter: the child process that draws the ROC and PR curves meanwhile (`start_figures`).
        umap: the UMAP embedding of their latent means (`start_umap`), or None for no UMAP
            figure.
        early: the early-detection metrics (`stages.early_metrics`): AUROC vs days.
    """
    from plasticc_jax import figures  # matplotlib: imported when figures are drawn

    target, labels = test["target"].to_numpy(), test["is_anomaly"].to_numpy(bool)
    curves = painter.submit(
        figures.curve_figures,
        {METHOD_LABELS.get(m, m).strip("*"): test[c].to_numpy() for m, c in methods.items()},
        target,
        labels,
        anomaly_classes,
        fig_dir / "roc.png",
        fig_dir / "pr.png",
        [label.strip("*") for name, label in METHOD_LABELS.items() if name != "fused"],
    )
    figures.score_hist_figure(
        test["anomaly_score"].to_numpy(),
        target,
        labels,
        thresholds,
        test["flagged"].to_numpy(bool),
        fig_dir / "score_hist.png",
    )
    names = ["roc.png", "pr.png", "score_hist.png"]
    if umap is not None:
        path = fig_dir / "umap.png"
        figures.umap_figure(umap.result(), target, labels, path, what="test split")
        names.append("umap.png")
    if chosen:
        figures.reconstruction_figure(chosen, times, fig_dir / "reconstructions.png")
        names.append("reconstructions.png")
    if early:
        figures.early_figure(early, anomaly_classes, fig_dir / "early.png")
        names.append("early.png")
    curves.result()
    # A figure an earlier evaluation drew and this one does not (UMAP then, not now) goes: it
    # showed another checkpoint beside these scores (a review).
    for stale in set(FIGURE_CAPTIONS) - set(names):
        (fig_dir / stale).unlink(missing_ok=True)
    return names


def remove_figures(fig_dir: Path) -> None:
    """Delete the PNGs in `fig_dir` (a run's figures, from an earlier evaluation)."""
    for path in fig_dir.glob("*.png"):
        path.unlink()


def jsonable(value: Any) -> Any:
    """NaN -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def start_figures() -> FigureProcess:
    """The child process of `draw_figures` (`figures.FigureProcess`), started at once so that
    its imports (and the UMAP embedding, `start_umap`) run while the detector is fitted."""
    from plasticc_jax import figures  # matplotlib: imported when figures are drawn

    return figures.FigureProcess()


def start_umap(painter: FigureProcess, latents: np.ndarray, seed: int) -> Future:
    """The UMAP embedding of the latent means for `draw_figures`, in `painter`'s process."""
    from plasticc_jax import figures

    return painter.submit(figures.umap_embedding, latents, seed=seed)
