"""The evaluation report: which methods are compared, the markdown tables, `report.md`, and which
figures are drawn from what (`figures` draws them).

Everything here reads results the `evaluate` stage has computed; nothing is fitted or measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from plasticc_jax import metrics
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.plasticc import class_name

if TYPE_CHECKING:
    from plasticc_jax.figures import Example

# Method name -> column of the score table, in the order of the report's tables.
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
N_EXAMPLES = 3  # light curves per group in the reconstruction figure


def markdown_tables(result: dict[str, Any]) -> str:
    """The metrics as two markdown tables (per-class separation; ranking quality)."""
    classes = result["anomaly_classes_present"]
    methods = result["methods"]

    def fmt(x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    head = ["method", "mean class AUROC", "AUROC all", "AP all"]
    head += [f"AUROC {class_name(c)}" for c in classes]
    head += [f"AP {class_name(c)}" for c in classes]
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


def examples(
    table: pd.DataFrame,
    known: np.ndarray,
    test: LightCurveArrays,
    mean: np.ndarray,
    sigma: np.ndarray,
) -> list[Example]:
    """The top-scoring test anomalies and the most typical (median-score) known test objects.

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
    for i in top[np.argsort(-score[top], kind="stable")][:N_EXAMPLES]:
        chosen.append((i, "top anomaly"))
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
            f"score {score[i]:.2f} (rank {table['rank'].iat[i]})"
        )
        drawn.append(
            Example(title, test.flux[k], test.flux_err[k], test.mask[k], mean[k], sigma[k])
        )
    return drawn


def draw_figures(
    fig_dir: Path,
    test: pd.DataFrame,
    test_mu: np.ndarray,
    methods: dict[str, str],
    anomaly_classes: list[int],
    threshold: float,
    chosen: list[Example],
    times: np.ndarray,
    *,
    umap: bool,
    seed: int,
) -> list[str]:
    """Write the report's figures; returns their file names.

    Args:
        fig_dir: where the PNGs go.
        test: the score table's test rows of known and anomaly objects; test_mu: their (n, L)
            latent means.
        methods: method name -> score column, one curve each.
        anomaly_classes: the anomaly classes present in `test`.
        threshold: the flag threshold of the anomaly score.
        chosen: the light curves of the reconstruction figure (`examples`).
        times: (n_time_bins,) bin centres in days from each object's reference time.
        umap: draw the UMAP of the latent means; seed: its seed.
    """
    from plasticc_jax import figures  # matplotlib: imported when figures are drawn

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
        test["anomaly_score"].to_numpy(), target, labels, threshold, fig_dir / "score_hist.png"
    )
    names = ["roc.png", "pr.png", "score_hist.png"]
    if umap:
        path = fig_dir / "umap.png"
        figures.umap_figure(test_mu, target, labels, path, seed=seed, what="test split")
        names.append("umap.png")
    if chosen:
        figures.reconstruction_figure(chosen, times, fig_dir / "reconstructions.png")
        names.append("reconstructions.png")
    return names


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
