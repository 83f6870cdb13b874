"""What the validation probes share (`scripts/*_probe.py`, `rest_frame_components.py`): their
command line, the validated run's fold scores and known objects, the classifier's input, the
feature components on other normalisations, and the report of a candidate against the shipped
fusion (the adoption rule of docs/evaluation.md: the candidate's best fusion must beat the
shipped one by more than twice the standard error of the paired per-fold differences)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import config_io
from plasticc_jax.calibration import DEPTH_FEATURE, Reference
from plasticc_jax.components import Classifier, Evidence
from plasticc_jax.config import VALIDATED_FUSION, Config, EvalConfig
from plasticc_jax.dataset import FeatureStats, iter_split
from plasticc_jax.detector import Detector, parse_fusion, route
from plasticc_jax.fusion_search import Folds, fusion_spec
from plasticc_jax.gridding import FEATURE_NAMES, MODEL_FEATURE_NAMES
from plasticc_jax.plasticc import class_name


def probe_arguments(doc: str, out: str, candidates: list[str] | None = None) -> argparse.Namespace:
    """The command line of a validation probe: RUN, --workdir, --out (default `out`), and with
    `candidates`, --only (some of them: then the default `out` is named after them)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--workdir", type=Path, default=None, help="default: RUN/../..")
    parser.add_argument("--out", type=Path, default=None, help=f"default: {out}")
    if candidates:
        parser.add_argument("--only", default="", help=f"some of: {','.join(candidates)}")
    args = parser.parse_args()
    only = getattr(args, "only", "")
    unknown = sorted(set(only.split(",")) - set(candidates or [])) if only else []
    if unknown:
        parser.error(f"--only: no candidate {unknown}; known: {candidates}")
    if args.out is None:
        args.out = Path(out)
        if only:  # not over the full run's scores
            args.out = args.out.with_name(f"{args.out.stem}-{only.replace(',', '-')}.parquet")
    return args


def read_validation(run: Path, workdir: Path | None) -> tuple[Config, pd.DataFrame, pd.DataFrame]:
    """(the config the folds were made with, the fold scores, the train and val splits' known
    objects) of a run with `make validate` (the run's own config.json may be older)."""
    validation = json.loads((run / "validation" / "validation.json").read_text())
    config = config_io.from_dict(validation["config"])
    workdir = workdir or run.parent.parent
    dataset_dir = workdir / config.data.processed_dir / config.data.protocol
    scores = pd.read_parquet(run / "validation" / "scores.parquet")
    return config, scores, load_known(dataset_dir, list(config.data.known_classes))


