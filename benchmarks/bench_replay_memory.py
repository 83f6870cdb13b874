"""Peak memory of `plasticc-jax replay` with and without `--groups`, side by side in one run.

A replay of every object at once holds all the input's rows; `--groups K` holds one group's at a
time (`plasticc_jax.replay_groups`). What is measured: the peak resident memory (VmHWM) of a whole
`plasticc-jax replay` process over one synthetic light-curve file, stopped after a few nights
(`--last-night`: reading, splitting and sorting the rows, the part that grows with the input, is
done in full; the nights replayed are few), with 1, 4 and 16 groups, and over a file of 200
objects (the process's size without rows: the run, JAX, the libraries). The rows' share is the
peak above that baseline, per row of the file.

    python benchmarks/bench_replay_memory.py           # 50,000 objects (about 7 million rows)
    python benchmarks/bench_replay_memory.py --quick   # 10,000 objects (prints only)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from plasticc_jax import synthetic
from plasticc_jax.replay_input import night_of

GROUPS = (1, 4, 16)
NIGHTS = 5  # nights replayed after the first


def _replay(
    run: Path, folder: Path, output: Path, groups: int, last_night: int
) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `plasticc-jax replay` process."""
    argv = [
        "replay", str(folder / "plasticc_train_lightcurves.csv.gz"), "--run", str(run),
        "--metadata", str(folder / "plasticc_train_metadata.csv.gz"), "--output", str(output),
        "--last-night", str(last_night), "--groups", str(groups),
    ]  # fmt: skip
    code = f"from plasticc_jax import cli\nif cli.main({argv!r}):\n    raise SystemExit(1)\n"
    wall, rss, _ = common.python_measured(code)
    return wall, rss


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default-rare"))
    parser.add_argument("--quick", action="store_true", help="10,000 objects (prints only)")
    parser.add_argument("--objects", type=int, help="this many objects (prints only)")
    args = parser.parse_args(argv)
    if not (args.run / "models").is_dir():
        print(
            f"bench_replay_memory: no evaluated run at {args.run}: run `make prepare train "
            "evaluate`"
        )
        return []
    n_objects = args.objects or (10_000 if args.quick else 50_000)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        _, lcs = synthetic.write_synthetic(big, n_objects, seed=1)
        synthetic.write_synthetic(small, 200, seed=1)
        mjd = pd.read_csv(lcs, usecols=["mjd"])["mjd"]
        n_rows, last_night = len(mjd), int(night_of(mjd.min())) + NIGHTS
        _, baseline = _replay(args.run, small, Path(tmp) / "out-small", 1, last_night)
        print(f"baseline (200 objects): peak {baseline:,.0f} MiB")
        peaks = {}
        for groups in GROUPS:
            wall, peak = _replay(args.run, big, Path(tmp) / f"out-{groups}", groups, last_night)
            peaks[groups] = peak
            per_row = (peak - baseline) * 2**20 / n_rows
            print(
                f"{n_objects:,} objects, {n_rows:,} rows, --groups {groups}: peak {peak:,.0f} "
                f"MiB ({per_row:.0f} bytes a row above the baseline), {wall:.1f} s"
            )
        for groups in GROUPS[1:]:
            ratio = (peaks[1] - baseline) / max(peaks[groups] - baseline, 1e-9)
            print(f"--groups {groups}: the rows' memory {ratio:.1f}x smaller than with all at once")
            rows.append(
                {
                    "stage": "replay",
                    "workload": f"peak memory above the process's own ({baseline:,.0f} MiB), "
                    f"{n_rows:,} rows, --groups {groups} vs all at once",
                    "this_project": round(peaks[groups] - baseline),
                    "alternative": round(peaks[1] - baseline),
                    "ratio": round(ratio, 2),
                    "unit": "MiB peak RSS above the baseline (alternative: --groups 1)",
                }
            )
    if not (args.quick or args.objects):  # a smoke run leaves the recorded results alone
        common.write_rows("replay_memory", rows)
    return rows


if __name__ == "__main__":
    main()
