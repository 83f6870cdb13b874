"""`plasticc-jax replay --groups K --jobs J`: the wall time of a replay in groups replayed J at
once, against the same groups one after the other and against every object at once, side by
side in one run.

What is timed: a whole `plasticc-jax replay` process (start, reading the input, the groups'
partition, the nights, the merge) over one synthetic light-curve file, stopped after its first
400 nights (about a third of the survey, light curves growing all along). The three commands
run in turn, twice, the second round in the opposite order; each figure is the faster of its
two. J is the cores this process may use.

    python benchmarks/bench_replay_jobs.py            # 40,000 objects
    python benchmarks/bench_replay_jobs.py --quick    # 5,000 objects (prints only)
    python benchmarks/bench_replay_jobs.py --objects N --nights M   # (prints only)
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
from plasticc_jax.threads import cores

GROUPS = 4
NIGHTS = 400  # nights replayed from the input's first


def _replay(run: Path, folder: Path, output: Path, options: list[str], last_night: int) -> float:
    """Wall seconds of one `plasticc-jax replay` process."""
    argv = [
        "replay", str(folder / "plasticc_train_lightcurves.csv.gz"), "--run", str(run),
        "--metadata", str(folder / "plasticc_train_metadata.csv.gz"), "--output", str(output),
        "--last-night", str(last_night), *options,
    ]  # fmt: skip
    code = f"from plasticc_jax import cli\nif cli.main({argv!r}):\n    raise SystemExit(1)\n"
    wall, _, _ = common.python_measured(code)
    return wall


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default-rare"))
    parser.add_argument("--quick", action="store_true", help="5,000 objects (prints only)")
    parser.add_argument("--objects", type=int, help="this many objects (prints only)")
    parser.add_argument("--nights", type=int, default=NIGHTS, help=f"default {NIGHTS}")
    args = parser.parse_args(argv)
    if not (args.run / "models").is_dir():
        print(
            f"bench_replay_jobs: no evaluated run at {args.run}: run `make prepare train evaluate`"
        )
        return []
    n_objects, jobs = args.objects or (5_000 if args.quick else 40_000), cores()
    commands = {
        "all at once": [],
        f"--groups {GROUPS}": ["--groups", str(GROUPS)],
        f"--groups {GROUPS} --jobs {jobs}": ["--groups", str(GROUPS), "--jobs", str(jobs)],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "input"
        _, lcs = synthetic.write_synthetic(folder, n_objects, seed=1)
        mjd = pd.read_csv(lcs, usecols=["mjd"])["mjd"]
        n_rows, last_night = len(mjd), int(night_of(mjd.min())) + args.nights
        for round_, order in enumerate((list(commands), list(commands)[::-1])):
            for name in order:
                output = Path(tmp) / f"out-{round_}-{len(walls[name])}-{name.replace(' ', '_')}"
                walls[name].append(_replay(args.run, folder, output, commands[name], last_night))
    best = {name: min(w) for name, w in walls.items()}
    for name, wall in best.items():
        print(f"{n_objects:,} objects, {n_rows:,} rows, {args.nights} nights, {name}: {wall:.1f} s")
    whole, grouped, parallel = best.values()
    print(
        f"--jobs {jobs}: {grouped / parallel:.2f}x faster than the groups one after the other, "
        f"{whole / parallel:.2f}x the speed of every object at once"
    )
    rows = [
        {
            "stage": "replay",
            "workload": f"{n_objects:,} synthetic objects, {n_rows:,} rows, {args.nights} nights, "
            f"run {args.run.name}, whole process, --groups {GROUPS} --jobs {jobs} vs {alternative}",
            "this_project": round(parallel, 1),
            "alternative": round(other, 1),
            "ratio": round(other / parallel, 2),
            "unit": "s wall (ratio: speed-up)",
        }
        for alternative, other in ((f"--groups {GROUPS}", grouped), ("all at once", whole))
    ]
    if not (args.quick or args.objects or args.nights != NIGHTS):  # a smoke run: not recorded
        common.write_rows("replay_jobs", rows)
    return rows


if __name__ == "__main__":
    main()
