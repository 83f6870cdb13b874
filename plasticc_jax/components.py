"""The detector's components: anomaly scores of one kind each, higher = more anomalous.

Each component is fitted on known-class objects only (their labels may be used: the known classes
are the spectroscopically confirmed training set of a survey) and scores any object. Two views of
an object are used, each with its own failure mode, so that different components find different
anomalies (which ones earn a weight is decided by the leave-one-class-out validation,
`plasticc_jax.validate`):

- the VAE's **latent space** (`latent`, the latent means; with the classification head trained
  with the VAE objective, known classes form clusters there): `latent_knn` (mean distance to the k
  nearest known objects), `latent_mahalanobis` (distance to the nearest class centre, class-shared
  covariance), `latent_forest` (an Isolation Forest: the seed pipeline's detector), `head_maxprob`
  (1 - the head's largest class probability), and the VAE's `recon_chi2` (how badly it
  reconstructs the light curve);
- the **features** (`features`, the normalised light-curve features): `classifier` (1 - the
  largest class probability of a gradient-boosted classifier: the separate classifier),
  `feature_mahalanobis`, `feature_knn`, `feature_forest`.

Components are pure with respect to their inputs: an object's score depends on that object and
the fitted component, never on the other objects scored with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.neighbors import NearestNeighbors

from plasticc_jax.config import EvalConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    """What the components read, per object (n objects).

    Attributes:
        latent: (n, L) float32 latent means of the VAE.
        probabilities: (n, C) float32 class probabilities of the VAE's head over the run's known
            classes, or (n, 0) for a VAE without a head.
        chi2: (n,) float64 reduced chi-square of the VAE's reconstruction.
        features: (n, F) float32 normalised features the network reads
            (`gridding.MODEL_FEATURE_NAMES`, `FeatureStats.normalise`; NaN -> 0).
        raw_features: (n, F') float32 raw features (NaN where undefined), for the classifiers:
            the same F first, then the Gaussian-process ones (`gridding.FEATURE_NAMES`; none in
            a dataset prepared before they existed).
        galactic: (n,) bool, `hostgal_photoz == 0`.
        depth: (n,) float, how deep the object is (`calibration.DEPTH_FEATURE`, log10 of its
            peak signal-to-noise): the flag threshold's bins.
        head_classes: the known classes of the head's columns, in order.
    """

    latent: np.ndarray
    probabilities: np.ndarray
    chi2: np.ndarray
    features: np.ndarray
    raw_features: np.ndarray
    galactic: np.ndarray
    depth: np.ndarray
    head_classes: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.chi2.shape[0])

    def take(self, index: np.ndarray | slice) -> Evidence:
        """The objects `index` (a slice gives views, no copy)."""
        arrays = {
            f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "head_classes"
        }
        return Evidence(**arrays, head_classes=self.head_classes)


class Component:
    """Base: `fit` on known objects of one kind, `score` any object of that kind.

    Subclasses set `name` and implement `fit` and `score`; `state` / `load_state` give the
    fitted state as arrays (saved in an npz) and `estimators` as scikit-learn objects (saved
    with skops).
    """

    name: ClassVar[str]

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        del state

    def estimators(self) -> dict[str, Any]:
        return {}

    def load_estimators(self, estimators: dict[str, Any]) -> None:
        del estimators


class _Knn(Component):
    """Mean Euclidean distance to the k nearest fitted objects."""

    view: ClassVar[str]

    def __init__(self, config: EvalConfig) -> None:
        self.k = config.knn_neighbours
        self.reference = np.zeros((0, 0), np.float32)
        self._index: NearestNeighbors | None = None

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        self.load_state({"reference": getattr(evidence, self.view)})
        if 0 < len(self.reference) < self.k:
            log.warning(
                "%s: eval.knn_neighbours=%d, but only %d objects to fit on: the distance is to "
                "all %d",
                self.name,
                self.k,
                len(self.reference),
                len(self.reference),
            )
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        assert self._index is not None, "fit first"
        if not len(evidence):
            return np.zeros(0)
        k = min(self.k, len(self.reference))
        distance, _ = self._index.kneighbors(getattr(evidence, self.view), n_neighbors=k)
        return distance.mean(axis=1).astype(np.float64)

    def state(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.reference = np.asarray(state["reference"], np.float32)
        self._index = NearestNeighbors().fit(self.reference)


class LatentKnn(_Knn):
    name = "latent_knn"
    view = "latent"


class FeatureKnn(_Knn):
    name = "feature_knn"
    view = "features"


class _Mahalanobis(Component):
    """Distance to the nearest known-class centre, with one covariance shared by the classes
    (Ledoit-Wolf shrinkage): the class-conditional Gaussian of Lee et al. 2018."""

    view: ClassVar[str]

    def __init__(self, config: EvalConfig) -> None:
        del config
        self.load_state({"centres": np.zeros((0, 0)), "precision": np.zeros((0, 0))})

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        x = np.asarray(getattr(evidence, self.view), np.float64)
        classes = np.unique(labels)
        centres = np.stack([x[labels == c].mean(axis=0) for c in classes])
        residual = x - centres[np.searchsorted(classes, labels)]
        precision = np.linalg.pinv(LedoitWolf().fit(residual).covariance_)
        self.load_state({"centres": centres, "precision": precision})
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        z = np.asarray(getattr(evidence, self.view), np.float64) @ self._whiten
        return np.sqrt(cdist(z, self._white_centres, "sqeuclidean").min(axis=1))

    def state(self) -> dict[str, np.ndarray]:
        return {"centres": self.centres, "precision": self.precision}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.centres, self.precision = state["centres"], state["precision"]
        # Whitened by W with W W^T = precision, the distances are Euclidean: one (n, d) x (d, d)
        # product for all classes instead of one quadratic form per class.
        eigenvalues, eigenvectors = np.linalg.eigh(self.precision)
        self._whiten = eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))
        self._white_centres = self.centres @ self._whiten


class LatentMahalanobis(_Mahalanobis):
    name = "latent_mahalanobis"
    view = "latent"


class FeatureMahalanobis(_Mahalanobis):
    name = "feature_mahalanobis"
    view = "features"


class _Forest(Component):
    """`-score_samples` of an Isolation Forest."""

    view: ClassVar[str]

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.forest: IsolationForest | None = None

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        x = getattr(evidence, self.view)
        self.forest = IsolationForest(
            n_estimators=self.config.n_estimators,
            max_samples=min(self.config.max_samples, len(x)),
            random_state=self.config.seed,
        ).fit(x)
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        assert self.forest is not None, "fit first"
        x = getattr(evidence, self.view)
        return -self.forest.score_samples(x).astype(np.float64) if len(x) else np.zeros(0)

    def estimators(self) -> dict[str, Any]:
        return {"forest": self.forest}

    def load_estimators(self, estimators: dict[str, Any]) -> None:
        self.forest = estimators["forest"]


class LatentForest(_Forest):
    name = "latent_forest"
    view = "latent"


class FeatureForest(_Forest):
    name = "feature_forest"
    view = "features"


class ReconChi2(Component):
    """The reduced chi-square of the VAE's reconstruction (nothing to fit)."""

    name = "recon_chi2"

    def __init__(self, config: EvalConfig) -> None:
        del config

    def score(self, evidence: Evidence) -> np.ndarray:
        return np.asarray(evidence.chi2, np.float64)


class HeadMaxprob(Component):
    """1 - the largest probability of the VAE's head, renormalised over the classes fitted here
    (the classes of this kind)."""

    name = "head_maxprob"

    def __init__(self, config: EvalConfig) -> None:
        del config
        self.columns = np.zeros(0, np.int64)

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        self.columns = np.flatnonzero(np.isin(evidence.head_classes, np.unique(labels)))
        return self

    def score(self, evidence: Evidence) -> np.ndarray:
        if not self.columns.size:  # a VAE without a head
            return np.zeros(len(evidence))
        p = evidence.probabilities[:, self.columns].astype(np.float64)
        return 1.0 - p.max(axis=1) / np.maximum(p.sum(axis=1), 1e-12)

    def state(self) -> dict[str, np.ndarray]:
        return {"columns": self.columns}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.columns = np.asarray(state["columns"], np.int64)


def balanced_rows(labels: np.ndarray) -> np.ndarray:
    """Row indices that repeat each class's rows up to the largest class's count.

    Balances the classes as `class_weight="balanced"` would; scikit-learn's weighted binning
    takes about 0.1 s per feature (20 s per fit here), the repeated rows a second in all.
    """
    classes, counts = np.unique(labels, return_counts=True)
    return np.concatenate([np.resize(np.flatnonzero(labels == c), counts.max()) for c in classes])


def boosted_trees(iterations: int, seed: int) -> HistGradientBoostingClassifier:
    """The `classifier` component's gradient-boosted trees, unfitted (learning rate 0.1, 15
    leaves, no early stopping; research probes vary only the iterations)."""
    return HistGradientBoostingClassifier(
        max_iter=iterations,
        learning_rate=0.1,
        max_leaf_nodes=15,
        early_stopping=False,
        random_state=seed,
    )


class Classifier(Component):
    """A gradient-boosted classifier of the known classes on the raw features (NaN handled
    natively); score: 1 - its largest class probability. It also names each object's nearest
    known class (`probabilities`). It reads the features the network reads (the first
    `evidence.features` columns of `raw_features`, `gridding.MODEL_FEATURE_NAMES`)."""

    name = "classifier"
    # Whether it also reads the Gaussian-process features (the last columns of `raw_features`).
    reads_gp_features: ClassVar[bool] = False

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.classes = np.zeros(0, np.int64)
        self.columns = np.zeros(0, np.int64)
        self.model: HistGradientBoostingClassifier | None = None
        self._last = threading.local()  # per thread: `Detector.score` scores rows in threads

    def fit(self, evidence: Evidence, labels: np.ndarray) -> Component:
        self._last = threading.local()
        self.classes = np.unique(labels)
        x = evidence.raw_features
        # Features constant or undefined on every fitting object (the distance of a galactic
        # object) carry nothing here (and scikit-learn's binning refuses all-NaN columns).
        # fmin/fmax skip NaN and give NaN for an all-NaN column without a warning (no
        # `warnings.catch_warnings` here: out-of-fold fits run in threads, and it is not
        # thread-safe).
        lowest, highest = np.fmin.reduce(x, axis=0), np.fmax.reduce(x, axis=0)
        width = x.shape[1] if self.reads_gp_features else evidence.features.shape[1]
        read = np.arange(x.shape[1]) < width
        self.columns = np.flatnonzero(read & np.isfinite(lowest) & (highest > lowest))
        if self.classes.size < 2:  # one class: every object is "that class"
            self.model = None
            return self
        rows = balanced_rows(labels)
        model = boosted_trees(self.config.classifier_iterations, self.config.seed)
        self.model = model.fit(x[np.ix_(rows, self.columns)], labels[rows])
        return self

    def probabilities(self, evidence: Evidence) -> np.ndarray:
        """(n, len(classes)) probabilities of the known classes fitted here.

        Each thread's last batch is kept: the detector asks for the score and for the nearest
        class of the same batch, and the trees' prediction is most of its time.
        """
        if self.model is None:
            return np.ones((len(evidence), max(self.classes.size, 1)))
        if not len(evidence):
            return np.zeros((0, self.classes.size))
        last = getattr(self._last, "batch", None)
        if last is not None and last[0] is evidence:
            return last[1]
        p = self.model.predict_proba(evidence.raw_features[:, self.columns])
        self._last.batch = (evidence, p)
        return p

    def score(self, evidence: Evidence) -> np.ndarray:
        return 1.0 - self.probabilities(evidence).max(axis=1)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (a detector sent to Dask workers) without the last batches: a cache, not state.
        return {key: value for key, value in self.__dict__.items() if key != "_last"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _last=threading.local())

    def state(self) -> dict[str, np.ndarray]:
        return {"classes": self.classes, "columns": self.columns}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.classes = np.asarray(state["classes"], np.int64)
        self.columns = np.asarray(state["columns"], np.int64)

    def estimators(self) -> dict[str, Any]:
        return {"model": self.model} if self.model is not None else {}

    def load_estimators(self, estimators: dict[str, Any]) -> None:
        self.model = estimators.get("model")


class GpClassifier(Classifier):
    """The `classifier` on every raw feature, the Gaussian-process features of
    `plasticc_jax.gp_features` included (beside the `classifier`, as the validation chose:
    docs/evaluation.md)."""

    name = "gp_classifier"
    reads_gp_features = True


def nearest_class_source(names: Iterable[str], weights: Mapping[str, float]) -> str | None:
    """The classifier component that names each object's nearest known class: the
    `gp_classifier` (the more accurate on the val known objects of the default run: 0.865
    against 0.829) or the `classifier`, the first the fusion weighs (its probabilities are
    computed for the score anyway), else the first fitted; None without either."""
    present = set(names)
    fitted = [n for n in (GpClassifier.name, Classifier.name) if n in present]
    weighed = [n for n in fitted if n in weights]
    return (weighed or fitted or [None])[0]


COMPONENTS: dict[str, type[Component]] = {
    c.name: c
    for c in (
        LatentKnn,
        LatentMahalanobis,
        LatentForest,
        HeadMaxprob,
        ReconChi2,
        Classifier,
        GpClassifier,
        FeatureMahalanobis,
        FeatureKnn,
        FeatureForest,
    )
}
