"""Would a compiled tree predictor make the classifier's capacity affordable? (research, #10)

    pip install lightgbm lleaves "llvmlite<0.45"   # not dependencies of the package
    python scripts/compiled_trees_probe.py RUN [--workdir W] [--rows 16384] [--rounds 3]

The validation found the `classifier` component underfitted: LightGBM's 400 iterations beside
it pass the adoption rule (+0.0094 ± 0.0041, `lightgbm_classifier_probe.py`), but predicted by
LightGBM or scikit-learn they halve scoring speed (docs/evaluation.md). This probe measures speed
only, on the run's extragalactic classifier (its largest model: seven known classes on `rare`):
the shipped trees (scikit-learn, 50 iterations, fitted as `components.Classifier` fits them on
the train split's known objects) against LightGBM's 400 iterations on the same rows and columns,
predicted by LightGBM and by lleaves (the model compiled to machine code with LLVM), side by side
in one process on the test split's extragalactic rows repeated to `--rows`, the three
alternating `--rounds` times (each time the best of five). It prints the times, their ratios,
the compile time, and the largest difference between lleaves' and LightGBM's probabilities.
No score, no metric: the test split's rows are only timed.

Result (default-rare run's dataset, 2 quiet cores, 16,384 rows, five rounds; docs/evaluation.md):
the shipped trees 107-147 ms, LightGBM's 400 iterations 1,437-1,502 ms (9.9-13.5x), compiled by
lleaves 225-317 ms (2.0-2.7x; compiled in 105 s; probabilities equal to LightGBM's within 3e-15).
Needs llvmlite < 0.45: lleaves 1.3.0, its latest release, fails with newer llvmlite.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lleaves
import numpy as np
from lightgbm_classifier_probe import lgbm_model
from validation_probe import evidence

from plasticc_jax import config_io
from plasticc_jax.components import Classifier
from plasticc_jax.dataset import load_split
from plasticc_jax.gridding import FEATURE_NAMES
from plasticc_jax.plasticc import EXTRAGALACTIC_CLASSES


def extragalactic(dataset_dir: Path, split: str, known: list[int] | None) -> tuple:
    """(raw features, targets) of a split's extragalactic objects (of `known` classes)."""
    arrays = load_split(dataset_dir, split)
    raw = np.asarray(arrays.features, np.float64)
    keep = raw[:, FEATURE_NAMES.index("is_galactic")] < 0.5
    if known is not None:
        keep &= np.isin(arrays.target, known)
    return raw[keep], arrays.target[keep]


def best_of(predict: Callable[[], np.ndarray], repeats: int = 5) -> tuple[float, np.ndarray]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = predict()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--workdir", type=Path, default=None, help="default: RUN/../..")
    parser.add_argument("--rows", type=int, default=16_384)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    record = args.run / "config.json"
    if not record.is_file():  # a run with `make validate` only
        record = args.run / "validation" / "validation.json"
    raw = json.loads(record.read_text())
    config = config_io.from_dict(raw.get("config", raw))
    workdir = args.workdir or args.run.parent.parent
    dataset_dir = workdir / config.data.processed_dir / config.data.protocol
    known = [c for c in config.data.known_classes if c in EXTRAGALACTIC_CLASSES]
    x, y = extragalactic(dataset_dir, "train", known)
    test, _ = extragalactic(dataset_dir, "test", None)
    rows = np.resize(np.arange(len(test)), args.rows)
    batch = test[rows]
    threads = os.cpu_count() or 1
    print(f"fitting rows {len(x)} ({len(known)} classes), timed {len(batch)}, {threads} threads")

    shipped = Classifier(config.eval).fit(evidence(x), y)
    columns = shipped.columns
    start = time.perf_counter()
    lgbm = lgbm_model(x, y, columns, config, iterations=400)
    print(f"LightGBM 400 iterations fitted in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        model_file = Path(scratch) / "model.txt"
        lgbm.booster_.save_model(model_file)
        start = time.perf_counter()
        compiled = lleaves.Model(model_file=str(model_file))
        compiled.compile(cache=str(Path(scratch) / "model.o"))
        print(f"lleaves compiled it in {time.perf_counter() - start:.1f} s")

        features = batch[:, columns]
        candidates = {
            "scikit-learn 50 (shipped)": lambda: shipped.model.predict_proba(features),
            "LightGBM 400": lambda: lgbm.predict_proba(features, num_threads=threads),
            "lleaves 400": lambda: compiled.predict(features, n_jobs=threads),
        }
        times: dict[str, list[float]] = {name: [] for name in candidates}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, predict in candidates.items():
                seconds, outputs[name] = best_of(predict)
                times[name].append(seconds)
    base = np.array(times["scikit-learn 50 (shipped)"])
    for name, values in times.items():
        ms = ", ".join(f"{1e3 * t:.0f}" for t in values)
        ratios = ", ".join(f"{t / b:.2f}" for t, b in zip(values, base, strict=True))
        print(f"{name}: {ms} ms; against the shipped: {ratios}x")
    difference = np.abs(outputs["lleaves 400"] - outputs["LightGBM 400"]).max()
    print(f"lleaves against LightGBM: largest probability difference {difference:.1e}")


if __name__ == "__main__":
    main()
