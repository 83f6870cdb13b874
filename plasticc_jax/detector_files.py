"""A fitted detector on disk, in a run's `models/`: `detector.json` (settings, calibration,
threshold), `detector.npz` (fitted arrays: reference points, class centres) and
`detector-<component>.skops` (each component's scikit-learn estimators, loaded with a fixed list of
trusted types; one file a component, so that scoring reads only the components it uses).

`write` and `read` exchange the detector's fields (`detector.Detector`) as a dict.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from plasticc_jax import config_io
from plasticc_jax.calibration import FlagThreshold, Reference
from plasticc_jax.components import COMPONENTS, Component, nearest_class_source
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path, atomic_write_text

# Format 4: the flag threshold per depth bin (`calibration.FlagThreshold`); 2 and 3 (one
# threshold, a number) are still read.
FORMAT_VERSION = 4
PARAMS_FILE, ARRAYS_FILE = "detector.json", "detector.npz"
# Format 2 (runs evaluated before per-component files): every estimator in one file; still read.
FORMAT_2_ESTIMATORS = "detector.skops"
# The types a detector's skops file may hold besides scikit-learn's defaults; any other type is
# refused on load (skops never unpickles arbitrary objects).
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


def estimators_file(component: str) -> str:
    """The file of a component's scikit-learn estimators in a run's `models/`."""
    return f"detector-{component}.skops"


def write(models_dir: Path, parts: dict[str, Any]) -> None:
    """Write `detector.json`, `detector.npz` and each component's estimators of a detector's
    fields `parts` (atomically; an earlier detector's estimator files are removed)."""
    import skops.io as sio  # imported when needed: it imports every scikit-learn estimator

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    estimators: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Component]] = parts["components"]
    for group, fitted in components.items():
        for name, component in fitted.items():
            for key, value in component.state().items():
                arrays[f"{group}/{name}/{key}"] = value
            for key, value in component.estimators().items():
                estimators.setdefault(name, {})[f"{group}/{name}/{key}"] = value
    with atomic_path(models_dir / ARRAYS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    for name, of_component in estimators.items():
        with atomic_path(models_dir / estimators_file(name)) as tmp:
            sio.dump(of_component, tmp)
    for stale in set(models_dir.glob("detector*.skops")) - {
        models_dir / estimators_file(name) for name in estimators
    }:
        stale.unlink()
    params = {
        "format_version": FORMAT_VERSION,
        "components": [n for n in COMPONENTS if n in next(iter(components.values()))],
        "estimators": sorted(estimators),
        "groups": sorted(components),
        "weights": parts["weights"],
        "threshold": parts["threshold"].to_json(),
        "target_fpr": parts["target_fpr"],
        "head_classes": list(parts["head_classes"]),
        "config": dataclasses.asdict(parts["config"]),
        "references": {
            g: {n: r.to_json() for n, r in refs.items()} for g, refs in parts["references"].items()
        },
        "info": parts["info"],
    }
    atomic_write_text(models_dir / PARAMS_FILE, json.dumps(params, indent=1) + "\n")


def read(models_dir: Path, scoring_only: bool = False) -> dict[str, Any]:
    """The fields of a detector written by `write` (in a run's `models/`); refuses estimator
    files that need unexpected types. With `scoring_only`, only the components `score(...,
    fused_only=True)` uses: the fusion's and the nearest class's classifier; the default
    run's forests, 90% of the bytes and of the load time, are not read."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    models_dir = Path(models_dir)
    paths = [models_dir / name for name in (PARAMS_FILE, ARRAYS_FILE)]
    if not all(path.is_file() for path in paths):
        raise UserError(
            f"no anomaly detector in {models_dir} (need {', '.join(p.name for p in paths)}): "
            "run `plasticc-jax evaluate` for this run first"
        )
    params = json.loads(paths[0].read_text())
    version = params.get("format_version")
    if version not in (2, 3, FORMAT_VERSION):
        raise UserError(f"{paths[0]}: a detector of another version: re-run evaluate")
    names = params["components"]
    if scoring_only:
        # The components the nearest class is named from: a classifier, else the VAE head's
        # classes of each group (`Detector._nearest`).
        nearest = nearest_class_source(names, params["weights"]) or "head_maxprob"
        names = [n for n in names if n in params["weights"] or n == nearest]
    files = (
        [FORMAT_2_ESTIMATORS]
        if version == 2
        else [estimators_file(n) for n in params["estimators"] if n in names]
    )
    estimators: dict[str, Any] = {}
    for path in (models_dir / name for name in files):
        if not path.is_file():
            raise UserError(f"{path} is missing: run `plasticc-jax evaluate` again")
        # One pass: skops audits the file's types against these before it builds anything.
        try:
            estimators.update(sio.load(path, trusted=list(TRUSTED_TYPES)))
        except UntrustedTypesFoundException as error:
            raise UserError(f"{path}: refused: {error}") from None
    try:
        config = config_io.from_dict({"eval": params["config"]}).eval
    except UserError as error:  # a hand-edited value of the wrong type
        raise UserError(f"{paths[0]}: {error}: run `plasticc-jax evaluate` again") from None
    with np.load(paths[1], allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    components: dict[str, dict[str, Component]] = {}
    for group in params["groups"]:
        components[group] = {}
        for name in names:
            component = COMPONENTS[name](config)
            prefix = f"{group}/{name}/"
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if own:
                component.load_state(own)
            component.load_estimators(
                {k[len(prefix) :]: v for k, v in estimators.items() if k.startswith(prefix)}
            )
            components[group][name] = component
    return dict(
        components=components,
        references={
            g: {n: Reference.from_json(r) for n, r in refs.items()}
            for g, refs in params["references"].items()
        },
        weights={k: float(v) for k, v in params["weights"].items()},
        threshold=FlagThreshold.from_json(params["threshold"]),
        target_fpr=float(params["target_fpr"]),
        head_classes=tuple(params["head_classes"]),
        config=config,
        info=params.get("info", {}),
    )
