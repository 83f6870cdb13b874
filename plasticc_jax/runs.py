"""A run directory on disk: what `train` writes there and what the later stages read back.

Layout of `runs/<name>-<tag>/` (`Config.run_path`):

- `config.json`: the resolved config the run was trained with (`read_config`); `stats.json`: the
  feature statistics of the objects it was trained on (the dataset's train split, less any class
  the config leaves out). Together they say how to grid and normalise new data.
- `metrics.jsonl`: one line of training metrics per epoch.
- `checkpoints/`: Orbax steps (`checkpoints.CheckpointStore`); each holds the parameters, the
  optimizer state and the run's `Progress`.
- `provenance.json`: the dataset the run was trained on (`plasticc_jax.provenance`).
- written by `evaluate`: `models/` (the anomaly detector and its `provenance.json`),
  `scores.parquet`, `scores.csv`, `metrics.json`, `metrics.md`, `reports/figures/`, `report.md`;
  `INCOMPLETE` while it writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, provenance
from plasticc_jax.config import Config, TrainConfig
from plasticc_jax.dataset import FeatureStats
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_write_text, naming_failed_writes

log = logging.getLogger(__name__)

# Improvements of the val loss smaller than this (nats per observed value) do not reset patience.
MIN_DELTA = 1e-4
# Files of a run directory that train and evaluate write (nothing else may write over them), and
# its folders that only the stages (train, evaluate, validate, review) write into.
RUN_FILES: tuple[str, ...] = (
    "config.json",
    "stats.json",
    "provenance.json",
    "metrics.jsonl",
    "scores.parquet",
    "scores.csv",
    "scores_stages.parquet",
    "metrics.json",
    "metrics.md",
    "report.md",
)
RUN_FOLDERS: tuple[str, ...] = ("checkpoints", "models", "reports", "validation", "review")


@dataclass
class Progress:
    """Where a run stands; saved as JSON with every checkpoint, so a resumed run continues
    exactly where the saved one stopped.

    Attributes:
        seed: `train.seed` when the run started (a resumed run keeps it).
        rng: key data of the run's base PRNG key (sampling noise).
        epoch: last finished epoch (0: none yet).
        step: optimizer steps taken.
        best_val_loss: lowest val loss so far (nats per observed value); best_epoch its epoch.
        bad_epochs: epochs since the last improvement by more than `MIN_DELTA`.
        stop_reason: `early_stopping`, or empty.
    """

    seed: int
    rng: list[int]
    epoch: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stop_reason: str = ""

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Progress:
        names = {f.name for f in dataclasses.fields(Progress)}
        return Progress(**{k: v for k, v in raw.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def record(self, epoch: int, step: int, val_loss: float, train_config: TrainConfig) -> bool:
        """Account for a finished epoch; returns whether early stopping ends the run."""
        if val_loss < self.best_val_loss - MIN_DELTA:
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        stop = self.bad_epochs >= train_config.patience
        self.epoch, self.step = epoch, step
        self.stop_reason = "early_stopping" if stop else ""
        return stop

    def done(self, train_config: TrainConfig) -> bool:
        """Whether training has nothing left to do (early stopping, or `max_epochs` reached)."""
        return self.stop_reason == "early_stopping" or self.epoch >= train_config.max_epochs

    def log_done(self, run_dir: Path) -> None:
        early = self.stop_reason == "early_stopping"
        log.info(
            "%s is finished (%s at epoch %d; best val loss %.4f at epoch %d): nothing to do. %s",
            run_dir,
            "early stopping" if early else "train.max_epochs reached",
            self.epoch,
            self.best_val_loss,
            self.best_epoch,
            "Delete it (or pick another --run-dir) to train afresh."
            if early
            else "Raise --max-epochs to train further.",
        )


def training_progress(run_dir: Path) -> Progress | None:
    """The run's training as its latest checkpoint records it; None: no checkpoint yet."""
    from plasticc_jax.checkpoints import CheckpointStore  # Orbax: only where checkpoints are read

    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return None
    with CheckpointStore(directory, read_only=True) as store:
        latest = store.latest_epoch()
        if latest is None:
            return None
        return Progress.from_json(store.restore(latest, {"meta": None})["meta"])


