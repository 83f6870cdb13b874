"""`make validate`: choose the detector by leave-one-known-class-out validation.

The anomaly classes of the test split must never steer a choice, so every choice (features,
model, components, fusion weights, settings) is made on the known classes alone: each known class
in turn is held out of everything that is fitted and plays the anomaly.

For each known class c (a fold):

1. train the model on the train split's other known classes (a full `train` run in
   `<run>/validation/fold-<c>/`, with the config's settings; resumable);
2. fit the detector's components on the same objects and calibrate them on the val split's other
   known objects (as `evaluate` does);
3. score the val split's other known objects (the negatives: never fitted on) and every train and
   val object of class c (the positives: never seen), and measure each component's AUROC.

A fold whose scores exist is reused only if they were made with the same settings (but for those
of the report alone, `REPORT_ONLY`) and the same prepared dataset (`fold.json` beside them);
otherwise it is scored again: its network is reused when only detector settings differ, and
`train` refuses a fold folder of another model or data (validate into another run directory
then). Another `eval.fusion` alone scores nothing again (its components' scores stored, the
fusion is recomputed from them in seconds), with stages too (the stage rows' `anomaly_score` is
recomputed for the configured fusion).

The fold's mean AUROC over the known classes is the validation score of a component; the fusion
weights are then searched on the stored fold scores (every combination of weights 0-3 over the
`SEARCH_TOP` best single components and the configured fusion's) and the best combination is
reported beside the configured one: the shipped preset's `eval.fusion` is the best one found.
The test split is never read.

Early detection (a config with `data.stages`, the `early` preset; docs/early.md): the fold's
detector is fitted and calibrated as `evaluate` does it (with `train.partial_curves`, each
object's complete row and one partial row), and the held-out class is also scored at every stage:
its train and val objects' partial rows against the val split's other known objects at the same
stage, with the detector's `anomaly_score` (the configured fusion), an object with too few
observations by then ranking last, as `stages.early_metrics` scores the test split. The fold
AUROC per stage and its mean over the folds (`stages` in validation.json; the headline is
10 days) is how early-detection settings, such as the grid's time anchor, are chosen; the fusion
weights are also searched at the headline stage (`fusion_search.StageFolds`), which is how the
`early` preset's `eval.fusion` is chosen.

Outputs in `<run>/validation/`: `scores.parquet` (per fold and object: every component's
calibrated score), `stages.parquet` (with stages: per fold, stage and object, the anomaly
score and every component's calibrated score), `validation.json` and `validation.md` (the tables).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, provenance, runs, scoring
from plasticc_jax.components import COMPONENTS, Evidence
from plasticc_jax.config import Config
from plasticc_jax.dataset import iter_split, read_manifest
from plasticc_jax.detector import Detector, parse_fusion, route
from plasticc_jax.encoder import load_vae
from plasticc_jax.errors import UserError
from plasticc_jax.fusion_search import (
    Folds,
    StageFolds,
    calibration_groups,
    fusion_spec,
    stage_fused,
)
from plasticc_jax.io_utils import (
    atomic_path,
    atomic_write_text,
    folder_lock,
    remove_unfinished_writes,
)
from plasticc_jax.plasticc import class_name
from plasticc_jax.runs import read_config
from plasticc_jax.stages import detector_rows, stage_name

log = logging.getLogger(__name__)

# Beside each fold's scores: the settings and dataset they were made with (`_fold_record`).
FOLD_RECORD = "fold.json"
# The early-detection headline: days after the first detection (docs/early.md).
HEADLINE_DAYS = 10.0


def fold_config(config: Config, held_out: int, run_dir: Path) -> Config:
    """The config of one fold: `held_out` moves from the known classes to the anomalies."""
    data = config.data
    known = tuple(c for c in data.known_classes if c != held_out)
    return dataclasses.replace(
        config,
        run_dir=str(run_dir),
        data=dataclasses.replace(
            data, known_classes=known, anomaly_classes=(*data.anomaly_classes, held_out)
        ),
    )


def refuse_other_network(fold: Config, run_dir: Path) -> None:
    """Refuse a fold folder whose network was trained with other settings than `fold`'s.

    `train` would resume it (more epochs: trained on, its schedule fitted to the fewer) or refuse
    another model or data only once the fold's record is gone; refused before anything is
    touched, so that a refused validate changes nothing and fold.json and validation.json never
    name settings its network was not trained with.

    Raises:
        UserError: the settings that differ, and what to do.
    """
    if not (run_dir / "config.json").is_file():
        return
    trained, wanted = config_io.to_dict(read_config(run_dir)), config_io.to_dict(fold)
    changed = [
        f"{section}.{key} {trained[section].get(key)}"
        for section in ("model", "data", "train")
        for key in sorted(wanted[section])
        if not (section == "data" and key in provenance.NOT_CONTENT)
        and trained[section].get(key) != wanted[section][key]
    ]
    if changed:
        raise UserError(
            f"{run_dir} holds a network trained with other settings ({', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}): delete {run_dir.parent} to validate with "
            "these, or give the run's settings"
        )


def _fold_scores(
    config: Config, workdir: Path, held_out: int, run_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Train the fold's model, fit its detector, and score its evaluation objects.

    Returns:
        The complete light curves' component scores (one row per scored object), and with
        `data.stages` the same objects at every stage: the anomaly score and every component's
        (None without stages).
    """
    from plasticc_jax.train import train  # imported here: JAX and the step are heavy

    staged = bool(config.data.stages)
    fold = fold_config(config, held_out, run_dir)  # its network checked by the caller
    train(fold, workdir, dataset_dir=config.data.dataset_dir)
    vae = load_vae(workdir / run_dir, max_batch=config.eval.batch_size)
    parts = []
    for split in ("train", "val"):  # never the test split
        for shard in iter_split(workdir / config.data.dataset_dir, split, partial=staged):
            keep = np.flatnonzero(np.isin(shard.target, config.data.known_classes))
            shard = shard.take(keep)
            outputs = scoring.model_outputs(vae, shard)
            labels = scoring.object_labels(shard, split)
            parts.append({**labels, "stage": shard.stage, **outputs})
    objects = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    evidence = scoring.evidence(objects, vae.stats, vae.encoder.classes)
    return fold_detector_scores(config, held_out, objects, evidence)


