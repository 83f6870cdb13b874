"""Report figures (PNG), drawn with matplotlib's object API (`Figure`, Agg canvas, no pyplot
state), so they work headless and from worker threads.

Every function takes plain arrays and a path, and writes one PNG.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from plasticc_jax import metrics, plasticc, processes
from plasticc_jax.io_utils import atomic_path
from plasticc_jax.plasticc import class_name

log = logging.getLogger(__name__)
T = TypeVar("T")

DPI = 110
# u, g, r, i, z, y: Okabe & Ito's colour-blind-safe palette, and a marker per band so that no band
# is told by its colour alone (the review page draws them alike).
BAND_COLOURS: tuple[str, ...] = ("#cc79a7", "#0072b2", "#009e73", "#e69f00", "#d55e00", "#000000")
BAND_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")
# The training classes' colours, the same in every run: tab10's for the ten classes `rare` knows,
# four of Dark2's for its anomalies, chosen so that no two classes drawn together in a shipped
# protocol's figures share a hue (tab20's light shades did).
CLASS_COLOURS: dict[int, str] = {
    **dict(
        zip(
            (15, 16, 42, 52, 62, 65, 67, 88, 90, 92),
            ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
             "#7f7f7f", "#bcbd22", "#17becf"),
            strict=True,
        )
    ),
    6: "#7570b3",
    53: "#e7298a",
    64: "#e6ab02",
    95: "#66a61e",
}  # fmt: skip


def _palette(n: int) -> list[tuple]:
    """`n` colours, distinct up to 20 (then repeating)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    # tab20 pairs a dark and a light shade of each hue: take the ten dark ones first.
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return [cmap(order[i % 20]) for i in range(n)]


def _class_colours(classes: Sequence[int]) -> dict[int, tuple | str]:
    """A colour per class, the same in every run and figure (`CLASS_COLOURS`; other classes
    take the rest of Dark2's, by code)."""
    from matplotlib import colormaps

    others = sorted(set(map(int, classes)) - set(CLASS_COLOURS))
    spare = [colormaps["Dark2"].colors[i] for i in (0, 1, 6, 7)]
    extra = {c: spare[i % len(spare)] for i, c in enumerate(others)}
    return {int(c): CLASS_COLOURS.get(int(c)) or extra[int(c)] for c in classes}


