"""The one scoring path, shared by `evaluate` and `score`: model outputs, evidence, score table.

`model_outputs` runs the trained VAE once over gridded objects; `evidence` assembles what the
detector reads (`components.Evidence`); `score_table` turns the outputs and the detector's columns,
with the objects' labels, into the table both stages write, one row per object:

- `object_id`, `split`, `target`, `class_name`, `is_anomaly`: who the object is (labels are
  copied where the input has them; they never enter a score; `is_anomaly`: labelled with a
  class the run was not trained on);
- `mu_0 ... mu_{L-1}`, `mean_logvar`, `recon_nll`, `n_observed`, `chi2_per_cell`: the VAE;
- `CONTEXT_COLUMNS`: a few of the object's features, for filtering and review;
- one calibrated column per detector component (`-log10` of its val known tail probability);
- `nearest_class`, `nearest_class_name`, `nearest_class_prob`: the most probable known class;
- `anomaly_score` (the detector's final score), `rank` (1 = most anomalous among the objects
  ranked together, ties in table order; `insert_rank`), `flagged` (above the run's threshold).

`Scorer` is a trained, evaluated run loaded once and checked (VAE, detector, config); its
`table` is the table of gridded objects that `plasticc-jax score` writes (only the fused
components' columns), on one machine or in each partition on a Dask cluster
(`plasticc_jax.distributed`). `score_dataframe` does the same for
light curves given as a pandas DataFrame: the function to map over the partitions of a Dask or
Spark dataframe.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import special

from plasticc_jax import plasticc, readers
from plasticc_jax.calibration import DEPTH_FEATURE, AgeThreshold
from plasticc_jax.components import Evidence
from plasticc_jax.dataset import FeatureStats, LightCurveArrays
from plasticc_jax.errors import TRAIN_FIRST, UserError
from plasticc_jax.gridding import FEATURE_NAMES, META_VALUES, model_features

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from plasticc_jax.detector import Detector
    from plasticc_jax.encoder import TrainedVae

# What the score table and the detector need from the VAE, per object.
OUTPUT_KEYS: tuple[str, ...] = (
    "mu",
    "logvar",
    "recon_nll",
    "n_observed",
    "kl",
    "chi2",
    "probabilities",
)
# Features copied into the score table (what an expert filters and reads first).
CONTEXT_COLUMNS: tuple[str, ...] = (
    "is_galactic",
    "hostgal_photoz",
    "peak_abs_mag",
    "log10_peak_snr",
    "rise_days",
    "fall_days",
)
# Why an object that was gridded could still not be scored (`score` rejects it with this).
NON_FINITE_OUTPUT = "non-finite VAE output (extreme input values)"
NAN_SCORE = "anomaly score is NaN"
# The `source` of those rejections (made after gridding, by the model and the detector).
MODEL_SOURCE = "model"


def model_outputs(
    vae: TrainedVae,
    arrays: LightCurveArrays,
    batch_size: int | None = None,
    *,
    reconstruction: bool = False,
) -> dict[str, np.ndarray]:
    """One pass of the VAE over gridded objects.

    Args:
        vae: the trained VAE; arrays: the gridded objects.
        batch_size: the largest batch compiled (None: the VAE's `max_batch`).
        reconstruction: also keep the decoded grid, `mean` and `sigma`.

    Returns:
        `mu`, `logvar` (n, L); `recon_nll`, `n_observed`, `kl`, `chi2` (`losses.reduced_chi2`) (n,);
        `probabilities` (n, C) of the head's known classes ((n, 0) without a head); `features`
        (n, F) the raw features and `normalised_features` the model's (`FeatureStats.normalise`,
        computed once here for the VAE and the detector); with `reconstruction`, `mean` and
        `sigma` (n, n_bands, n_times).
    """
    features = np.asarray(arrays.features, np.float32)
    inputs = vae.encoder.inputs(dataclasses.replace(arrays, features=features))
    out = vae.evaluate_inputs(inputs, batch_size, reconstruction=reconstruction)
    logits = out.pop("logits", np.zeros((len(arrays), 0), np.float32))
    out["probabilities"] = (special.softmax(logits, axis=1) if logits.shape[1] else logits).astype(
        np.float32
    )
    out["chi2"] = out["chi2"].astype(np.float64)  # the score table's column stays float64
    out["features"], out["normalised_features"] = features, inputs["features"]
    keys = (*OUTPUT_KEYS, "features", "normalised_features")
    keys += ("mean", "sigma") if reconstruction else ()
    return {key: out[key] for key in keys}


def finite_outputs(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: objects whose VAE outputs (`OUTPUT_KEYS`) are all finite and whose features
    are finite or NaN (undefined; never infinite). The detector cannot score the others (a NaN
    latent stops the components), so they are rejected, not scored."""
    ok = np.ones(len(outputs["mu"]), bool)
    for key in OUTPUT_KEYS:
        values = np.asarray(outputs[key])
        # (n, -1) fails for n = 0: an empty chunk (nothing scored) has no objects to check.
        values = values.reshape(len(values), int(np.prod(values.shape[1:])))
        ok &= np.isfinite(values).all(axis=1)
    if "features" in outputs:
        ok &= ~np.isinf(np.asarray(outputs["features"])).any(axis=1)
    return ok