def fold_detector_scores(
    config: Config, held_out: int, objects: dict[str, np.ndarray], evidence: Evidence
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A fold's detector fitted, calibrated and scored as `evaluate` does it (`_fold_scores`).

    Args:
        config: the validated config; held_out: the fold's held-out class.
        objects: the train and val splits' known objects (complete rows and, with
            `data.stages`, partial ones): `scoring.object_labels`, `stage`, `model_outputs`.
        evidence: what the detector reads of them (`scoring.evidence`).

    Returns:
        As `_fold_scores`.
    """
    staged = bool(config.data.stages)
    target, split = objects["target"], objects["split"]
    complete = np.isinf(objects["stage"])
    # As evaluate: complete rows and, with `train.partial_curves`, one partial row per object.
    usable = detector_rows(objects["object_id"], complete, config) & (target != held_out)
    fit = np.flatnonzero((split == "train") & usable)
    val = np.flatnonzero((split == "val") & usable)
    detector = Detector.fit(
        evidence.take(fit), target[fit], evidence.take(val), target[val], config.eval
    )
    evaluated = (split == "val") | (target == held_out)
    # Scored once: the complete rows and, with stages, the partial rows of the same objects.
    rows = np.flatnonzero(evaluated if staged else evaluated & complete)
    part = evidence.take(rows)
    groups = route(detector.components, part.galactic)
    tails = detector.calibrated(detector.raw_scores(part), groups)
    on_complete = complete[rows]
    done = rows[on_complete]
    frame = pd.DataFrame(
        {
            "fold": held_out,
            "object_id": objects["object_id"][done],
            "split": split[done],
            "target": target[done],
            "galactic": part.galactic[on_complete],
            "group": groups[on_complete],
            "positive": target[done] == held_out,
            **{name: tail[on_complete] for name, tail in tails.items()},
        }
    )
    if not staged:
        return frame, None
    stages = pd.DataFrame(
        {
            "fold": held_out,
            "object_id": objects["object_id"][rows],
            "split": split[rows],
            "target": target[rows],
            "stage": objects["stage"][rows].astype(np.float64),
            "positive": target[rows] == held_out,
            # For the stage fusion search (`StageFolds`): the detector group that scored the row,
            # and whether the detector was calibrated on it.
            "group": groups,
            "calibration": (split[rows] == "val") & usable[rows],
            "anomaly_score": detector.final_score(detector.fuse(tails), groups),
            **tails,
        }
    )
    return frame, stages


def _fold_table(first: str, rows: dict[str, dict[str, Any]], folds: list[int]) -> list[str]:
    """A markdown table: one row per entry of `rows` (its mean and per-fold AUROC), one column
    per fold (the held-out class)."""
    head = [first, "mean", *(class_name(int(f)) for f in folds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{row['mean']:.3f}", *(f"{row['folds'][str(f)]:.3f}" for f in folds)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _markdown(result: dict[str, Any]) -> str:
    folds = result["folds"]
    lines = _fold_table("score", result["aurocs"], folds)
    lines += ["", "Best fusions found (mean fold AUROC):", ""]
    for entry in result["search"][:10]:
        lines.append(f"- {entry['mean_auroc']:.3f}: `{fusion_spec(entry['weights'])}`")
    early = result.get("stages")
    if early:
        lines += [
            "",
            f"Early detection (time anchor `{early['time_anchor']}`): fold AUROC of the held-out "
            "class at each stage (days after the first detection), the detector's "
            "`anomaly_score` against the val split's other known objects at the same stage:",
            "",
            *_fold_table("days", early["aurocs"], folds),
        ]
        if early["headline"] is not None:
            best = early["best_found"]
            lines += [
                "",
                f"Headline: mean fold AUROC at {early['headline_stage']} days "
                f"{early['headline']:.3f} (configured fusion `{early['configured_fusion']}`).",
                "",
            ]
            if best["aurocs"] == early["aurocs"]:
                lines.append("The configured fusion is the best one found at that stage.")
            else:
                lines += [
                    f"The best fusion found at {early['headline_stage']} days, "
                    f"`{best['fusion']}`, at every stage:",
                    "",
                    *_fold_table("days", best["aurocs"], folds),
                ]
            lines += ["", f"Best fusions found at {early['headline_stage']} days:", ""]
            for entry in early["search"][:10]:
                lines.append(f"- {entry['mean_auroc']:.3f}: `{fusion_spec(entry['weights'])}`")
    return "\n".join(lines) + "\n"


def lone_known_classes(config: Config) -> list[int]:
    """The known classes that no other known class shares the kind of (galactic or
    extragalactic): held out, they are scored against the other kind's known objects, which
    their kind alone sets apart (`config.alone_in_their_kind`)."""
    known = config.data.known_classes
    return [
        c
        for c in known
        if config_lib.alone_in_their_kind(
            dataclasses.replace(
                config.data,
                known_classes=tuple(k for k in known if k != c),
                anomaly_classes=(c,),
            )
        )
    ]


def validate(config: Config, workdir: Path) -> Path:
    """Run the leave-one-known-class-out validation; returns `<run>/validation`.

    Args:
        config: the resolved config (`config.resolve`) to validate.
        workdir: project folder; relative paths resolve against it.

    Raises:
        UserError: fewer than three known classes (a fold would leave fewer than two to fit), a
            known class without train or val objects, a run directory overlapping the data, or
            a dataset prepared with other data settings (all before any folder is made).
        FolderBusy: another validate of the run is running.
    """
    config_lib.require_resolved(config)
    workdir = Path(workdir)
    known = config.data.known_classes
    if len(known) < 3:
        raise UserError(
            f"leave-one-class-out validation needs at least 3 known classes, not {list(known)} "
            "(data.known_classes, or the protocol's)"
        )
    alone = lone_known_classes(config)
    if alone:
        log.warning(
            "%s: the only known class of its kind; held out, it is scored against the other "
            "kind's known objects, which its kind alone sets apart (its fold's AUROC measures "
            "that, and it weighs in the mean and the fusion search)",
            ", ".join(f"{class_name(c)} ({c})" for c in alone),
        )
    dataset_dir = workdir / config.data.dataset_dir
    # The dataset is read under its shared lock from the first check to the last fold: a
    # `prepare` between two folds would have mixed two datasets under one fingerprint.
    with folder_lock(dataset_dir, "validate", shared=True):
        return _checked_validate(config, workdir, dataset_dir)


def _checked_validate(config: Config, workdir: Path, dataset_dir: Path) -> Path:
    manifest = read_manifest(dataset_dir)
    _check_fold_sizes(config, manifest)
    # What each fold's `train` would refuse, refused before any folder is made.
    runs.check_run_dir(workdir / config.run_path, [dataset_dir, workdir / config.data.raw_dir])
    provenance.check_dataset_config(dataset_dir, manifest, config)
    out = config.run_path / "validation"
    (workdir / out).mkdir(parents=True, exist_ok=True)
    with folder_lock(workdir / out, "validate"):  # one validate of a run at a time
        remove_unfinished_writes(workdir / out, "fold-*")  # of a validate a kill interrupted
        return _validate(config, workdir, out)


# Below this many train and val objects, a held-out class's fold AUROC rests on too few.
FEW_OBJECTS = 5


def _check_fold_sizes(config: Config, manifest: dict[str, Any]) -> None:
    """Every held-out class needs train or val objects to play the anomaly.

    Raises:
        UserError: a known class has none in the prepared dataset (its fold would be NaN).
    """
    counts = manifest.get("counts", {})
    sizes = {
        c: sum(int(counts.get(s, {}).get(str(c), 0)) for s in ("train", "val"))
        for c in config.data.known_classes
    }
    empty = [c for c, n in sizes.items() if n == 0]
    if empty:
        raise UserError(
            f"known classes {empty} have no train or val object in the prepared dataset, so "
            "they cannot be held out: leave them out of data.known_classes"
        )
    for c, n in sizes.items():
        if n < FEW_OBJECTS:
            log.warning(
                "%s (%d) has only %d train and val objects: its fold's AUROC rests on them",
                class_name(c),
                c,
                n,
            )


def _validate(config: Config, workdir: Path, out: Path) -> Path:
    known = config.data.known_classes
    start = time.perf_counter()
    staged = bool(config.data.stages)
    parts, stage_parts = [], []
    dataset = read_manifest(workdir / config.data.dataset_dir).get("fingerprint")
    fitted = _fold_components(config)  # every component the folds score
    for held_out in known:
        cache = workdir / out / f"fold-{held_out}" / "scores.parquet"
        stage_cache = cache.with_name("stages.parquet")
        record = cache.with_name(FOLD_RECORD)
        made_with = _fold_record(config, held_out, dataset)
        # Resumable: a finished fold of the same settings and dataset is not redone (with
        # stages: both of its files written, the stage rows with their component scores). A
        # fold of other settings is (its network reused: `train` finds it finished).
        stored = _stored_record(record)
        same = stored == made_with
        cached = _read_fold(cache, held_out, fitted) if same else None
        if cached is None or (staged and not _has_components(stage_cache, fitted)):
            if cache.is_file() and not same:
                log.info("fold %d was scored %s: again", held_out, _differences(stored, made_with))
            elif cached is not None:  # its scores whole, its stage scores not
                log.info("fold %d has no complete %s: scored again", held_out, stage_cache)
            elif missing := _missing_columns(cache, fitted):
                log.info("fold %d has no scores of %s: scored again", held_out, ", ".join(missing))
            elif cache.is_file():
                log.warning(
                    "%s is damaged, incomplete or of an earlier release: fold %d scored again",
                    cache,
                    held_out,
                )
            log.info("validation fold: %s (%d) held out", class_name(held_out), held_out)
            fold_dir = out / f"fold-{held_out}"
            refuse_other_network(fold_config(config, held_out, fold_dir), workdir / fold_dir)
            # The record goes next: a kill while the files below are replaced must not leave
            # it describing scores of other settings.
            record.unlink(missing_ok=True)
            frame, stage_frame = _fold_scores(config, workdir, held_out, fold_dir)
            if stage_frame is not None:
                with atomic_path(stage_cache) as tmp:
                    stage_frame.to_parquet(tmp, index=False)
            with atomic_path(cache) as tmp:
                frame.to_parquet(tmp, index=False)
            atomic_write_text(record, json.dumps(made_with, sort_keys=True) + "\n")
            cached = None  # scored again: read what was written
        else:
            log.info("fold %d reused (%s)", held_out, cache.parent)
        frame = pd.read_parquet(cache) if cached is None else cached  # read once
        parts.append(_own_components(frame, fitted))
        if staged:
            stage_parts.append(_own_components(pd.read_parquet(stage_cache), fitted))
    scores = pd.concat(parts, ignore_index=True)
    folds = Folds(scores)
    configured = parse_fusion(config.eval.fusion)
    candidates = {
        **{c: scores[c].to_numpy() for c in fitted},
        "fused (configured)": folds.fused(configured),
    }
    log.info("searching fusion weights 0-3 over the components' fold scores")
    search = folds.search(fitted, also=configured)
    candidates["fused (best found)"] = folds.fused(search[0]["weights"])
    aurocs = {name: _summary(folds.aurocs(values)) for name, values in candidates.items()}
    result = {
        "config": config_io.to_dict(config),
        "folds": list(known),
        "aurocs": aurocs,
        "configured_fusion": ",".join(config.eval.fusion),
        "best_fusion": fusion_spec(search[0]["weights"]),
        "search": search[:50],
    }
    if staged:
        stage_scores = pd.concat(stage_parts, ignore_index=True)
        # The configured fusion's score, from the stored components: a reused fold may have been
        # scored with another fusion (the folds do not depend on it).
        groups = calibration_groups(stage_scores)
        stage_scores["anomaly_score"] = stage_fused(stage_scores, groups, configured)
        result["stages"] = _stage_result(config, stage_scores, configured)
        with atomic_path(workdir / out / "stages.parquet") as tmp:
            stage_scores.to_parquet(tmp, index=False)
    result["seconds"] = time.perf_counter() - start
    with atomic_path(workdir / out / "scores.parquet") as tmp:
        scores.to_parquet(tmp, index=False)
    atomic_write_text(workdir / out / "validation.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(workdir / out / "validation.md", _markdown(result))
    log.info(
        "validation (%d folds): configured fusion %.3f, best found %.3f (%s); wrote %s",
        len(known),
        aurocs["fused (configured)"]["mean"],
        aurocs["fused (best found)"]["mean"],
        result["best_fusion"],
        workdir / out / "validation.md",
    )
    if staged:
        early = result["stages"]
        log.info(
            "early detection (time anchor %s): mean fold AUROC %s",
            early["time_anchor"],
            ", ".join(f"{s} {row['mean']:.3f}" for s, row in early["aurocs"].items()),
        )
        if early["headline"] is not None:
            log.info(
                "fusion search at %s days: best found %.3f (%s)",
                early["headline_stage"],
                early["search"][0]["mean_auroc"],
                early["best_found"]["fusion"],
            )
    return workdir / out


# Settings of `evaluate`'s test metrics and report alone: a fold's scores never read them.
REPORT_ONLY = (
    "realistic_anomaly_rate",
    "n_draws",
    "n_bootstrap",
    "figures",
    "umap",
    "baselines",
    "flag_depth_bins",  # the flag's threshold: no fold score reads it
)


def _fold_record(config: Config, held_out: int, dataset: str | None) -> dict[str, Any]:
    """What a fold's scores depend on: its settings (all but where it is written, the fusion
    (see the module docstring) and `REPORT_ONLY`) and the prepared dataset's fingerprint."""
    settings = config_io.to_dict(fold_config(config, held_out, Path()))
    settings.pop("run_dir", None)
    for name in ("fusion", *REPORT_ONLY):
        settings["eval"].pop(name)
    return json.loads(json.dumps({"config": settings, "dataset": dataset}))  # as read back


