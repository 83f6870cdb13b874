"""Should galactic and extragalactic objects each have a VAE of their own? (issue #10)

    # a prepared default dataset in WORKDIR (`plasticc-jax prepare`), then per training seed:
    python scripts/per_kind_vae_probe.py score --workdir WORKDIR --seed 0
    # compare with `plasticc-jax validate --set train.seed=S --run-dir runs/default-rare-sS`:
    python scripts/per_kind_vae_probe.py compare --baseline RUN RUN --candidate DIR DIR

The question (the lead the previous stop's note named): the detector is already fitted per kind
(`hostgal_photoz == 0` marks galactic), but one VAE, with one classification head over all the
known classes, learns both kinds' light curves. A galactic probe's extra rows moved the
extragalactic folds' scores through it (docs/early.md). The candidate trains, in every
leave-one-known-class-out fold, two networks of the default preset: one on the fold's galactic
known classes, one on its extragalactic ones (each with its own head and feature statistics), and
scores each object with its own kind's network; the fold's detector is then fitted, calibrated
and scored exactly as `validate` does it (`validate._fold_scores`, whose code this follows). The
components that do not read the VAE (`classifier`, the feature components) are unchanged up to
the feature statistics. Baseline: `plasticc-jax validate` of the default preset, the same seeds.
No test data is read.

What `compare` prints: the mean over the ten folds of the held-out class's fold AUROC with the
`rare` protocol's shipped fusion (`config.VALIDATED_FUSION`), recomputed from each side's stored
component scores as `validate` does (`fusion_search.Folds`), each fold averaged over the seeds
first; the paired per-fold differences candidate - baseline, mean ± standard error (ddof=1) and
folds better; the same for each fused VAE component; and each side's best fusion found.

THE RULE, written before any run (2026-12-02): adopt one VAE a kind only if the mean of the ten
paired per-fold differences of the shipped fusion (seed-averaged) exceeds twice its standard
error. Otherwise the package keeps one VAE. (Written in this file before the first run, at
09:30; committed at 09:32, before any fold's result was read.)

Result (2026-12-02, 29 min for the four runs on 2 cores; docs/evaluation.md): 0.8011 against
0.8136, -0.0125 ± 0.0103 (4/10 folds better; M-dwarf 0.991 -> 0.900, the seven extragalactic
folds -0.004 on average; latent Mahalanobis -0.059, latent kNN -0.046). Not adopted.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import config_io, plasticc, scoring
from plasticc_jax.components import COMPONENTS
from plasticc_jax.config import VALIDATED_FUSION, Config, resolve
from plasticc_jax.dataset import iter_split
from plasticc_jax.detector import parse_fusion
from plasticc_jax.encoder import load_vae
from plasticc_jax.fusion_search import Folds
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.validate import fold_config, fold_detector_scores

KINDS = {"galactic": True, "extragalactic": False}
VAE_COMPONENTS = ("latent_mahalanobis", "latent_knn", "recon_chi2", "head_maxprob")


def kind_config(fold: Config, galactic: bool, run_dir: Path) -> Config:
    """The fold's config for one kind's network: the other kind's known classes left out too."""
    data = fold.data
    own = set(plasticc.GALACTIC_CLASSES) if galactic else set(plasticc.EXTRAGALACTIC_CLASSES)
    known = tuple(c for c in data.known_classes if c in own)
    left_out = tuple(c for c in data.known_classes if c not in own)
    return dataclasses.replace(
        fold,
        run_dir=str(run_dir),
        data=dataclasses.replace(
            data, known_classes=known, anomaly_classes=(*data.anomaly_classes, *left_out)
        ),
    )


def fold_scores(config: Config, workdir: Path, held_out: int, out: Path) -> pd.DataFrame:
    """One fold of the candidate: two networks, then the detector as `validate` fits it."""
    from plasticc_jax.train import train

    fold = fold_config(config, held_out, out)
    known = fold.data.known_classes
    head_classes = tuple(known)  # the zero-filled probabilities' columns: every known class
    parts = []
    for kind, galactic in KINDS.items():
        kind_fold = kind_config(fold, galactic, out / kind)
        train(kind_fold, workdir, dataset_dir=Path(config.data.dataset_dir))
        vae = load_vae(workdir / out / kind, max_batch=config.eval.batch_size)
        columns = [head_classes.index(c) for c in vae.encoder.classes]
        for split in ("train", "val"):
            for shard in iter_split(workdir / config.data.dataset_dir, split):
                features = shard.features[:, FEATURE_NAMES.index("is_galactic")]
                own_kind = (features > 0.5) == galactic
                keep = np.isin(shard.target, config.data.known_classes) & own_kind
                shard = shard.take(np.flatnonzero(keep))
                outputs = scoring.model_outputs(vae, shard)
                probabilities = np.zeros((len(shard), len(head_classes)), np.float32)
                probabilities[:, columns] = outputs["probabilities"]
                outputs["probabilities"] = probabilities
                labels = scoring.object_labels(shard, split)
                parts.append({**labels, "stage": shard.stage, **outputs})
    objects = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # Normalised per kind already (each network's statistics): `evidence` keeps them.
    evidence = scoring.evidence(objects, vae.stats, head_classes)
    frame, _ = fold_detector_scores(config, held_out, objects, evidence)
    return frame