def load_known(dataset_dir: Path, known: list[int]) -> pd.DataFrame:
    """object_id, split, target and raw features of the train and val splits' known objects."""
    parts = []
    for split in ("train", "val"):  # never the test split
        for shard in iter_split(dataset_dir, split):
            keep = np.isin(shard.target, known)
            parts.append(
                pd.DataFrame(
                    {
                        "object_id": shard.object_id[keep],
                        "split": split,
                        "target": shard.target[keep],
                        "raw": list(np.asarray(shard.features[keep], np.float64)),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def evidence(raw: np.ndarray) -> Evidence:
    """What `Classifier` and `GpClassifier` read (the raw features; the first reads the
    network's columns, as many as `evidence.features` holds); the rest is unused here."""
    n = len(raw)
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    depth = raw[:, FEATURE_NAMES.index(DEPTH_FEATURE)]
    network = raw[:, : len(MODEL_FEATURE_NAMES)]
    return Evidence(np.zeros((n, 1)), np.zeros((n, 0)), np.zeros(n), network, raw, galactic, depth)


# A candidate in the classifier's place: (fitting rows' raw features, their classes, the shipped
# classifier's feature columns, config) -> a scorer of raw feature rows.
Candidate = Callable[
    [np.ndarray, np.ndarray, np.ndarray, Config], Callable[[np.ndarray], np.ndarray]
]


def classifier_fold_columns(
    objects: pd.DataFrame,
    held_out: int,
    config: Config,
    candidates: dict[str, Candidate],
    extra: np.ndarray | None = None,
) -> pd.DataFrame:
    """The shipped classifier score recomputed (`classifier_again`) and each candidate's, for
    one fold's scored objects: fitted per kind on the train split's other known classes and
    calibrated on the val split's other known objects of the same kind, as `validate` fits and
    calibrates the `classifier` component. `extra`: (objects, k) more inputs for the candidates
    (not the shipped classifier), appended to the raw features they get, their columns to
    the classifier's feature columns."""
    raw = np.stack(objects["raw"].to_numpy())
    added = np.zeros((len(raw), 0)) if extra is None else np.asarray(extra, np.float64)
    if len(added) != len(raw):
        raise ValueError(f"extra: {len(added)} rows for {len(raw)} objects")
    wide = np.hstack([raw, added])
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    galactic = raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5
    fit_all = (split == "train") & (target != held_out)
    scored = (split == "val") | (target == held_out)
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    columns = {name: np.zeros(len(objects)) for name in ["classifier_again", *candidates]}
    for g in (True, False):
        fit = fit_all & (galactic == g)
        if not fit.any():  # `sn`: no galactic known class
            continue
        x, y = raw[fit], target[fit]
        shipped = Classifier(config.eval).fit(evidence(x), y)
        scorers = {"classifier_again": lambda r, m=shipped: m.score(evidence(r[:, : raw.shape[1]]))}
        inputs = np.r_[shipped.columns, raw.shape[1] + np.arange(added.shape[1])]
        for name, make in candidates.items():
            if np.unique(y).size < 2:  # one class: every object is "that class"
                scorers[name] = lambda r: np.zeros(len(r))
            else:
                scorers[name] = make(wide[fit], y, inputs, config)
        val = (split == "val") & (target != held_out) & (galactic == g)
        rows = scored & (galactic == g)
        for name, score in scorers.items():
            columns[name][rows] = Reference.fit(score(wide[val])).tail_score(score(wide[rows]))
    for name, column in columns.items():
        out[name] = column[scored]
    return out


def table_rows(folds: Folds, rows: dict[str, np.ndarray]) -> None:
    """Print each score's mean and per-fold AUROC as a markdown table."""
    fold_ids = list(folds.folds)
    head = ["score", "mean", *(class_name(f) for f in fold_ids)]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, values in rows.items():
        per_fold = folds.aurocs(values)
        mean = np.mean(list(per_fold.values()))
        cells = [f"{mean:.3f}", *(f"{per_fold[f]:.3f}" for f in fold_ids)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def paired(folds: Folds, a: np.ndarray, b: np.ndarray) -> str:
    """Mean ± standard error of the per-fold AUROC differences a - b (folds better)."""
    da, db = folds.aurocs(a), folds.aurocs(b)
    d = np.array([da[f] - db[f] for f in da])
    return f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(d.size):.4f} ({(d > 0).sum()}/{d.size})"


def with_fold_columns(
    scores: pd.DataFrame, make: Callable[[int], pd.DataFrame], out: Path
) -> pd.DataFrame:
    """The fold scores with the columns `make(fold)` gives each fold's scored objects, written to
    `out`; a recomputed `classifier_again` column is checked against the stored `classifier`."""
    folds = [int(f) for f in scores["fold"].unique()]
    new = pd.concat([make(f) for f in folds], ignore_index=True)
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    if "classifier_again" in table:
        again = np.abs(table["classifier_again"] - table["classifier"]).max()
        print(f"classifier recomputed: max |again - stored| {again:.2e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return table


def probe_table(
    args: argparse.Namespace, fold_columns: Callable[[pd.DataFrame, int, Config], pd.DataFrame]
) -> tuple[Config, pd.DataFrame]:
    """(the validated run's config, its fold scores with each fold's `fold_columns(objects,
    held_out, config)`), written to `args.out` (`with_fold_columns`)."""
    config, scores, objects = read_validation(args.run, args.workdir)
    make = lambda fold: fold_columns(objects, fold, config)  # noqa: E731
    return config, with_fold_columns(scores, make, args.out)


def compare_with_classifier(table: pd.DataFrame, config: Config, column: str, label: str) -> None:
    """Print the fold table and the paired differences of a candidate `column` for the
    `classifier` component: alone, in its place (shipped weights, then searched) and beside it."""
    folds = Folds(table)
    shipped = parse_fusion(config.eval.fusion)
    base = folds.fused(shipped)
    replaced = {(column if k == "classifier" else k): w for k, w in shipped.items()}
    best = folds.search([*shipped, column], also=shipped)[0]["weights"]
    best_replaced = folds.search(list(replaced), also=replaced)[0]["weights"]
    rows = {
        "shipped fusion": base,
        "classifier alone (shipped)": table["classifier"].to_numpy(),
        f"{label} alone": table[column].to_numpy(),
        f"shipped weights, {label} in the classifier's place": folds.fused(replaced),
        f"best found in its place: `{fusion_spec(best_replaced)}`": folds.fused(best_replaced),
        f"best found beside it: `{fusion_spec(best)}`": folds.fused(best),
    }
    table_rows(folds, rows)
    print("\npaired per-fold differences against the shipped fusion:")
    for name in list(rows)[3:]:
        print(f"- {name}: {paired(folds, rows[name], base)}")


def classifier_probe(doc: str, out: str, title: str, candidates: dict[str, tuple[str, Candidate]]):
    """The command of a probe of classifier candidates (name -> (label, candidate)): each fitted
    in every fold (`classifier_fold_columns`), then reported against the shipped fusion.
    `--only a,b` runs those candidates alone."""
    args = probe_arguments(doc, out, list(candidates))
    if args.only:
        candidates = {name: candidates[name] for name in args.only.split(",")}
    start = time.perf_counter()
    makers = {name: make for name, (_, make) in candidates.items()}
    fold_columns = functools.partial(classifier_fold_columns, candidates=makers)
    config, table = probe_table(args, fold_columns)
    print(f"\n{title} ({time.perf_counter() - start:.0f} s)")
    for name, (label, _) in candidates.items():
        print(f"\n### {label}\n")
        compare_with_classifier(table, config, name, label)


# The feature distance components, fitted again on other feature normalisations.
FEATURE_COMPONENTS = ("feature_mahalanobis", "feature_knn", "feature_forest")
# (every row's raw features, the fitting rows) -> every row's normalised features.
Normalisation = Callable[[np.ndarray, np.ndarray], np.ndarray]


def quantile_normalisation(names: tuple[str, ...]) -> Normalisation:
    """The package's normalisation (`FeatureStats`) of the features `names`, fitted on the
    fitting rows."""
    columns = [FEATURE_NAMES.index(n) for n in names]

    def normalise(raw: np.ndarray, fit: np.ndarray) -> np.ndarray:
        return FeatureStats.fit(names, raw[fit][:, columns]).normalise(raw[:, columns])

    return normalise


def feature_component_columns(
    objects: pd.DataFrame,
    held_out: int,
    config: EvalConfig,
    normalisations: dict[str, Normalisation],
) -> pd.DataFrame:
    """`FEATURE_COMPONENTS` of one fold's scored objects on each normalisation (columns named
    with its suffix), fitted per kind on the train split's other known classes and calibrated on
    the val split's, as `validate` fits the shipped ones."""
    raw = np.stack(objects["raw"].to_numpy())
    target, split = objects["target"].to_numpy(), objects["split"].to_numpy()
    fit = np.flatnonzero((split == "train") & (target != held_out))
    val = np.flatnonzero((split == "val") & (target != held_out))
    scored = np.flatnonzero((split == "val") | (target == held_out))
    out = pd.DataFrame({"fold": held_out, "object_id": objects["object_id"].to_numpy()[scored]})
    fusion = (f"{FEATURE_COMPONENTS[0]}:1",)
    config = dataclasses.replace(config, components=FEATURE_COMPONENTS, fusion=fusion)
    n = len(raw)
    for suffix, normalise in normalisations.items():
        evidence = Evidence(
            latent=np.zeros((n, 1), np.float32),
            probabilities=np.zeros((n, 0), np.float32),
            chi2=np.zeros(n),
            features=normalise(raw, fit),
            raw_features=raw.astype(np.float32),
            galactic=raw[:, FEATURE_NAMES.index("is_galactic")] > 0.5,
            depth=raw[:, FEATURE_NAMES.index(DEPTH_FEATURE)],
        )
        detector = Detector.fit(
            evidence.take(fit), target[fit], evidence.take(val), target[val], config
        )
        part = evidence.take(scored)
        tails = detector.calibrated(
            detector.raw_scores(part), route(detector.components, part.galactic)
        )
        out = out.assign(**{f"{c}{suffix}": tails[c] for c in FEATURE_COMPONENTS})
    return out


def feature_component_probe(
    doc: str,
    out: str,
    normalisations: dict[str, Normalisation] | Callable[[pd.DataFrame], dict[str, Normalisation]],
    label: str,
) -> None:
    """The command of a probe of the feature components on other normalisations: `_again` (the
    shipped one, checked against the stored columns) and one candidate (the other suffix),
    reported against the shipped fusion with the shipped weights and with the best fusion found
    over the shipped fusion's components and the candidates (weights 0-3). `normalisations` may
    be made from the known objects (`load_known`), for one that reads their classes."""
    args = probe_arguments(doc, out)
    start = time.perf_counter()
    config, scores, objects = read_validation(args.run, args.workdir)
    if callable(normalisations):
        normalisations = normalisations(objects)
    (suffix,) = [s for s in normalisations if s != "_again"]
    fold_ids = [int(f) for f in scores["fold"].unique()]
    new = pd.concat(
        [feature_component_columns(objects, f, config.eval, normalisations) for f in fold_ids],
        ignore_index=True,
    )
    table = scores.merge(new, on=["fold", "object_id"], how="left", validate="one_to_one")
    assert not table[new.columns].isna().any().any(), "a scored object without new scores"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"components: {time.perf_counter() - start:.0f} s")
    for c in FEATURE_COMPONENTS:  # the recomputation reproduces the stored columns
        print(f"{c}: max |recomputed - stored| {np.abs(table[c] - table[c + '_again']).max():.2e}")

    folds = Folds(table)
    shipped = parse_fusion(VALIDATED_FUSION[config.data.protocol])
    candidates = [f"{c}{suffix}" for c in FEATURE_COMPONENTS]
    swapped = {(f"{c}{suffix}" if c in FEATURE_COMPONENTS else c): w for c, w in shipped.items()}
    rows = {"shipped fusion": folds.fused(shipped)}
    rows |= {c: table[c].to_numpy() for c in [*FEATURE_COMPONENTS, *candidates]}
    rows[f"shipped weights, {label}"] = folds.fused(swapped)
    # Every weight of the seven: `search` keeps the six best singles and everything in `also`.
    searched = [*shipped, *candidates]
    best = folds.search(searched, searched)[0]["weights"]
    rows[f"best found: {fusion_spec(best)}"] = folds.fused(best)
    table_rows(folds, rows)
    for name in list(rows)[-2:]:
        print(f"{name}: {paired(folds, rows[name], rows['shipped fusion'])}")
    print(f"total: {time.perf_counter() - start:.0f} s")