def evidence(
    objects: Mapping[str, np.ndarray], stats: FeatureStats, head_classes: tuple[int, ...]
) -> Evidence:
    """What the detector reads, from `model_outputs` (over n objects) and the run's statistics
    (the features are normalised here unless `model_outputs` did it)."""
    features = np.asarray(objects["features"], np.float32)
    normalised = objects.get("normalised_features")
    galactic = features[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    return Evidence(
        latent=np.asarray(objects["mu"], np.float32),
        probabilities=np.asarray(objects["probabilities"], np.float32),
        chi2=np.asarray(objects["chi2"], np.float64),
        features=(
            stats.normalise(model_features(features, stats.names))
            if normalised is None
            else np.asarray(normalised)
        ),
        raw_features=features,
        galactic=galactic,
        depth=features[:, FEATURE_NAMES.index(DEPTH_FEATURE)].astype(np.float64),
        head_classes=tuple(head_classes),
    )


def object_labels(arrays: LightCurveArrays, split: str) -> dict[str, np.ndarray]:
    """Who the objects are, as `score_table` wants it: object_id, split, target, is_anomaly."""
    return {
        "object_id": arrays.object_id.astype(np.int64),
        "split": np.full(len(arrays), split),
        "target": arrays.target.astype(np.int64),
        "is_anomaly": arrays.is_anomaly.astype(bool),
    }


def unknown_to_the_run(target: np.ndarray, known_classes: Sequence[int]) -> np.ndarray:
    """(n,) bool, `is_anomaly` of objects a run scores: labelled with a class the run was not
    trained on (its anomaly classes, and any class it never saw: PLAsTiCC's test-only 991-995, a
    class its protocol left out); False for its known classes and for unlabelled objects (-1)."""
    target = np.asarray(target, np.int64)
    return (target >= 0) & ~np.isin(target, np.asarray(known_classes, np.int64))


def score_table(
    objects: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray], detector: Detector
) -> pd.DataFrame:
    """The score table without `rank` (see the module docstring for the columns).

    Args:
        objects: per-object arrays over n objects: `object_labels` and `model_outputs`.
        scores: the detector's columns for them (`Detector.score`, or `Detector.out_of_fold`).
        detector: the fitted detector (its components and threshold); a component missing from
            `scores` (`Detector.score(fused_only=True)`) has no column.
    """
    mu, features = objects["mu"], objects["features"]
    context = {name: features[:, FEATURE_NAMES.index(name)] for name in CONTEXT_COLUMNS}
    context["is_galactic"] = context["is_galactic"] > 0.5
    nearest = np.asarray(scores["nearest_class"], np.int64)
    return pd.DataFrame(
        {
            "object_id": objects["object_id"],
            "split": objects["split"],
            "target": objects["target"],
            "class_name": [plasticc.class_name(c) for c in objects["target"]],
            "is_anomaly": objects["is_anomaly"],
            **{f"mu_{j}": mu[:, j] for j in range(mu.shape[1])},
            "mean_logvar": objects["logvar"].mean(axis=1),
            "recon_nll": objects["recon_nll"],
            "n_observed": objects["n_observed"].astype(np.int64),
            "chi2_per_cell": objects["chi2"],
            **context,
            **{name: scores[name] for name in detector.names if name in scores},
            "nearest_class": nearest,
            "nearest_class_name": [plasticc.class_name(c) if c >= 0 else "" for c in nearest],
            "nearest_class_prob": scores["nearest_class_prob"],
            "anomaly_score": scores["anomaly_score"],
            "flagged": detector.flag(
                scores["anomaly_score"], features[:, FEATURE_NAMES.index(DEPTH_FEATURE)]
            ),
        }
    )