def _save(fig: Figure, path: Path) -> Path:
    """Write the figure atomically (a kill leaves the previous file or none, never half of one)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=DPI, bbox_inches="tight")
    log.info("wrote %s", path)
    return path


def _panels(target: np.ndarray, is_anomaly: np.ndarray, anomaly_classes: Sequence[int]):
    """(title, subset mask, labels) per panel: all anomalies, then each anomaly class vs known."""
    known = ~is_anomaly
    yield "all anomalies", np.ones_like(known), is_anomaly
    for c in anomaly_classes:
        subset = known | (target == c)
        if (target[subset] == c).any():
            yield f"{class_name(c)} ({c})", subset, is_anomaly[subset]


def curve_figures(
    scores: Mapping[str, np.ndarray],
    target: np.ndarray,
    is_anomaly: np.ndarray,
    anomaly_classes: Sequence[int],
    roc_path: Path,
    pr_path: Path,
    every_method: Sequence[str] = (),
) -> tuple[Path, Path]:
    """ROC and precision-recall curves per anomaly class and overall, one line per method.

    Args:
        scores: method name -> (n,) scores (higher = more anomalous), on the test split; the
            first (the headline score) is drawn black and thick, on top of the others.
        target: (n,) class labels.
        is_anomaly: (n,) bool.
        anomaly_classes: the protocol's anomaly classes (one panel each, if present).
        every_method: the names of every method there may be, in a fixed order: a method's
            colour is its place there, the same in every run (others follow).
    """
    is_anomaly = np.asarray(is_anomaly, bool)
    panels = list(_panels(np.asarray(target), is_anomaly, anomaly_classes))
    ncols = min(2, len(panels))  # two wide panels a row: each with its legend beside it
    nrows = -(-len(panels) // ncols)
    figs = {
        kind: Figure(figsize=(7.4 * ncols, 3.8 * nrows), layout="constrained")
        for kind in ("roc", "pr")
    }
    others = [name for name in list(scores)[1:] if name not in every_method]
    order = [*every_method, *others]
    palette = _palette(len(order))
    colours = {name: palette[order.index(name)] for name in list(scores)[1:]}
    # Beyond ten methods the palette's light shades repeat its hues: those lines dashed.
    dashes = {name: "--" if order.index(name) >= 10 else "-" for name in colours}
    for kind, fig in figs.items():
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (title, subset, labels) in zip(axes, panels, strict=False):
            for i, (name, values) in enumerate(scores.items()):
                s = np.asarray(values)[subset]
                style = (
                    {"color": "k", "lw": 2.0, "zorder": 3}
                    if i == 0
                    else {"color": colours[name], "lw": 1.0, "ls": dashes[name]}
                )
                if kind == "roc":
                    fpr, tpr, _ = roc_curve(labels, s)
                    ax.plot(fpr, tpr, label=f"{name} ({metrics.auroc(s, labels):.3f})", **style)
                else:
                    precision, recall, _ = precision_recall_curve(labels, s)
                    ap = metrics.average_precision(s, labels)
                    label = f"{name} ({ap:.3f})"
                    ax.plot(recall, precision, label=label, drawstyle="steps-post", **style)
            if kind == "roc":
                ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="random (0.500)")
                ax.set(xlabel="false-positive rate", ylabel="true-positive rate")
            else:
                rate = labels.mean()
                ax.axhline(rate, color="grey", lw=0.8, ls=":", label=f"random ({rate:.3f})")
                ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
            ax.set_title(f"{title}: {labels.sum()} vs {(~labels).sum()}", fontsize=9)
            title = "AUROC" if kind == "roc" else "AP"  # beside the panel: no curve hidden
            ax.legend(
                fontsize=7, title=title, title_fontsize=7, loc="upper left", bbox_to_anchor=(1, 1)
            )
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        fig.suptitle(
            "ROC curves, test split" if kind == "roc" else "Precision-recall curves, test split"
        )
    return _save(figs["roc"], roc_path), _save(figs["pr"], pr_path)


def umap_embedding(
    latents: np.ndarray, *, max_points: int = 5000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(rows embedded, their (k, 2) UMAP coordinates): a random subsample of `max_points`."""
    import umap  # slow import (numba): only when the figure is wanted

    rng = np.random.default_rng(seed)
    index = np.arange(len(latents))
    if len(index) > max_points:
        index = np.sort(rng.choice(index, max_points, replace=False))
    n_neighbors = max(2, min(15, len(index) - 1))
    model = umap.UMAP(n_neighbors=n_neighbors, random_state=seed, n_jobs=1)
    return index, model.fit_transform(latents[index])


def _started() -> None:
    """Nothing: unpickling it imports this module in the child (matplotlib, scikit-learn)."""


