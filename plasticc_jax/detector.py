"""The anomaly detector: components fitted per kind, calibrated on val known objects, fused.

How an object is scored:

1. **Its kind.** Galactic objects (`hostgal_photoz == 0`) are scored against the galactic known
   classes, extragalactic ones against the extragalactic known classes: a kilonova must not look
   normal because it resembles an M-dwarf flare. A kind without enough known objects of its own
   (the `sn` protocol knows no galactic class) is scored against all known objects.
2. **Components** (`plasticc_jax.components`), each fitted on the train split's known objects of
   that kind, each oriented so that higher = more anomalous.
3. **Calibration.** Each component is mapped to `-log10` of its tail probability among the val
   split's known objects of the same kind (`calibration.Reference`), so components on different
   scales, and the two kinds, become comparable.
4. **Fusion.** The weighted mean of the calibrated components (`eval.fusion`, weights chosen by the
   leave-one-class-out validation, `plasticc_jax.validate`): the mean of -log10 p is Fisher's way
   of combining evidence, so one component far in its tail is enough to stand out. The weighted
   mean is calibrated once more the same way: `anomaly_score` is -log10 of the fraction of val
   known objects of the same kind whose fused evidence is at least as strong (2: 1 in 100).
5. **Flag**: `anomaly_score` above the `1 - eval.target_fpr` quantile of the val known objects
   of the same depth bin (terciles of peak signal-to-noise, `calibration.FlagThreshold`): the
   fused score drifts with depth, and the flag's false-positive rate holds in every bin.

Beside the score, each object gets its nearest known class and that class's probability (from the
`gp_classifier` or `classifier` component, `components.nearest_class_source`, else from the VAE's
head): "unknown relative to what I already know".

No anomaly label enters any fit or calibration. Saved in `<run>/models/` (`detector_files`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plasticc_jax import detector_files
from plasticc_jax.calibration import FlagThreshold, Reference, warn_weak_calibration
from plasticc_jax.components import (
    COMPONENTS,
    Classifier,
    Component,
    Evidence,
    nearest_class_source,
)
from plasticc_jax.config import EvalConfig, fusion_item
from plasticc_jax.errors import UserError
from plasticc_jax.threads import cores, map_row_slices, one_openmp_thread, single_threaded

log = logging.getLogger(__name__)

GALACTIC, EXTRAGALACTIC, ALL = "galactic", "extragalactic", "all"
# `score` cuts a batch into slices of at least this many rows, one thread each (2 cores:
# no gain at 1,500 rows, 1.2x at 3,000, 1.9x at 16,384; measured on real PLAsTiCC objects).
ROWS_PER_THREAD = 1024
# A kind is fitted on its own with at least this many known objects of two classes or more.
MIN_KIND_OBJECTS = 20


def parse_fusion(spec: Iterable[str]) -> dict[str, float]:
    """`("latent_knn:1", "classifier:2")` -> {component: weight}, weights summing to 1.

    Raises:
        UserError: an unknown or repeated component, a weight that is not a finite number >= 0
            (`config.fusion_item`), or all weights zero.
    """
    weights: dict[str, float] = {}
    for item in spec:
        name, weight = fusion_item(item)
        if name in weights:
            raise UserError(f"eval.fusion: {name} given twice: each component once")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0.0:
        raise UserError("eval.fusion: give at least one component a positive weight")
    return {name: w / total for name, w in weights.items() if w > 0.0}


def kinds(galactic: np.ndarray) -> np.ndarray:
    """(n,) the kind of each object: `GALACTIC` or `EXTRAGALACTIC`."""
    return np.where(np.asarray(galactic, bool), GALACTIC, EXTRAGALACTIC)


def fit_components(
    evidence: Evidence, labels: np.ndarray, names: Iterable[str], config: EvalConfig
) -> dict[str, dict[str, Component]]:
    """Fit each named component per kind (`group -> name -> component`).

    Args:
        evidence: known objects only; labels: (n,) their classes.
        names: the components to fit.
        config: component settings.
    """
    kind = kinds(evidence.galactic)
    groups: dict[str, np.ndarray] = {}
    for name in (GALACTIC, EXTRAGALACTIC):
        rows = np.flatnonzero(kind == name)
        if rows.size >= MIN_KIND_OBJECTS and np.unique(labels[rows]).size >= 2:
            groups[name] = rows
    if len(groups) < 2:
        groups[ALL] = np.arange(len(evidence))
    fitted: dict[str, dict[str, Component]] = {}
    with single_threaded():
        for group, rows in groups.items():
            part, part_labels = evidence.take(rows), labels[rows]
            fitted[group] = {n: COMPONENTS[n](config).fit(part, part_labels) for n in names}
    return fitted


def route(groups: Iterable[str], galactic: np.ndarray) -> np.ndarray:
    """(n,) the group that scores each object: its kind's, else the pooled `ALL`."""
    groups = set(groups)
    kind = kinds(galactic)
    return np.where(np.isin(kind, list(groups)), kind, ALL)