def ranks(scores: np.ndarray) -> np.ndarray:
    """(n,) int64: 1 for the highest score; equal scores keep their order."""
    return places(np.argsort(-np.asarray(scores), kind="stable"))


def places(order: np.ndarray) -> np.ndarray:
    """(n,) int64: each row's place (1 = first) in `order`, a permutation of the rows."""
    place = np.empty(len(order), np.int64)
    place[order] = np.arange(1, len(order) + 1)
    return place


def insert_days_since_detection(table: pd.DataFrame, arrays: LightCurveArrays) -> None:
    """Give a score table of objects gridded as of a date (`early.grid_as_of`) their
    `days_since_detection` (second column, in place): the arrays' `stage` of the objects the
    table scored, in the table's order (which is theirs)."""
    scored = np.isin(arrays.object_id, table["object_id"].to_numpy())
    table.insert(1, "days_since_detection", arrays.stage[scored].astype(np.float64))


def flag_by_age(table: pd.DataFrame, age_threshold: AgeThreshold) -> None:
    """Set a score table's `flagged` by thresholds per age and depth (`--threshold-from`: set
    on a replay of the run's val split), from its `days_since_detection` (in place)."""
    table["flagged"] = age_threshold.flag(
        table["anomaly_score"].to_numpy(),
        table["days_since_detection"].to_numpy(),
        table[DEPTH_FEATURE].to_numpy(),
    )


def rank_position(columns: list[str]) -> int:
    """Where `rank` goes in the table: right after `anomaly_score`."""
    return columns.index("anomaly_score") + 1


def insert_rank(table: pd.DataFrame) -> pd.DataFrame:
    """Insert `rank`, within each split, into a `score_table` (in place; also returned)."""
    split, scores = table["split"].to_numpy(), table["anomaly_score"].to_numpy()
    rank = np.empty(len(table), np.int64)
    for name in pd.unique(split):
        rows = np.flatnonzero(split == name)
        rank[rows] = ranks(scores[rows])
    table.insert(rank_position(list(table.columns)), "rank", rank)
    return table


# ---------------------------------------------------------------------------------------------
# A run loaded once, and the table of light curves given as a DataFrame.