def _child_setup(parent: int) -> None:
    """In the child: a Ctrl-C ends it at once and without a word (the parent says
    "interrupted"; it printed its traceback while importing or waiting for work, found in this
    release), and so does its parent's end (a `kill -9` of evaluate left it waiting for work for
    ever)."""
    processes.thread_lock_for_progress_bars()  # UMAP's
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # one during the imports: dropped (the parent
    processes.unblock_stop_signals()  # took it too, and stops this process)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class FigureProcess:
    """A child process for the slow figure work (UMAP's embedding, the ROC and PR curves).

    Started at once, so that its imports, and the embedding's half minute of numba compiling and
    fitting, run beside the caller's work (on another core); the curves are then drawn there
    while the caller draws the other figures. `submit` runs a function in the child, or here and
    now where no child process can be started. A context manager: leaving it stops the child
    (a task still running finishes first).
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        try:
            # Born with Ctrl-C blocked, until `_child_setup` (its imports take seconds).
            with processes.stop_signals_blocked():
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_setup,
                    initargs=(os.getpid(),),
                )
                self._pool.submit(_started)
        except OSError as error:
            log.info("figures in this process (no child process: %s)", error)
            self.close()

    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(function, *args, **kwargs)
        done: Future[T] = Future()
        done.set_result(function(*args, **kwargs))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigureProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def umap_figure(
    embedding: tuple[np.ndarray, np.ndarray],
    target: np.ndarray,
    is_anomaly: np.ndarray,
    path: Path,
    *,
    what: str = "",
) -> Path:
    """2-d UMAP of the latent means: known classes as coloured dots, anomaly classes in black,
    one marker shape each (a colour of their own could pair with a known class's shade).

    Args:
        embedding: (rows, coordinates) from `umap_embedding` of the latent means.
        target, is_anomaly: (n,) of every object, the embedded rows among them.
        what: which objects these are, for the title (e.g. `test split`).
    """
    index, embedding_xy = embedding
    y, anomalous = np.asarray(target)[index], np.asarray(is_anomaly)[index]
    classes = np.unique(y)
    anomaly_classes = [int(c) for c in classes if anomalous[y == c].any()]
    colours = _class_colours([c for c in classes if c not in anomaly_classes])
    # Filled shapes: the thin x and + of six classes at this size read alike (a review).
    markers = dict(zip(anomaly_classes, itertools.cycle("^sDvPX*p"), strict=False))
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax = fig.subplots()
    for c in [*(c for c in classes if c not in markers), *anomaly_classes]:  # legend: known first
        sel = y == c
        anomaly_class = int(c) in markers
        ax.scatter(
            *embedding_xy[sel].T,
            s=14 if anomaly_class else 4,
            marker=markers.get(int(c), "o"),
            color="k" if anomaly_class else colours[int(c)],
            alpha=0.9 if anomaly_class else 0.5,
            label=f"{class_name(c)}{' (anomaly)' if anomaly_class else ''}",
            zorder=3 if anomaly_class else 2,
        )
    where = f", {what}" if what else ""
    ax.set(xticks=[], yticks=[], title=f"UMAP of latent means{where} ({len(index)} objects)")
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def early_figure(early: Mapping, anomaly_classes: Sequence[int], path: Path) -> Path:
    """AUROC and recall in the top 1% of each anomaly class against days since first detection
    (`stages.early_metrics`); the complete light curve is the last point."""
    rows = early["rows"]
    x = np.arange(len(rows))
    colours = _class_colours(anomaly_classes)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_auc, ax_rec = fig.subplots(1, 2)
    for c in anomaly_classes:
        label = f"{class_name(c)} ({c})"
        ax_auc.plot(x, [r[f"auroc_{c}"] for r in rows], "o-", color=colours[c], label=label)
        ax_rec.plot(x, [r[f"recall_top1_{c}"] for r in rows], "o-", color=colours[c], label=label)
        best = rows[0].get(f"recall_top1_best_{c}")  # absent in the metrics of earlier releases
        if best is not None:
            ax_rec.axhline(best, color=colours[c], lw=0.8, ls=":")
    ax_auc.plot(x, [r["mean_class_auroc"] for r in rows], "k--", lw=1.5, label="mean")
    ax_auc.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance")
    panels = (
        (ax_auc, "AUROC vs the known classes", "AUROC"),
        (ax_rec, "recall in the top 1% (dotted: a perfect ranking's)", "recall"),
    )
    for ax, title, ylabel in panels:
        ax.set_xticks(x, [r["stage"] for r in rows])  # the stages, evenly spaced
        ax.set_xlabel("days since first detection (stages)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.02)
    ax_auc.legend(fontsize=7, loc="lower right")
    ax_rec.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "Early detection, test split: each object scored with its light curve up to that day "
        "(one not scorable yet ranks last)"
    )
    return _save(fig, path)


def score_hist_figure(
    scores: np.ndarray,
    target: np.ndarray,
    is_anomaly: np.ndarray,
    thresholds: Sequence[float],
    flagged: np.ndarray,
    path: Path,
    *,
    label: str = "anomaly score (-log10 tail probability among val known objects)",
) -> Path:
    """Histogram of the score for each class (one small panel per class, shared x axis), known
    classes in blue and anomaly classes in red, with the flag thresholds (one per depth bin)
    and each class's flagged fraction (`flagged`, (n,) bool)."""
    scores, target, is_anomaly = np.asarray(scores), np.asarray(target), np.asarray(is_anomaly)
    classes = sorted(np.unique(target), key=lambda c: (bool(is_anomaly[target == c].any()), c))
    ncols = 2
    nrows = -(-len(classes) // ncols)
    fig = Figure(figsize=(9, 1.3 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    finite = scores[np.isfinite(scores)]
    # Linear up to 1 and logarithmic beyond, over every score: the thresholds (about 2) and a
    # tail far beyond them (an AGN at 70) both readable, none clipped.
    lo = min(float(finite.min(initial=0.0)), 0.0)
    hi = max(float(finite.max(initial=1.0)), *thresholds, 1.0) * 1.05
    bins = np.unique(np.r_[np.linspace(lo, 1.0, 11), np.geomspace(1.0, hi, 40)])
    for ax, c in zip(axes, classes, strict=False):
        sel = target == c
        anomaly_class = bool(is_anomaly[sel].any())
        ax.hist(
            np.clip(scores[sel], bins[0], bins[-1]),
            bins=bins,
            histtype="stepfilled",  # one patch, not one per bin: the same picture, faster
            color="#d62728" if anomaly_class else "#1f77b4",
            alpha=0.8,
        )
        for threshold in thresholds:
            ax.axvline(threshold, color="k", lw=0.8, ls="--")
        ax.set_title(
            f"{class_name(c)} ({c}), n={sel.sum()}, flagged {100 * flagged[sel].mean():.1f}%",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    for ax in axes[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[max(len(classes) - ncols, 0) : len(classes)]:  # each column's lowest shown
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(label, fontsize=8)
    for ax in axes[::ncols]:
        ax.set_ylabel("objects", fontsize=8)
    fig.suptitle(
        "Score per class, test split (red: anomaly classes; dashed: the flag thresholds, one "
        "per depth bin, each object held to its own bin's)"
    )
    return _save(fig, path)


@dataclass(frozen=True)
class Example:
    """One light curve on the grid with its reconstruction (all (6, T), scaled-flux units)."""

    title: str
    flux: np.ndarray
    flux_err: np.ndarray
    mask: np.ndarray
    mean: np.ndarray
    sigma: np.ndarray


def reconstruction_figure(examples: Sequence[Example], times: np.ndarray, path: Path) -> Path:
    """Observed grid points with error bars and the reconstructed mean +/- sigma per passband.

    Args:
        examples: the light curves to draw, one panel each.
        times: (T,) grid-bin centres in days relative to the object's reference time.
    """
    ncols = 3
    nrows = max(1, -(-len(examples) // ncols))
    fig = Figure(figsize=(4.6 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ex in zip(axes, examples, strict=False):
        for b, colour in enumerate(BAND_COLOURS[: ex.flux.shape[0]]):
            ax.plot(times, ex.mean[b], color=colour, lw=1.0)
            ax.fill_between(
                times, ex.mean[b] - ex.sigma[b], ex.mean[b] + ex.sigma[b], color=colour, alpha=0.15
            )
            seen = ex.mask[b].astype(bool)
            ax.errorbar(
                times[seen],
                ex.flux[b][seen],
                yerr=ex.flux_err[b][seen],
                fmt=BAND_MARKERS[b],
                ms=2.5,
                color=colour,
                elinewidth=0.7,
                label=plasticc.PASSBANDS[b],
            )
        ax.set_title(ex.title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("observer-frame days from the reference time", fontsize=7)
    for ax in axes[: len(examples) : ncols]:
        ax.set_ylabel("flux / max(max |flux|, 1) of the object", fontsize=7)
    for ax in axes[len(examples) :]:
        ax.set_visible(False)
    if examples:
        axes[0].legend(fontsize=6, ncols=3)
    fig.suptitle("Light curves (points: observed grid cells) and reconstructions (mean ± sigma)")
    return _save(fig, path)