# What to do about a damaged config.json ("train the run again" failed on the same file).
_CONFIG_AGAIN = (
    "train wrote it: restore it, or remove it and run `plasticc-jax train` with the run's "
    "--config/--protocol options, which writes it back as the run was trained"
)


def read_config(run_dir: Path) -> Config:
    """The resolved config a run was trained with.

    Raises:
        UserError: `run_dir` is missing, a file or holds no `config.json` (not a trained run).
    """
    path = Path(run_dir) / "config.json"
    checkpoints = Path(run_dir) / "checkpoints"
    train_first = (
        "run `make train` (or `plasticc-jax train`) with the same --config/--protocol/--set "
        "options first, or pass the folder it wrote (runs/<name>-<protocol>)"
    )
    if not Path(run_dir).exists():
        raise UserError(f"{run_dir} does not exist (no trained run there): {train_first}")
    if not Path(run_dir).is_dir():
        raise UserError(
            f"{run_dir} is a file, not a run folder: give the folder `train` wrote (the one "
            "holding config.json)"
        )
    if path.is_dir():
        raise UserError(
            f"{path} is a folder, where the run's config.json belongs: move it away (or restore "
            "the file)"
        )
    if (Path(run_dir) / "manifest.json").is_file() and (Path(run_dir) / "shards").is_dir():
        raise UserError(
            f"{run_dir} is a prepared dataset, not a run: give the run folder `train` wrote "
            "(runs/<name>-<protocol>)"
        )
    # An empty checkpoints/ (a train that failed before its first epoch) is no trained run.
    if not path.is_file() and checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise UserError(
            f"{path} is missing, but the run has checkpoints: run `plasticc-jax train` with its "
            "--config/--protocol options again, which writes it back as the run was trained"
        )
    if not path.is_file() and (Path(run_dir) / "validation").is_dir():
        raise UserError(
            f"{run_dir} holds only `validate`'s output (no config.json: validate trains one "
            "network per fold, not the run's own): run `make train` (or `plasticc-jax train`) "
            "with the same --config/--protocol/--set options for the run itself"
        )
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json): {train_first}")
    try:
        config = config_io.read_config(path)
        config_lib.validate(config)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise UserError(
            f"{path} is damaged ({type(error).__name__}: {error}); {_CONFIG_AGAIN}"
        ) from None
    except UserError as error:  # a value of the wrong type, or out of its range
        raise UserError(f"{path}: {error}; {_CONFIG_AGAIN}") from None
    return config


def check_run_dir(run_dir: Path, data_dirs: list[Path]) -> None:
    """A run directory must not be, hold or sit inside a data folder: train and evaluate would
    write their files (config.json, stats.json, ...) among the data's.

    Raises:
        UserError: `run_dir` (or a folder above it) is a file, or overlaps one of `data_dirs`.
    """
    file = next((p for p in [Path(run_dir), *Path(run_dir).parents] if p.is_file()), None)
    if file is not None:  # (a review: its checkpoints "damaged", and the advice to delete it)
        raise UserError(
            f"run directory {run_dir}: {file} is a file, where a folder is needed: move it or "
            "pick another --run-dir"
        )
    run = Path(run_dir).resolve()
    for folder in data_dirs:
        other = Path(folder).resolve()
        if run.is_relative_to(other) or other.is_relative_to(run):
            raise UserError(
                f"run directory {run_dir} overlaps the data folder {folder}: its files would mix "
                "with the data's; pick another --run-dir"
            )
    # Nor inside another run, or holding one (a review: a run trained into another's models/
    # replaced its detector's record), but for a run's own validation folds.
    outer = next((p for p in run.parents if _is_run(p)), None)
    if outer is not None and run.relative_to(outer).parts[0] != "validation":
        raise UserError(
            f"run directory {run_dir} lies inside the run {outer}: their files would mix; pick "
            "another --run-dir"
        )
    inner = next((p for p in run.glob("*") if _is_run(p)), None) if run.is_dir() else None
    if inner is not None:
        raise UserError(
            f"run directory {run_dir} holds the run {inner}: their files would mix; pick "
            "another --run-dir"
        )


