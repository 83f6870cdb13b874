"""Incremental scoring during `replay`: objects re-scored per second, and a night's cost as the
number of open objects grows.

What is timed: `replay_nights.NightScorer.night` for one night (everything a night does but
writing its files: select the objects with new rows, gather all their rows so far, grid them,
the VAE pass, the detector's fused components, rank), on synthetic light curves
(`plasticc_jax.synthetic`: observations spread uniformly over the three survey years, 50-350 per
object), so a night re-scores about 1/14 of the objects, each with its history so far. For
each input size the median of a few nights in the middle of the survey (half of each light curve
known). Objects/s is re-scored objects over the night's wall time. Target: 20,000 objects/s on
2 CPU cores.

Each night's batch sizes differ, and the VAE's program is compiled once per batch shape (at most
a few dozen: `batches.batch_sizes`), so over a survey's replay compiling is a one-off cost. The
nights are therefore timed twice: as first met (the shapes new that night compiled then) and
again, every shape compiled (the steady state of a long replay: the figure reported as the rate).

The run is an evaluated run with the default grid (default: `runs/default-rare`, from `make
prepare train evaluate`); the scoring cost does not depend on how well it was trained. The same
nights are also timed with the Gaussian-process features left out of the gridding (as a run
trained with `data.gp_features=false` grids), alternating night by night with the default in one
process, so that their ratio is measured side by side.

Last, `RUN_NIGHTS` consecutive nights are timed as `replay` runs them, the next night with data
gridded in a thread while one is scored (`NightScorer` as a context manager), against the same
nights one at a time, alternating, each run from the features a replay has kept before its first
night (the better of two runs each: the first may compile new batch shapes).

    python benchmarks/bench_replay.py                 # 5,000, 20,000 and 60,000 objects
    python benchmarks/bench_replay.py --quick         # 2,000 and 8,000 objects (prints only)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import numpy as np

from plasticc_jax import gp_features, gridding, readers, synthetic
from plasticc_jax.lightcurve_rows import read_files
from plasticc_jax.replay_input import ReplayInput
from plasticc_jax.replay_nights import NightScorer
from plasticc_jax.scoring import Scorer

TARGET = 20_000.0  # objects/s on 2 CPU cores
RUN_NIGHTS = 6  # consecutive nights timed as a replay runs them


def as_replayed_until(scorer: NightScorer, night: int, through: int | None = None) -> None:
    """Give `scorer` the Gaussian-process features a replay has kept (`gp_features.FitCache`)
    when it reaches `night`: those of the objects with data that night (or from it `through`
    a later one) fitted on their points before it (an object's previous night with data is its
    last fit; objects not scorable then count as fitted, a little in the cache's favour)."""
    d = scorer.data
    lo, hi = np.searchsorted(scorer.sorted_nights, [night, (through or night) + 1])
    touched = np.unique(d.obj[scorer.by_night[lo:hi]])
    before = touched[d.first_night[touched] < night]
    scorer.gp_cache = gp_features.FitCache.for_objects(d.ids)
    pos, found = d.metadata.lookup(d.ids[before])
    so_far, _ = d.rows_so_far(before[found], night - 1)
    chunk = gridding.Chunk(
        so_far.rows, so_far.starts, d.metadata.values[pos[found]], d.metadata.target[pos[found]]
    )
    gridding.grid_chunk(chunk, scorer.spec, scorer.gp_cache)


def measure(run_dir: Path, n_objects: int, nights: int = 3) -> dict[str, Any]:
    """Median cost of `nights` consecutive mid-survey nights over `n_objects` objects: with the
    Gaussian-process features kept from earlier nights as a replay keeps them, with every
    object's fitted again, and without them."""
    with tempfile.TemporaryDirectory() as tmp:
        meta_path, lc_path = synthetic.write_synthetic(Path(tmp), n_objects, seed=1)
        data = ReplayInput(read_files([lc_path]), readers.read_metadata(meta_path), None)
    scorer = NightScorer(data, Scorer.load(run_dir))
    without_gp = NightScorer(data, scorer.scorer)
    without_gp.spec = dataclasses.replace(scorer.spec, gp_features=False)
    first, last = data.nights
    middle = (first + last) // 2
    scorer.night(middle - 1)  # compile what any night needs
    first_met, compiled, refitted, compiled_without_gp, rescored, open_objects = (
        [] for _ in range(6)
    )
    for times in (first_met, compiled):  # as first met, then every batch shape compiled
        for night in range(middle, middle + nights):
            as_replayed_until(scorer, night)
            start = time.perf_counter()
            _, _, counts = scorer.night(night)
            times.append(time.perf_counter() - start)
            if times is first_met:
                rescored.append(counts["rescored"])
                open_objects.append(counts["open"])
                without_gp.night(night)  # its batch shapes compiled too
            else:
                scorer.gp_cache = gp_features.FitCache.for_objects(data.ids)  # nothing kept
                start = time.perf_counter()
                scorer.night(night)
                refitted.append(time.perf_counter() - start)
                start = time.perf_counter()
                without_gp.night(night)
                compiled_without_gp.append(time.perf_counter() - start)
    # Consecutive nights as a replay runs them: the next gridded while one is scored, against
    # one night at a time; each run from the cache a replay holds before its first night.
    run = list(range(middle + nights, middle + nights + RUN_NIGHTS))
    ahead_s, plain_s = [], []
    for _ in range(2):
        for times in (ahead_s, plain_s):
            night_scorer = NightScorer(data, scorer.scorer, last_night=run[-1])
            as_replayed_until(night_scorer, run[0], run[-1])
            start = time.perf_counter()
            with night_scorer if times is ahead_s else contextlib.nullcontext():
                run_rescored = sum(night_scorer.night(n)[2]["rescored"] for n in run)
            times.append(time.perf_counter() - start)
    per_night = statistics.median(rescored)
    seconds = statistics.median(compiled)
    seconds_without_gp = statistics.median(compiled_without_gp)
    return {
        "objects": n_objects,
        "open": statistics.median(open_objects),
        "rescored_per_night": per_night,
        "night_s": seconds,
        "rate": per_night / seconds,
        "first_night_s": statistics.median(first_met),
        "first_rate": per_night / statistics.median(first_met),
        "rate_without_gp": per_night / seconds_without_gp,
        "rate_refitted": per_night / statistics.median(refitted),
        "rows": len(data.rows),
        "run_rescored": run_rescored,
        "run_rate_ahead": run_rescored / min(ahead_s),
        "run_rate_plain": run_rescored / min(plain_s),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default-rare"))
    parser.add_argument("--quick", action="store_true", help="2,000 and 8,000 objects")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not (args.run / "models").is_dir():
        print(f"bench_replay: no evaluated run at {args.run}: run `make prepare train evaluate`")
        return []
    sizes = (2_000, 8_000) if args.quick else (5_000, 20_000, 60_000)
    results = [measure(args.run, n) for n in sizes]
    rows = []
    for r in results:
        print(
            f"{r['objects']:>7,} objects ({r['open']:,.0f} open): {r['rescored_per_night']:,.0f} "
            f"re-scored per night in {r['night_s']:.2f} s = {r['rate']:,.0f} objects/s "
            f"({r['rate'] / TARGET:.2f} x the 20,000/s target); as first met, with that night's "
            f"new batch shapes compiled: {r['first_night_s']:.2f} s = {r['first_rate']:,.0f}/s; "
            f"every object's GP features fitted again (none kept from earlier nights) "
            f"{r['rate_refitted']:,.0f}/s ({r['rate'] / r['rate_refitted']:.2f}x slower than "
            f"keeping them); without the GP features {r['rate_without_gp']:,.0f}/s "
            f"({r['rate_without_gp'] / r['rate']:.2f}x); {RUN_NIGHTS} consecutive nights as a "
            f"replay runs them, the next gridded ahead: {r['run_rate_ahead']:,.0f}/s against "
            f"{r['run_rate_plain']:,.0f}/s one at a time "
            f"({r['run_rate_ahead'] / r['run_rate_plain']:.2f}x)"
        )
        rows.append(
            {
                "stage": "replay",
                "workload": f"one mid-survey night, {r['objects']:,} synthetic objects open, "
                f"{r['rescored_per_night']:,.0f} re-scored with their history",
                "this_project": round(r["rate"]),
                "alternative": TARGET,
                "ratio": round(r["rate"] / TARGET, 2),
                "unit": "objects/s (alternative: the 20,000/s target)",
                "night_s": round(r["night_s"], 3),
                "first_met_rate": round(r["first_rate"]),
                "first_met_night_s": round(r["first_night_s"], 3),
                "rate_without_gp_features": round(r["rate_without_gp"]),
                "rate_gp_features_refitted": round(r["rate_refitted"]),
            }
        )
        rows.append(
            {
                "stage": "replay",
                "workload": f"{RUN_NIGHTS} consecutive mid-survey nights, {r['objects']:,} "
                f"synthetic objects open, {r['run_rescored']:,} re-scorings: the next night "
                "gridded while one is scored (as replay runs them) vs one night at a time",
                "this_project": round(r["run_rate_ahead"]),
                "alternative": round(r["run_rate_plain"]),
                "ratio": round(r["run_rate_ahead"] / r["run_rate_plain"], 2),
                "unit": "objects/s (ratio: speed-up)",
            }
        )
    base = results[0]
    for r in results[1:]:
        growth = r["open"] / base["open"]
        cost = r["night_s"] / base["night_s"]
        print(
            f"open objects x{growth:.1f} -> night cost x{cost:.2f} "
            f"({cost / growth:.2f} of proportional)"
        )
        rows.append(
            {
                "stage": "replay",
                "workload": f"night cost, {r['open']:,.0f} vs {base['open']:,.0f} open objects "
                f"(x{growth:.1f})",
                "this_project": round(cost, 2),
                "alternative": round(growth, 2),
                "ratio": round(growth / cost, 2),
                "unit": "x night cost (alternative: proportional to the open objects)",
            }
        )
    if not args.quick:  # a smoke run leaves the recorded results alone
        common.write_rows("replay", rows)
    return rows


if __name__ == "__main__":
    main()
