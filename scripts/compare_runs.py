"""Compare the outputs of two evaluated runs (e.g. before and after a refactoring).

    python scripts/compare_runs.py RUN_A RUN_B [--rtol 1e-6] [--dataset DATA_A DATA_B]

Compares `metrics.json` (every number except the timings) and `scores.parquet` (columns, dtypes,
values), and with `--dataset` two prepared datasets file by file. Prints what differs; exit
status 1 if anything does beyond the tolerance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_leaves(item, f"{prefix}{index}."))
        return out
    return {prefix.rstrip("."): value}


def compare_metrics(a: Path, b: Path, rtol: float) -> list[str]:
    left = _leaves(json.loads((a / "metrics.json").read_text()))
    right = _leaves(json.loads((b / "metrics.json").read_text()))
    problems = []
    for key in sorted(set(left) | set(right)):
        if key.startswith("timing_s."):
            continue
        x, y = left.get(key, "<missing>"), right.get(key, "<missing>")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y))
        if numbers and math.isclose(x, y, rel_tol=rtol, abs_tol=rtol):
            continue
        if x != y:
            problems.append(f"metrics.json {key}: {x!r} != {y!r}")
    return problems


def compare_scores(a: Path, b: Path, rtol: float) -> list[str]:
    left = pd.read_parquet(a / "scores.parquet")
    right = pd.read_parquet(b / "scores.parquet")
    if list(left.columns) != list(right.columns):
        return [f"scores.parquet columns differ: {list(left.columns)} != {list(right.columns)}"]
    problems = []
    for column in left.columns:
        x, y = left[column], right[column]
        if x.dtype != y.dtype:
            problems.append(f"scores.parquet {column}: dtype {x.dtype} != {y.dtype}")
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            if not np.allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True):
                worst = float(np.nanmax(np.abs(x.to_numpy() - y.to_numpy())))
                problems.append(f"scores.parquet {column}: values differ (max |diff| {worst:.3g})")
        elif not x.astype(str).equals(y.astype(str)):
            problems.append(f"scores.parquet {column}: values differ")
    return problems


def compare_datasets(a: Path, b: Path) -> list[str]:
    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    left, right = digests(a), digests(b)
    return [
        f"dataset file {name}: differs or is missing"
        for name in sorted(set(left) | set(right))
        if left.get(name) != right.get(name)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance")
    parser.add_argument("--dataset", type=Path, nargs=2, metavar=("DATA_A", "DATA_B"))
    args = parser.parse_args(argv)
    problems = compare_metrics(args.run_a, args.run_b, args.rtol)
    problems += compare_scores(args.run_a, args.run_b, args.rtol)
    if args.dataset:
        problems += compare_datasets(*args.dataset)
    for line in problems:
        print(line)
    print("same" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