def _is_run(folder: Path) -> bool:
    """Whether a folder holds a run (its config.json and checkpoints)."""
    return (folder / "config.json").is_file() and (folder / "checkpoints").is_dir()


def protected_paths(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(files, folders) of a run directory that no other output may replace or enter."""
    run_dir = Path(run_dir)
    return [run_dir / n for n in RUN_FILES], [run_dir / n for n in RUN_FOLDERS]


def check_resumable(
    run_dir: Path,
    config: Config,
    stats: FeatureStats,
    dataset_dir: Path,
    manifest: Mapping[str, Any],
    trained: Config | None = None,
) -> dict[str, tuple[Any, Any]]:
    """A run directory with checkpoints must match the model, the data and its statistics.

    Args:
        trained: the config recorded with the latest checkpoint (None for runs of earlier
            releases): what the run is checked against when its `config.json` is missing.

    Returns:
        The train settings changed since (name -> (then, now); the seed aside, which `train`
        checks itself): train says so.

    Raises:
        UserError: the run was trained with another model or data config, or on a dataset that
            was prepared again since.
    """
    changed: dict[str, tuple[Any, Any]] = {}
    config_path = run_dir / "config.json"
    # A damaged config.json: one line naming it.
    recorded = read_config(run_dir) if config_path.is_file() else trained
    if recorded is not None:
        old, new = config_io.to_dict(recorded), config_io.to_dict(config)
        for section in ("model", "data"):
            # Where files are and how fast they are made are no part of what was trained on.
            skip = provenance.NOT_CONTENT if section == "data" else ()
            differ = [
                f"{section}.{key} {old[section].get(key)!r} -> {new[section].get(key)!r}"
                for key in sorted(set(old[section]) | set(new[section]))
                if key not in skip and old[section].get(key) != new[section].get(key)
            ]
            if differ:
                where = config_path if config_path.is_file() else "its checkpoints' record"
                raise UserError(
                    f"{run_dir} holds checkpoints of a different {section} config ({where}: "
                    f"{', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''}); to train "
                    "afresh delete that folder or pick another run directory (--run-dir)"
                )
        # The seed: `train` refuses another; more epochs is how a run is continued.
        changed = {
            key: (old["train"].get(key), value)
            for key, value in new["train"].items()
            if key != "seed" and old["train"].get(key) != value
        }
    stats_path = run_dir / "stats.json"
    record = provenance.trained_on(run_dir)
    if record is not None and record.get("fingerprint") != manifest.get("fingerprint"):
        raise UserError(
            f"{dataset_dir} was prepared again since {run_dir} started (its fingerprint "
            "differs): delete the run directory to train on the new dataset"
        )
    if stats_path.is_file() and stats_path.read_text(errors="replace") != stats.to_text():
        try:
            FeatureStats.from_json(json.loads(stats_path.read_text()))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UserError(
                f"{stats_path} is damaged: remove it and run train again, which writes it from "
                f"the dataset ({dataset_dir})"
            ) from None
        raise UserError(
            f"{dataset_dir} was prepared again since {run_dir} started (its feature statistics "
            "differ): delete the run directory to train on the new dataset"
        )
    return changed


def checkpoint_meta(
    progress: Progress, config: Config, stats: FeatureStats, params: Mapping[str, Any]
) -> dict[str, Any]:
    """What each checkpoint records beside its arrays: the run's `Progress`, the config it was
    trained with, and the hashes of its networks' parameters and of `stats.json`, so that a
    damaged or swapped file is refused when the run is loaded (`check_checkpoint_meta`)."""
    return {
        **progress.to_json(),
        "config": config_io.to_dict(config),
        "params_sha256": {name: provenance.params_sha256(tree) for name, tree in params.items()},
        "stats_sha256": hashlib.sha256(stats.to_text().encode()).hexdigest(),
    }


def check_checkpoint_meta(
    run_dir: Path,
    config: Config,
    stats: FeatureStats,
    meta: Mapping[str, Any],
    params: Mapping[str, Any],
    epoch: int,
) -> None:
    """The run's files must be those its checkpoint was trained with, and its parameters intact.

    Args:
        config, stats: the run's `config.json` and `stats.json` as read; meta: the checkpoint's
            record (`checkpoint_meta`; runs of earlier releases lack the hashes, and the oldest
            the config); params: network name -> the restored parameters.

    Raises:
        UserError: `config.json` or `stats.json` edited or swapped in since, or parameters that
            are damaged (another hash than the one recorded, or not finite).
    """
    checkpoint = f"the checkpoint of epoch {epoch}"
    trained = meta.get("config")
    if isinstance(trained, dict):
        old, new = config_io.to_dict(config_io.from_dict(trained)), config_io.to_dict(config)
        for section in ("model", "data"):
            # As `check_resumable`: a run resumed with other folders or speeds is the same run.
            skip = provenance.NOT_CONTENT if section == "data" else ()
            changed = sorted(
                k for k, v in new[section].items() if k not in skip and old[section].get(k) != v
            )
            if changed:
                raise UserError(
                    f"{run_dir / 'config.json'}: its {section} settings ({', '.join(changed)}) "
                    f"differ from those {checkpoint} was trained with: it was edited or copied "
                    "from another run; restore it, or train a new run"
                )
    stats_path = run_dir / "stats.json"
    digest = meta.get("stats_sha256")
    if digest is not None and hashlib.sha256(stats.to_text().encode()).hexdigest() != digest:
        raise UserError(
            f"{stats_path} differs from the feature statistics {checkpoint} was trained with: it "
            "was edited or copied from another run; restore it, or train a new run"
        )
    check_params(run_dir, meta, params, epoch)


def check_params(
    run_dir: Path, meta: Mapping[str, Any], params: Mapping[str, Any], epoch: int
) -> None:
    """The restored parameters of a checkpoint (network name -> parameters) must be those train
    saved: finite, and of the hashes its record `meta` holds (runs of earlier releases lack them).

    Raises:
        UserError: damaged parameters, the network's folder named.
    """
    recorded = meta.get("params_sha256", {})
    for name, tree in params.items():
        if not provenance.params_finite(tree):
            why = "not finite"
        elif name in recorded and provenance.params_sha256(tree) != recorded[name]:
            why = "their hash differs from the one train recorded"
        else:
            continue
        raise UserError(
            f"{run_dir / 'checkpoints' / str(epoch) / name}: the parameters are damaged ({why}); "
            "restore the run's checkpoints, or train the run again"
        )


def write_run_files(
    run_dir: Path,
    config: Config,
    stats: FeatureStats,
    dataset_dir: Path,
    manifest: Mapping[str, Any],
) -> None:
    """`config.json`, `stats.json` (the statistics of the objects trained on) and
    `provenance.json` (the dataset's fingerprint) at the start of training."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_io.save_config(config, run_dir / "config.json")
    atomic_write_text(run_dir / "stats.json", stats.to_text())
    provenance.record_training(run_dir, dataset_dir, manifest)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """One line of `metrics.jsonl`."""
    with naming_failed_writes(path), open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def keep_metrics_until(path: Path, epoch: int) -> None:
    """Drop metric lines of epochs after the checkpoint we resume from (killed mid-epoch)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, start=1):
        try:
            line_epoch = int(json.loads(line)["epoch"])
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines):  # torn by a kill while it was written: past the checkpoint
                log.warning("%s: dropping a damaged last line", path)
                continue
            raise UserError(
                f"{path}, line {number}: not a metrics record ({error}); fix or remove that line"
            ) from None
        if line_epoch <= epoch:
            kept.append(line)
    logged = len(kept)
    if logged < epoch:  # cut short (an audit found the lost epochs dropped without a word)
        log.warning(
            "%s holds %d of the %d epochs trained so far (cut short): their log lines are lost; "
            "the checkpoints, which training resumes from, are whole",
            path,
            logged,
            epoch,
        )
    atomic_write_text(path, "".join(line + "\n" for line in kept))