@dataclass
class Detector:
    """Fitted components per group, their calibration, the fusion weights and the threshold.

    Attributes:
        components: group -> component name -> fitted component.
        references: group -> component name (and `"fused"`) -> `Reference` on val known objects.
        weights: component -> fusion weight (sum 1; components not named are reported only).
        threshold: `anomaly_score` above which an object is flagged, per depth bin.
        target_fpr: the val known false-positive rate the threshold was set for (per bin).
        head_classes: the known classes of the VAE head's columns.
        config: the settings it was fitted with (saved with it).
        info: bookkeeping saved with the detector (counts, val flag rate).
    """

    components: dict[str, dict[str, Component]]
    references: dict[str, dict[str, Reference]]
    weights: dict[str, float]
    threshold: FlagThreshold
    target_fpr: float
    head_classes: tuple[int, ...] = ()
    config: EvalConfig = field(default_factory=EvalConfig)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The fitted components, in `COMPONENTS` order."""
        fitted = next(iter(self.components.values()))
        return tuple(n for n in COMPONENTS if n in fitted)

    @staticmethod
    def fit(
        train: Evidence,
        train_labels: np.ndarray,
        val: Evidence,
        val_labels: np.ndarray,
        config: EvalConfig,
    ) -> Detector:
        """Fit the components on train known objects, calibrate on val known objects.

        Args:
            train, val: evidence of known objects only (the caller drops everything else).
            train_labels, val_labels: their classes (val labels are only counted).
            config: `components` (those to fit), `fusion` (their weights), `target_fpr`,
                `flag_depth_bins`.
        """
        weights = parse_fusion(config.fusion)
        names = tuple(dict.fromkeys([*config.components, *weights]))
        if len(val) < 2:
            raise UserError(
                "the val split holds fewer than 2 known objects: cannot calibrate (prepare "
                "again with a larger data.val_fraction, or more objects)"
            )
        components = fit_components(train, train_labels, names, config)
        detector = Detector(
            components,
            references={},
            weights=weights,
            threshold=FlagThreshold((), (np.inf,)),
            target_fpr=config.target_fpr,
            head_classes=train.head_classes,
            config=config,
        )
        raw = detector.raw_scores(val)
        groups = route(components, val.galactic)
        # Each group's val rows; fewer than 2 (no val object of this kind): all of them.
        calibration_rows = {}
        for group in components:
            rows = groups == group
            calibration_rows[group] = rows if rows.sum() >= 2 else np.ones(len(val), bool)
        for group, rows in calibration_rows.items():
            detector.references[group] = {n: Reference.fit(raw[n][rows]) for n in names}
        tails = detector.calibrated(raw, groups)
        warn_weak_calibration(tails, weights, config.target_fpr)
        fused = detector.fuse(tails)
        for group, rows in calibration_rows.items():
            detector.references[group]["fused"] = Reference.fit(fused[rows])
        reference_sizes = {group: int(rows.sum()) for group, rows in calibration_rows.items()}
        anomaly_score = detector.final_score(fused, groups)
        detector.threshold = FlagThreshold.fit(
            anomaly_score, val.depth, config.target_fpr, config.flag_depth_bins
        )
        classes, counts = np.unique(val_labels, return_counts=True)
        detector.info = {
            "n_train_known": len(train),
            "n_val_known": len(val),
            # The val known objects each kind's scores are calibrated against: a score above
            # log10(n + 1) lies beyond all of them, in the fitted tail.
            "n_val_known_per_group": reference_sizes,
            "groups": sorted(components),
            "val_flag_rate": float(np.mean(detector.flag(anomaly_score, val.depth))),
            "val_classes": {str(c): int(n) for c, n in zip(classes, counts, strict=True)},
        }
        log.info(
            "detector: %s fitted per %s on %d train known objects; threshold %s for FPR %.3g "
            "on %d val known",
            ", ".join(names),
            "/".join(sorted(components)),
            len(train),
            detector.threshold.describe(),
            config.target_fpr,
            len(val),
        )
        return detector

    def raw_scores(self, evidence: Evidence) -> dict[str, np.ndarray]:
        """Each component's raw score (n,), from the group that scores each object."""
        return self._score_groups(evidence, self.names)[0]

    def calibrated(
        self, raw: Mapping[str, np.ndarray], groups: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Raw component scores -> -log10 val tail probabilities of the object's group."""
        out = {name: np.zeros(len(groups)) for name in raw}
        for group, references in self.references.items():
            rows = groups == group
            for name in raw:
                out[name][rows] = references[name].tail_score(raw[name][rows])
        return out

    def fuse(self, tails: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted mean of the calibrated components (Fisher's combination)."""
        return sum(w * tails[name] for name, w in self.weights.items())

    def final_score(self, fused: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The fused evidence calibrated once more against val known objects of the group."""
        out = np.zeros(len(fused))
        for group, references in self.references.items():
            rows = groups == group
            out[rows] = references["fused"].tail_score(fused[rows])
        return out

    def nearest_class(self, evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
        """(n,) each object's most probable known class and (n,) its probability, from a
        classifier component where fitted (`components.nearest_class_source`), else from the
        VAE's head (-1 and NaN without either)."""
        return self._score_groups(evidence, ())[1:]

    def _nearest(
        self, fitted: Mapping[str, Component], part: Evidence
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(classes, probabilities) of `part`'s most probable known class, or None."""
        classifier = fitted.get(nearest_class_source(fitted, self.weights) or "")
        if isinstance(classifier, Classifier):
            p, classes = classifier.probabilities(part), classifier.classes
        elif self.head_classes:
            head = fitted.get("head_maxprob")
            columns = getattr(head, "columns", np.arange(len(self.head_classes)))
            p = part.probabilities[:, columns]
            p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
            classes = np.asarray(self.head_classes)[columns]
        else:
            return None
        return np.asarray(classes)[p.argmax(axis=1)], p.max(axis=1)

    def _score_groups(
        self, evidence: Evidence, names: Iterable[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Raw scores of the components `names`, nearest class and its probability, each object
        scored by its group's components. A large batch is cut into one slice of rows a core,
        scored side by side, each estimator on one thread (`threads`)."""
        names = tuple(names)

        def score_rows(rows: slice) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
            return self._score_rows(evidence.take(rows), names)

        with single_threaded():
            parts = map_row_slices(score_rows, len(evidence), ROWS_PER_THREAD)
        if len(parts) == 1:
            return parts[0]
        raw = {name: np.concatenate([part[0][name] for part in parts]) for name in names}
        return raw, *(np.concatenate([part[i] for part in parts]) for i in (1, 2))

    def _score_rows(
        self, evidence: Evidence, names: tuple[str, ...]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """`_score_groups` of one slice of rows, one batch per group."""
        groups = route(self.components, evidence.galactic)
        raw = {name: np.zeros(len(evidence)) for name in names}
        best = np.full(len(evidence), -1, np.int64)
        prob = np.full(len(evidence), np.nan)
        for group, fitted in self.components.items():
            rows = np.flatnonzero(groups == group)
            if not rows.size:
                continue
            part = evidence.take(rows)
            for name in names:
                raw[name][rows] = fitted[name].score(part)
            nearest = self._nearest(fitted, part)
            if nearest is not None:
                best[rows], prob[rows] = nearest
        return raw, best, prob

    def score(self, evidence: Evidence, fused_only: bool = False) -> dict[str, np.ndarray]:
        """The detector's columns of the score table, each (n,): every fitted component's
        calibrated score (named after it; with `fused_only`, only those in the fusion: what
        `anomaly_score` needs, for speed), `anomaly_score`, `nearest_class`,
        `nearest_class_prob`."""
        names = [n for n in self.names if n in self.weights] if fused_only else self.names
        raw, nearest, prob = self._score_groups(evidence, names)
        groups = route(self.components, evidence.galactic)
        tails = self.calibrated(raw, groups)
        return {
            **tails,
            "anomaly_score": self.final_score(self.fuse(tails), groups),
            "nearest_class": nearest,
            "nearest_class_prob": prob,
        }

    def flag(self, anomaly_score: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(n,) bool: scores above the threshold of their depth (`Evidence.depth`), calibrated
        for `target_fpr` on the val known objects of that depth bin."""
        return self.threshold.flag(anomaly_score, depth)

    def out_of_fold(
        self,
        evidence: Evidence,
        labels: np.ndarray,
        n_folds: int,
        groups: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """`score` of the objects the components were fitted on, each scored by components
        fitted without it (`n_folds` folds, stratified by class, seeded), calibrated as usual.

        Only the fused components are refitted (that is what `anomaly_score` needs); the columns
        of the others are NaN for these objects rather than in-sample.

        Args:
            evidence, labels: the fitting objects (train known) and their classes.
            groups: (n,) which rows are one object (its object_id: its complete and partial
                light curves, `early`); a fold holds out all of an object's rows. None: every
                row its own object (the same folds as without groups).
        """
        fused = tuple(name for name in self.names if name in self.weights)
        raw = {name: np.full(len(evidence), np.nan) for name in self.names}
        fold = np.zeros(len(evidence), np.int64)
        rng = np.random.default_rng(self.config.seed)
        groups = np.arange(len(evidence)) if groups is None else np.asarray(groups)
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            _, first, index = np.unique(groups[rows], return_index=True, return_inverse=True)
            # Objects in order of first appearance: one row each gives the folds without groups.
            appearance = np.argsort(np.argsort(first, kind="stable"), kind="stable")
            fold[rows] = (rng.permutation(first.size) % n_folds)[appearance[index]]

        def fit_and_score(held: np.ndarray) -> dict[str, np.ndarray]:
            fitted = fit_components(evidence.take(~held), labels[~held], fused, self.config)
            part = dataclasses.replace(self, components=fitted)
            return part.raw_scores(evidence.take(np.flatnonzero(held)))

        # The folds are independent and seeded: fitted side by side, one thread a core, the
        # estimators' own threads limited to one, once for the whole pool (`threads`; limited
        # in each fold's thread, results differed in the 13th digit from run to run).
        folds = [held for k in range(n_folds) if (held := fold == k).any()]
        workers = max(1, min(len(folds), cores()))
        with single_threaded(), ThreadPoolExecutor(workers, initializer=one_openmp_thread) as pool:
            for held, scores in zip(folds, pool.map(fit_and_score, folds), strict=True):
                for name in fused:
                    raw[name][held] = scores[name]
        groups = route(self.components, evidence.galactic)
        tails = self.calibrated(raw, groups)
        nearest, prob = self.nearest_class(evidence)
        return {
            **tails,
            "anomaly_score": self.final_score(self.fuse(tails), groups),
            "nearest_class": nearest,
            "nearest_class_prob": prob,
        }

    def save(self, models_dir: Path) -> None:
        """Write the detector to a run's `models/` (`detector_files.write`)."""
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        detector_files.write(Path(models_dir), parts)

    @staticmethod
    def load(models_dir: Path, scoring_only: bool = False) -> Detector:
        """Read a detector written by `save` (`detector_files.read`; with `scoring_only`, only
        what `score(..., fused_only=True)` uses)."""
        return Detector(**detector_files.read(Path(models_dir), scoring_only))
