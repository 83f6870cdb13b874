"""The active loop's settings, chosen without the test split: the simulated expert on the
leave-one-known-class-out validation (`plasticc-jax review --run RUN --simulate --validation`).

`plasticc-jax validate` holds each known class out of everything fitted in turn (a fold) and keeps,
per fold and object, every detector component's calibrated score (`<run>/validation/
scores.parquet`): the fold's negatives (val-split objects of the other known classes, never fitted
on) and its positives (train and val objects of the held-out class, never seen). The held-out class
plays the anomaly, so the active loop's settings can be compared on known classes alone.

`validation_pool` turns those rows into a table shaped like a run's score table, so that the
active model reads its features with the same `active.feature_columns` as in a review:

- `anomaly_score`: the run's fusion of the fold's calibrated components (`run_fusion`: its
  evaluated detector's, which the test simulation's static ranking is made with), calibrated
  against the fold's negatives per kind, as the detector does (`fusion_search.Folds.fused`);
- the components' calibrated scores (the fold detector's);
- `mu_*` and `chi2_per_cell`: the fold's VAE (its checkpoint in `fold-<c>/`) on the objects;
- the context columns of a score table (`scoring.CONTEXT_COLUMNS`), from the prepared dataset.

`simulate_validation` then draws, per fold, pools of every negative plus positives making
`FRACTION` of the pool (as the test simulation's 5% pool), and runs each candidate policy
(`CANDIDATES`) with the simulated expert of `simulate.active_curve`; the static ranking is the
fused `anomaly_score`. The candidates are compared by the anomalies found among the first
`simulate.TARGET_SHOWN` shown, mean over folds and draws; `active.POLICY` is the best of them.
Outputs: `<run>/validation/review_pool.parquet` (the table, reused while the fold scores and the
fusion it was made from are unchanged: `review_pool.json`) and `review_validation.json`
and `.md`. The test split is never read.
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

from plasticc_jax import detector_files, runs, scoring
from plasticc_jax.config import Config
from plasticc_jax.dataset import iter_split
from plasticc_jax.detector import parse_fusion
from plasticc_jax.errors import UserError
from plasticc_jax.fusion_search import Folds
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.io_utils import atomic_path, atomic_write_text, folder_lock, sha256_file
from plasticc_jax.plasticc import class_name
from plasticc_jax.review import active
from plasticc_jax.review.simulate import TARGET_SHOWN, active_curve, static_curve

log = logging.getLogger(__name__)

FRACTION = 0.05
N_DRAWS = 4
N_SHOWN = TARGET_SHOWN
CHECKPOINTS: tuple[int, ...] = (10, TARGET_SHOWN)
POOL_FILE = "review_pool.parquet"
REPORT = "review_validation"
# The candidate policies: the model and its feature groups, one change at a time from the
# library's defaults on every feature group (AADForest, 100 trees of 256 objects, no
# regularisation toward the unlabelled forest).
CANDIDATES: dict[str, active.Policy] = {
    "aad-all": active.Policy(),
    "aad-no-latents": active.Policy(latents=False),
    "aad-no-context": active.Policy(context=False),
    "aad-latents": active.Policy(scores=False, context=False),
    "aad-scores": active.Policy(latents=False, context=False),
    "aad-all-blend": active.Policy(blend=True),
    "pine-all": active.Policy(model="pineforest"),
}


def run_fusion(run_dir: Path, config: Config) -> dict[str, float]:
    """The fusion weights of the run's evaluated detector (`models/detector.json`: what its
    `anomaly_score` was made with), else of its config (a run trained, not evaluated). The
    config is the one it was trained with: an `evaluate` with another `eval.fusion` since, or a
    release whose validated fusion changed, makes the detector's differ from it (earlier
    releases built the pool with the config's while the test simulation ranked by the
    detector's).

    Raises:
        UserError: the detector's file is unreadable.
    """
    params = Path(run_dir) / "models" / detector_files.PARAMS_FILE
    if not params.is_file():
        return parse_fusion(config.eval.fusion)
    try:
        weights = json.loads(params.read_text())["weights"]
        return {str(name): float(weight) for name, weight in weights.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{params}: cannot read the detector's fusion weights ({error})") from None


def _recorded(record: Path) -> Any:
    """What `record` says the pool was built from; None if it is missing or damaged."""
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None


def validation_pool(run_dir: Path, workdir: Path | None = None) -> pd.DataFrame:
    """The validation's folds as score tables (see the module), one row per (fold, object).

    Read from `<run>/validation/review_pool.parquet` when it was built from the fold scores and
    the fusion of the run as they are now (`review_pool.json` beside it records them), or when
    there are no fold scores beside it; else built (the folds' VAEs are run once, JAX) and
    written there.

    Raises:
        UserError: the run has no validation (`plasticc-jax validate` first).
    """
    from plasticc_jax.review.pool import infer_workdir, read_table

    run_dir = Path(run_dir)
    folder = run_dir / "validation"
    cache, record = folder / POOL_FILE, folder / POOL_FILE.replace(".parquet", ".json")
    if not (folder / "scores.parquet").is_file():
        if cache.is_file():  # a pool given as it is, without the folds it came from
            return read_table(cache)
        raise UserError(f"{folder} holds no fold scores: run `plasticc-jax validate` first")
    config = runs.read_config(run_dir)
    weights = run_fusion(run_dir, config)
    made_from = {"scores_sha256": sha256_file(folder / "scores.parquet"), "fusion": weights}
    if cache.is_file() and _recorded(record) == made_from:
        try:
            return pd.read_parquet(cache)
        except (OSError, ValueError, pa.ArrowException) as error:
            log.warning("%s cannot be read (%s): built again", cache, str(error).split("\n")[0])
    table = pd.read_parquet(folder / "scores.parquet")
    missing = sorted(set(weights) - set(table.columns))
    if missing:
        raise UserError(
            f"{folder / 'scores.parquet'}: the run's fusion weighs {', '.join(missing)}, which "
            "the validation did not score: run `plasticc-jax validate` with the settings the run "
            "was evaluated with"
        )
    table["anomaly_score"] = Folds(table).fused(weights)
    workdir = infer_workdir(run_dir) if workdir is None else Path(workdir)
    dataset = workdir / config.data.dataset_dir
    parts = [
        shard for split in ("train", "val") for shard in iter_split(dataset, split)
    ]  # the folds' objects: never the test split
    from plasticc_jax.dataset import LightCurveArrays
    from plasticc_jax.encoder import load_vae  # JAX: only to build the table

    arrays = LightCurveArrays.concatenate(parts)
    index = pd.Index(arrays.object_id.astype(np.int64))
    outputs = []
    for fold, rows in table.groupby("fold").indices.items():
        ids = table["object_id"].to_numpy(np.int64)[rows]
        where = index.get_indexer(ids)
        if (where < 0).any():
            raise UserError(f"{(where < 0).sum()} objects of fold {fold} are not in {dataset}")
        vae = load_vae(folder / f"fold-{fold}", max_batch=config.eval.batch_size)
        out = scoring.model_outputs(vae, arrays.take(where))
        frame = pd.DataFrame(out["mu"], columns=[f"mu_{j}" for j in range(out["mu"].shape[1])])
        frame["chi2_per_cell"] = out["chi2"]
        for name in scoring.CONTEXT_COLUMNS:
            frame[name] = out["features"][:, FEATURE_NAMES.index(name)]
        frame["is_galactic"] = frame["is_galactic"] > 0.5
        frame.index = rows
        outputs.append(frame)
        log.info("validation pool: fold %s (%d objects)", class_name(int(fold)), len(rows))
    table = pd.concat([table, pd.concat(outputs).sort_index()], axis=1)
    with atomic_path(cache) as tmp:
        table.to_parquet(tmp, index=False)
    atomic_write_text(record, json.dumps(made_from) + "\n")
    return table


def simulate_validation(
    run_dir: Path,
    candidates: dict[str, active.Policy] | None = None,
    n_draws: int = N_DRAWS,
    n_shown: int = N_SHOWN,
    fraction: float = FRACTION,
    seed: int = 0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """The simulated expert on the validation folds, for each candidate policy (see module).

    Returns:
        The summary written to `<run>/validation/review_validation.json`.
    """
    run_dir = Path(run_dir)
    candidates = CANDIDATES if candidates is None else candidates
    # Not while a validate rewrites the folds (it holds the folder's lock): named, not misread.
    with folder_lock(run_dir / "validation", "review", shared=True):
        table = validation_pool(run_dir, workdir)
    models = run_dir / "models"
    start = time.perf_counter()
    folds = sorted(int(f) for f in table["fold"].unique())
    found: dict[str, dict[int, list[np.ndarray]]] = {
        name: {f: [] for f in folds} for name in ["static", *candidates]
    }
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    features = {name: active.feature_columns(table, models, p) for name, p in candidates.items()}
    sizes = {}
    for fold in folds:
        part = table[table["fold"] == fold].reset_index(drop=True)
        positive = part["positive"].to_numpy(bool)
        negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
        n_pos = min(max(1, round(fraction * negatives.size / (1 - fraction))), positives.size)
        sizes[fold] = (int(negatives.size), int(n_pos))
        static = part["anomaly_score"].to_numpy(np.float64)
        matrices = {name: active.feature_matrix(part, cols) for name, cols in features.items()}
        for draw in range(n_draws):
            rng = np.random.default_rng([seed, draw, fold])
            rows = np.concatenate([negatives, rng.choice(positives, n_pos, replace=False)])
            y = positive[rows]
            found["static"][fold].append(static_curve(static[rows], y, n_shown))
            for name, policy in candidates.items():
                curve = active_curve(
                    matrices[name][rows], static[rows], y, n_shown, timings[name], policy
                )
                found[name][fold].append(curve)
            log.info(
                "fold %s, draw %d/%d: static %d, %s",
                class_name(fold),
                draw + 1,
                n_draws,
                found["static"][fold][-1][-1],
                ", ".join(f"{n} {found[n][fold][-1][-1]}" for n in candidates),
            )
    checkpoints = sorted({min(k, n_shown) for k in CHECKPOINTS})
    rows_out = {}
    for name, per_fold in found.items():
        curves = np.stack([c for f in folds for c in per_fold[f]]).astype(np.float64)
        rows_out[name] = {
            "policy": "static ranking (anomaly_score)"
            if name == "static"
            else candidates[name].describe(),
            "settings": None if name == "static" else dataclasses.asdict(candidates[name]),
            "features": features.get(name),
            "found": {str(k): float(curves[:, k - 1].mean()) for k in checkpoints},
            "per_fold": {str(f): float(np.mean([c[-1] for c in per_fold[f]])) for f in folds},
            "rerank_ms": 1e3 * float(np.median(timings[name])) if name in timings else None,
        }
    k = str(checkpoints[-1])
    static_found = rows_out["static"]["found"][k]
    for row in rows_out.values():
        row["ratio"] = row["found"][k] / static_found if static_found > 0 else None
    best = max(candidates, key=lambda n: rows_out[n]["found"][k])
    summary = {
        "run": str(run_dir),
        "pool": f"per fold: the val known objects of the other classes plus {100 * fraction:g}% "
        "of the pool from the held-out class",
        "fraction": fraction,
        "n_draws": n_draws,
        "n_shown": n_shown,
        "folds": {str(f): {"negatives": n, "positives": p} for f, (n, p) in sizes.items()},
        "policies": rows_out,
        "best": best,
        "shipped": next((n for n, p in candidates.items() if p == active.POLICY), None),
        "elapsed_s": time.perf_counter() - start,
    }
    folder = run_dir / "validation"
    atomic_write_text(folder / f"{REPORT}.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(folder / f"{REPORT}.md", validation_markdown(summary))
    log.info("wrote %s(.json, .md)", folder / REPORT)
    return summary


def validation_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table: policies x anomalies found, and per fold."""
    folds = list(summary["folds"])
    k = str(summary["n_shown"])
    ks = list(summary["policies"]["static"]["found"])
    head = [
        "policy",
        *(f"first {c}" for c in ks),
        "ratio",
        *(class_name(int(f)) for f in folds),
        "re-rank ms",
    ]
    lines = [
        f"Simulated expert on the leave-one-known-class-out validation of `{summary['run']}`: "
        f"{summary['pool']}; {len(folds)} folds x {summary['n_draws']} draws; anomalies found "
        f"among the first k shown (mean over folds and draws; per fold: first {k}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, row in summary["policies"].items():
        marks = " **(best)**" if name == summary["best"] else ""
        marks += " (shipped)" if name == summary["shipped"] else ""
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        ms = f"{row['rerank_ms']:.0f}" if row["rerank_ms"] is not None else "–"
        cells = [
            f"`{name}`: {row['policy']}{marks}",
            *(f"{row['found'][c]:.1f}" for c in ks),
            ratio,
            *(f"{row['per_fold'][f]:.1f}" for f in folds),
            ms,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    sizes = ", ".join(
        f"{class_name(int(f))} {s['positives']}/{s['negatives'] + s['positives']}"
        for f, s in summary["folds"].items()
    )
    lines += ["", f"Pools (held-out objects / pool): {sizes}.", ""]
    return "\n".join(lines)