def score(workdir: Path, seed: int) -> None:
    """Every fold of the candidate for one training seed: `<workdir>/per-kind-s<seed>/`."""
    config = config_io.load_preset("default")
    config = resolve(
        dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    )
    out = Path(f"per-kind-s{seed}")
    for held_out in config.data.known_classes:
        cache = workdir / out / f"fold-{held_out}" / "scores.parquet"
        if cache.is_file():
            continue
        logging.info("per-kind fold: %s (%d) held out", plasticc.class_name(held_out), held_out)
        frame = fold_scores(config, workdir, held_out, out / f"fold-{held_out}")
        frame.to_parquet(cache, index=False)


def fold_aurocs(scores: pd.DataFrame, names: list[str]) -> dict[str, dict[int, float]]:
    """{score: {fold: AUROC}} of the shipped fusion and of single components."""
    folds = Folds(scores)
    fusion = parse_fusion(VALIDATED_FUSION["rare"])
    result = {"shipped fusion": folds.aurocs(folds.fused(fusion))}
    for name in names:
        result[name] = folds.aurocs(scores[name].to_numpy())
    best = folds.search([c for c in COMPONENTS if c in scores], also=fusion)  # as `validate`
    print(f"  best fusion found: {best[0]['weights']} {best[0]['mean_auroc']:.4f}")
    return result


def read_side(folders: list[Path], baseline: bool) -> list[pd.DataFrame]:
    if baseline:
        return [pd.read_parquet(f / "validation" / "scores.parquet") for f in folders]
    return [
        pd.concat([pd.read_parquet(p) for p in sorted(f.glob("fold-*/scores.parquet"))])
        for f in folders
    ]


def compare(baseline: list[Path], candidate: list[Path]) -> None:
    names = list(VAE_COMPONENTS)
    sides = {}
    for label, folders, is_base in (("baseline", baseline, True), ("candidate", candidate, False)):
        runs = []
        for frame, folder in zip(read_side(folders, is_base), folders, strict=True):
            print(f"{label} {folder}:")
            runs.append(fold_aurocs(frame.reset_index(drop=True), names))
        sides[label] = {
            name: {f: float(np.mean([r[name][f] for r in runs])) for f in runs[0][name]}
            for name in runs[0]
        }
    print("\n| score | baseline | candidate | difference, mean ± s.e. (folds better) |")
    print("|---|---|---|---|")
    verdict = None
    for name in sides["baseline"]:
        base, cand = sides["baseline"][name], sides["candidate"][name]
        ids = sorted(base)
        b = np.array([base[f] for f in ids])
        c = np.array([cand[f] for f in ids])
        d = c - b
        se = float(d.std(ddof=1) / np.sqrt(d.size))
        print(
            f"| {name} | {b.mean():.4f} | {c.mean():.4f} | {d.mean():+.4f} ± {se:.4f} "
            f"({int((d > 0).sum())}/{d.size}) |"
        )
        if name == "shipped fusion":
            verdict = d.mean() > 2 * se
            per_fold = [(f, base[f], cand[f]) for f in ids]
    print("\nper fold, shipped fusion (baseline, candidate):")
    for f, b_, c_ in per_fold:
        print(f"  {plasticc.class_name(f)} ({f}): {b_:.4f} {c_:.4f} {c_ - b_:+.4f}")
    print(f"\n-> {'ADOPT' if verdict else 'do not adopt'} (rule: mean difference > 2 s.e.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("score")
    run.add_argument("--workdir", type=Path, required=True)
    run.add_argument("--seed", type=int, required=True)
    cmp = commands.add_parser("compare")
    cmp.add_argument("--baseline", type=Path, nargs="+", required=True)
    cmp.add_argument("--candidate", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "score":
        score(args.workdir, args.seed)
    else:
        compare(args.baseline, args.candidate)


if __name__ == "__main__":
    main()