def _differences(stored: Any, wanted: dict[str, Any]) -> str:
    """How a fold's stored record differs from the one wanted, for the log: `with other
    settings (eval.knn_neighbours 10 -> 3)`, `on another prepared dataset`, or `without a
    readable record`."""
    if not isinstance(stored, dict):
        return "without a readable record (fold.json)"
    if stored.get("dataset") != wanted["dataset"]:
        return "on another prepared dataset"
    old, new = _flat(stored.get("config")), _flat(wanted["config"])
    changed = [
        f"{k} {old.get(k)} -> {new.get(k)}"
        for k in sorted({*old, *new})
        if old.get(k) != new.get(k)
    ]
    return f"with other settings ({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''})"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as `{"eval.knn_neighbours": 10, ...}`."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {
        name: item
        for key, inner in value.items()
        for name, item in _flat(inner, f"{prefix}.{key}" if prefix else key).items()
    }


def _stored_record(record: Path) -> Any:
    """A fold's `fold.json` as `_fold_record` makes it now (earlier releases' name the fusion),
    or None if it is missing or unreadable (scored again)."""
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    settings = stored.get("config") if isinstance(stored, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("eval"), dict):
        for name in ("fusion", *REPORT_ONLY):  # earlier releases' records name them
            settings["eval"].pop(name, None)
    return stored