def run_fingerprint(run_dir: Path) -> str:
    """A cheap identity of what scoring reads from a run: the names, sizes and modification
    times of `config.json`, `stats.json`, `checkpoints/` and `models/` (it changes when the run is
    trained or evaluated again).

    Raises:
        UserError: `run_dir` is not a trained and evaluated run.
    """
    from plasticc_jax import runs
    from plasticc_jax.detector_files import PARAMS_FILE

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        runs.read_config(run_dir)  # raises the error that says what to do
    if not (run_dir / "checkpoints").is_dir():
        raise UserError(f"{run_dir} holds no checkpoints/: {TRAIN_FIRST}")
    if not (run_dir / "models" / PARAMS_FILE).is_file():
        raise UserError(
            f"no anomaly detector in {run_dir / 'models'}: run `plasticc-jax evaluate` for this "
            "run first"
        )
    files = [run_dir / "config.json", run_dir / "stats.json"]
    for folder in ("checkpoints", "models"):
        files += sorted(p for p in (run_dir / folder).rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(run_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Scorer:
    """A trained and evaluated run, loaded once and checked: the VAE, the anomaly detector and
    the config.

    Attributes:
        run_dir: the run directory; vae: its `TrainedVae`; detector: its `Detector`;
        config: the run's resolved config (`config.data`: how light curves are gridded);
        checkpoint: the checkpoint's record (epoch, parameter hash), named by score tables.
    """

    def __init__(
        self, run_dir: Path, vae: TrainedVae, detector: Detector, checkpoint: Mapping[str, object]
    ) -> None:
        self.run_dir = Path(run_dir)
        self.vae = vae
        self.detector = detector
        self.config = vae.config
        self.checkpoint = dict(checkpoint)

    @staticmethod
    def load(run_dir: str | Path) -> Scorer:
        """Read the run (best checkpoint and detector) after checking that they belong together,
        while no `train` or `evaluate` rewrites it (a shared lock of the run directory).

        Raises:
            UserError: not a run, an incomplete or unevaluated run, a detector file missing or
                damaged, a detector fitted on another checkpoint, an unreadable run file.
        """
        from plasticc_jax import provenance, runs
        from plasticc_jax.detector import Detector
        from plasticc_jax.encoder import load_vae
        from plasticc_jax.io_utils import folder_lock

        run_dir = Path(run_dir)
        with folder_lock(run_dir, "score", shared=True):
            runs.read_config(run_dir)  # first: a folder that is no run at all says so
            provenance.require_complete(run_dir)
            record = provenance.check_detector_files(run_dir)
            vae = load_vae(run_dir)
            provenance.check_checkpoint(run_dir, record, vae.epoch, vae.params)
            try:
                detector = Detector.load(run_dir / "models", scoring_only=True)
            except UserError:
                raise
            except Exception as error:  # e.g. a file of another scikit-learn version
                raise UserError(
                    f"{run_dir / 'models'}: the anomaly detector cannot be read "
                    f"({type(error).__name__}: {error}); run `plasticc-jax evaluate` for "
                    f"{run_dir} again"
                ) from None
        checkpoint = record.get("checkpoint") or provenance.checkpoint_record(vae.epoch, vae.params)
        return Scorer(run_dir, vae, detector, checkpoint)

    def warn_if_complete_only(self, command: str, thresholds_from: Path | None = None) -> None:
        """Warn that a run trained without partial light curves (`train.partial_curves`: the
        default preset) is about to score partial ones (`command`: `replay`, `score --as-of`):
        neither its model nor its threshold has seen them, and it flags most of them (the
        default run: 497 of 498 re-scorings over 40 nights of the `rare` test split). With
        `thresholds_from` (a replay whose thresholds flag instead) the model alone is said."""
        if not self.config.train.partial_curves:
            log.warning("%s", self.complete_only_message(command, thresholds_from))

    def complete_only_message(self, command: str, thresholds_from: Path | None = None) -> str:
        """`warn_if_complete_only`'s warning."""
        if thresholds_from is None:
            what = (
                "on light curves cut short its flag threshold does not hold (it flags most of them)"
            )
        else:  # a review: the warning said so of a threshold that was not used
            what = (
                f"the flags come from the thresholds of {thresholds_from}, set on light curves "
                "cut short, but its model has not seen such curves"
            )
        return (
            f"{command}: {self.run_dir} was trained and calibrated on complete light curves "
            f"only; {what}: for early detection use a run of the early preset (`plasticc-jax "
            "prepare`, `train` and `evaluate` with `--config early`, or make prepare train "
            "evaluate CONFIG=early; docs/early.md)"
        )

    @staticmethod
    def cached(run_dir: str | Path) -> Scorer:
        """The run loaded once per process (`load`, with its checks): later calls with the same
        run directory and content (`run_fingerprint`) return the same `Scorer`. A worker of a
        dataframe engine thus loads and compiles the model for its first partition only.

        Raises:
            UserError: as `load`; or the run changed while it was being loaded.
        """
        run_dir = Path(run_dir).resolve()
        return _load_cached(str(run_dir), run_fingerprint(run_dir))

    def table(self, arrays: LightCurveArrays, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The score table of gridded objects, without `rank` (see the module docstring), and
        the objects that could not be scored, with the reason: no NaN score reaches the table.

        Args:
            arrays: gridded objects (`streaming`), n of them; labels from their `target`, with
                `is_anomaly` set where the run does not know the class (`unknown_to_the_run`).
            split: the value of the `split` column.

        Returns:
            The table, in the order of `arrays` (the objects that could be scored), and a
            rejection frame (object_id, reason, source `MODEL_SOURCE`) of the others: non-finite
            VAE outputs or features (`NON_FINITE_OUTPUT`), a NaN score (`NAN_SCORE`).
        """
        known = self.config.data.known_classes
        arrays = dataclasses.replace(arrays, is_anomaly=unknown_to_the_run(arrays.target, known))
        outputs = model_outputs(self.vae, arrays, self.config.eval.batch_size)
        finite = finite_outputs(outputs)
        unscorable = [(arrays.object_id[~finite], NON_FINITE_OUTPUT)]
        if not finite.all():
            arrays = arrays.take(np.flatnonzero(finite))
            outputs = {key: values[finite] for key, values in outputs.items()}
        objects = {**object_labels(arrays, split), **outputs}
        found = evidence(objects, self.vae.stats, self.vae.encoder.classes)
        # Only the fused components: what `plasticc-jax score` writes, here and on a cluster.
        frame = score_table(objects, self.detector.score(found, fused_only=True), self.detector)
        nan = np.isnan(frame["anomaly_score"].to_numpy(np.float64))
        if nan.any():
            unscorable.append((frame["object_id"].to_numpy()[nan], NAN_SCORE))
            frame = frame[~nan].reset_index(drop=True)
        rejected = pd.DataFrame(
            {
                "object_id": np.concatenate([ids for ids, _ in unscorable]).astype(np.int64),
                "reason": [reason for ids, reason in unscorable for _ in ids],
                "source": MODEL_SOURCE,
            }
        )
        return frame, rejected


@functools.lru_cache(maxsize=2)
def _load_cached(run_dir: str, fingerprint: str) -> Scorer:
    from plasticc_jax.io_utils import folder_lock

    with folder_lock(Path(run_dir), "score", shared=True):
        scorer = Scorer.load(run_dir)
        if run_fingerprint(Path(run_dir)) != fingerprint:
            raise UserError(
                f"{run_dir} changed while it was being scored (trained or evaluated again "
                "meanwhile): score again"
            )
    return scorer


REJECTED_REASON = "rejected_reason"


def score_dataframe(
    rows: pd.DataFrame,
    run: str | Path | Scorer,
    metadata: pd.DataFrame | None = None,
    *,
    split: str = "new",
    as_of: float | None = None,
) -> pd.DataFrame:
    """Score light curves given as a table, one row per observation; every object gets one row.

    The function to map over a dataframe engine's partitions (Dask `map_partitions`, Spark
    `mapInPandas`; README, "Beyond one machine"): it depends on nothing but its arguments, loads
    the run once per process (or takes it loaded), and gives the scores of `plasticc-jax score`
    for the same objects.

    Args:
        rows: one row per observation: object_id (whole numbers, as integers or text: read
            exactly at any size), mjd (days), passband (0-5), flux, flux_err (FLUXCAL),
            detected (or detected_bool: true/false or 1/0, as booleans, numbers or text; a
            missing flag is refused, as in a file); unless `metadata` is given, also the
            object's metadata on each of its rows: ra, decl, ddf (or ddf_bool), hostgal_specz,
            hostgal_photoz, hostgal_photoz_err, distmod, mwebv (-9 or NaN: missing), and
            optionally a label, target or true_target (copied, never scored). Column names in
            any case (`OBJECT_ID`), as the CSV readers take them. Any row order, but every row
            of an object must be in this frame (a partition of whole objects).
        run: a trained and evaluated run directory, or the run loaded once (`Scorer.load`):
            sent with the tasks (e.g. `dask.delayed(Scorer.load(RUN))`), the workers then score
            with the model the driver loaded and read no file of the run, as `score --dask`.
        metadata: one row per object instead of metadata columns in `rows`; only the objects of
            `rows` are looked up (a partition cannot know whether an object without rows here
            has them in another partition, so those are not reported).
        split: the value of the `split` column.
        as_of: score each object with only its observations up to this MJD, as `plasticc-jax
            score --as-of` does: the table then has `days_since_detection` (second), and an
            object not detected by then is rejected. (Dropping the later rows instead scores
            the objects detected by then alike, but also scores those not detected yet.) A run
            of the `early` preset is the one meant for it (docs/early.md).

    Returns:
        One row per object of `rows`, sorted by object_id: the columns of `plasticc-jax score`'s
        table without `rank` (a rank needs every object: rank the whole result), then
        `rejected_reason` (a pandas string column): missing (NA) for a scored object; for an
        object that cannot be scored, why (too few observations, no metadata, impossible
        metadata, a non-finite VAE output, a NaN score), with its VAE,
        feature and score columns NaN, `n_observed` 0, `is_galactic` and `flagged` False and
        `nearest_class` -1 (no class, its name empty). The column types are the same for
        every call, also on an empty frame: `score_dataframe(rows.head(0), run)` is the
        `meta` of a Dask `map_partitions`.

    Raises:
        UserError: a missing column, a value that is not what its column holds (named with its
            row), a column under both its PLAsTiCC names, an object twice in `metadata`, or an
            `as_of` that is not an MJD within the survey.
    """
    from plasticc_jax import streaming
    from plasticc_jax.early import check_as_of

    if as_of is not None:
        check_as_of(as_of, "score_dataframe: as_of")

    for name, frame in (("rows", rows), ("metadata", metadata)):
        if frame is not None and not isinstance(frame, pd.DataFrame):
            raise UserError(
                f"score_dataframe: {name} must be a pandas DataFrame, not {type(frame)}"
            )
    # Column names as the CSV readers take them: in capitals (`OBJECT_ID`) or padded too.
    rows = streaming.lower_names(rows, "score_dataframe: rows")
    if metadata is not None:
        metadata = streaming.lower_names(metadata, "score_dataframe: metadata")
    for name, frame in (("rows", rows), ("metadata", metadata)):
        if frame is not None and "object_id" not in frame:
            raise UserError(f"score_dataframe: {name} has no object_id column: {list(frame)}")
    if not isinstance(run, str | os.PathLike | Scorer):
        raise UserError(
            f"score_dataframe: run must be a run directory or a loaded Scorer, not {run!r}"
        )
    # Object ids read exactly and alike in both tables before they are matched (text in one
    # and integers in the other matched nothing).
    rows = rows.assign(object_id=streaming.object_ids(rows, "rows"))
    if metadata is not None:
        metadata = metadata.assign(object_id=streaming.object_ids(metadata, "metadata"))
    scorer = run if isinstance(run, Scorer) else Scorer.cached(run)
    if metadata is None:
        meta_columns = [*plasticc.METADATA_COLUMNS, *plasticc.METADATA_ALIASES]
        meta_columns += list(plasticc.LABEL_COLUMNS)
        metadata = rows[[c for c in meta_columns if c in rows]].drop_duplicates()
        named = set(metadata.rename(columns=plasticc.METADATA_ALIASES))
        if missing := [c for c in META_VALUES if c not in named]:
            raise UserError(
                f"score_dataframe: the rows have no metadata columns {missing} and no `metadata` "
                "was given: put the object's metadata on each of its rows, or pass the metadata "
                "table as metadata="
            )
        differs = metadata["object_id"].duplicated()
        if differs.any():
            raise UserError(
                f"score_dataframe: object {metadata['object_id'][differs].iloc[0]} has different "
                "metadata on different rows; give one value per object (or pass `metadata`)"
            )
        # No metadata value at all (a left merge's rows of an object without metadata): an
        # object without metadata, as `score` says it (a review: "metadata ddf missing").
        values = metadata.drop(columns=["object_id", *plasticc.LABEL_COLUMNS], errors="ignore")
        metadata = metadata[values.notna().any(axis=1)]
    else:
        metadata = metadata[metadata["object_id"].isin(rows["object_id"])]
    if "target" not in metadata and "true_target" in metadata:
        metadata = metadata.rename(columns={"true_target": "target"})
    if as_of is not None and not scorer.config.train.partial_curves:
        # Once per run and process (Python's warning filter), not once per partition.
        warnings.warn(scorer.complete_only_message("score_dataframe(as_of=...)"), stacklevel=2)
    arrays, rejected = streaming.grid_lightcurves(
        rows, metadata, scorer.config.data, as_of=as_of, caller="score_dataframe"
    )
    table, unscorable = scorer.table(arrays, split)
    if len(unscorable):
        rejected = pd.concat([rejected, unscorable], ignore_index=True)
    if as_of is not None:
        insert_days_since_detection(table, arrays)
    # The same column types for every partition, also one without any scored object.
    table = table.astype({"split": str, "class_name": str, "nearest_class_name": str})
    table[REJECTED_REASON] = pd.Series(pd.NA, index=table.index, dtype="string")
    if len(rejected):
        target = metadata.set_index("object_id")["target"] if "target" in metadata else None
        table = pd.concat([table, _rejected_rows(rejected, target, table, scorer, split)])
    return table.sort_values("object_id", kind="stable", ignore_index=True)


def _rejected_rows(
    rejected: pd.DataFrame,
    target: pd.Series | None,
    like: pd.DataFrame,
    scorer: Scorer,
    split: str,
) -> pd.DataFrame:
    """Rows of the score table's columns for rejected objects: labels, NaN scores, the reason."""
    ids = rejected["object_id"].to_numpy(np.int64)
    n = ids.size
    labels = np.full(n, plasticc.UNKNOWN_TARGET, np.int64)
    if target is not None:  # read as `streaming.grid_lightcurves` reads the scored ones' labels
        found = pd.to_numeric(target, errors="coerce").reindex(ids).to_numpy(np.float64)
        labels = np.where(readers.is_class_number(found), found, labels).astype(np.int64)
    columns: dict[str, object] = {
        "object_id": ids,
        "split": np.full(n, split),
        "target": labels,
        "class_name": [plasticc.class_name(c) for c in labels],
        "is_anomaly": unknown_to_the_run(labels, scorer.config.data.known_classes),
    }
    for name, dtype in like.dtypes.items():
        if name in columns or name == REJECTED_REASON:
            continue
        if name == "nearest_class":  # no class, as the detector writes it
            columns[name] = np.full(n, -1, dtype)
        elif dtype.kind in "biu":  # 0 observed cells, not flagged, not known to be galactic
            columns[name] = np.zeros(n, dtype)
        elif dtype.kind == "f":  # NaN scores and features
            columns[name] = np.full(n, np.nan, dtype)
        else:  # text: empty, as `score_table` writes a missing nearest class
            columns[name] = np.full(n, "", object)
    columns[REJECTED_REASON] = rejected["reason"].to_numpy(object)
    return pd.DataFrame(columns)[list(like.columns)].astype(like.dtypes.to_dict())