def _own_components(frame: pd.DataFrame, fitted: list[str]) -> pd.DataFrame:
    """Fold scores with only this run's components: a reused fold may hold others, of an
    earlier fusion."""
    return frame.drop(columns=[c for c in COMPONENTS if c in frame and c not in fitted])


def _missing_columns(cache: Path, components: list[str]) -> list[str]:
    """The components a readable fold score file has no column for (none if it is unreadable:
    then it is damaged, which the caller reports)."""
    try:
        names = set(pq.read_schema(cache).names)
    except (OSError, pa.ArrowException):
        return []
    return [c for c in components if c not in names]


def _read_fold(cache: Path, held_out: int, components: list[str]) -> pd.DataFrame | None:
    """A fold's stored scores, or None unless they are whole: readable, of this fold only, with
    every component's column and the detector groups (fold scores of earlier releases lack them)."""
    try:
        frame = pd.read_parquet(cache)
    except (OSError, ValueError, pa.ArrowException):
        return None
    needed = {"fold", "object_id", "positive", "galactic", "group", *components}
    whole = needed <= set(frame.columns) and set(frame["fold"].unique()) == {held_out}
    return frame if whole and not frame[components].isna().any().any() else None


def _has_components(stage_cache: Path, components: list[str]) -> bool:
    """Whether a fold's stage rows exist with the columns of the stage fusion search and every
    component's (folds validated before it was added, or with fewer components, are re-scored,
    not retrained)."""
    try:
        return {"calibration", *components} <= set(pq.read_schema(stage_cache).names)
    except (OSError, pa.ArrowException):  # missing or damaged: scored again
        return False


def _fold_components(config: Config) -> list[str]:
    """Every component the folds score (`eval.components` and the fusion's), in `COMPONENTS`
    order: those the fusion searches cover."""
    fitted = {*config.eval.components, *parse_fusion(config.eval.fusion)}
    return [c for c in COMPONENTS if c in fitted]


def _summary(per_fold: dict[int, float]) -> dict[str, Any]:
    """validation.json's entry of one score: its mean over the folds and each fold's AUROC."""
    return {
        "mean": float(np.mean(list(per_fold.values()))),
        "folds": {str(f): v for f, v in per_fold.items()},
    }


def _days(config: Config) -> list[float]:
    """The stages validated: the config's, then the complete light curve (inf)."""
    return [*sorted(set(float(d) for d in config.data.stages)), float("inf")]


def _stage_result(
    config: Config, stage_scores: pd.DataFrame, configured: dict[str, float]
) -> dict[str, Any]:
    """validation.json's `stages`: per stage the configured fusion's mean and per-fold AUROC
    (`StageFolds`, recomputed from the stored component scores), the headline (the mean at
    `HEADLINE_DAYS`), and the fusion search there with its best fusion at every stage
    (headline, search and best None/absent when `HEADLINE_DAYS` is not a stage)."""
    days = _days(config)
    at = {d: StageFolds(stage_scores, d) for d in days}

    def per_stage(weights: dict[str, float]) -> dict[str, dict[str, Any]]:
        return {stage_name(d): _summary(f.aurocs(f.fused(weights))) for d, f in at.items()}

    aurocs = per_stage(configured)
    result: dict[str, Any] = {
        "time_anchor": config.data.time_anchor,
        "stages": list(aurocs),
        "configured_fusion": ",".join(config.eval.fusion),
        "aurocs": aurocs,
        "headline_stage": stage_name(HEADLINE_DAYS),
        "headline": None,
    }
    if HEADLINE_DAYS in at:
        headline = at[HEADLINE_DAYS]
        # As the main search (a review: `eval.components` alone left the fusion's out, and
        # none at all an IndexError).
        components = [c for c in _fold_components(config) if c in headline.scores.columns]
        search = headline.search(components, also=configured)
        result["headline"] = aurocs[stage_name(HEADLINE_DAYS)]["mean"]
        result["best_found"] = {
            "fusion": fusion_spec(search[0]["weights"]),
            "aurocs": per_stage(search[0]["weights"]),
        }
        result["search"] = search[:50]
    return result
