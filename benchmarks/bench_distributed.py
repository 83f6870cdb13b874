"""Scoring on a Dask cluster: objects/s on 1 and 2 workers, the driver's overhead, peak memory
per worker, and the projected time for the full PLAsTiCC test set.

Measured side by side in one run, on the same generated files (two plain CSV files in the Kaggle
format, so that each is cut into byte-range parts) with a run of the default architecture
(`bench_score.build_run`):

- `plasticc-jax score` in one process (the baseline; the run's 2 gridding threads);
- `plasticc-jax score --dask` on a `LocalCluster` of 1 and of 2 worker processes, one thread each
  (`distributed.connect("local:N")`), both clusters started once and warmed by an untimed run
  (the workers' one-time start: imports, loading the run, compiling).

The three take turns in every repeat, so that load from other jobs on the machine falls on all of
them alike; figures are medians over the repeats. The driver's overhead is its own serial work
(planning the parts, checking the object ids, ranking, writing the rejections and the manifest:
`_manifest.json`'s `seconds`) and the second, light pass that writes the ranks, as shares of the
2-worker wall time. Peak RSS per worker (VmHWM, reset before the run) is taken at the full input
and at half of it (one file): memory bounded by the chunk size stays flat. The projection for the
full PLAsTiCC test set (453,653,104 rows, 3,492,890 objects) divides its rows by the 2-worker rate
in rows/s (the synthetic objects have 141 rows on average, the test set's 130).

    python benchmarks/bench_distributed.py            # 40,000 objects, 2 repeats (about 5 min)
    python benchmarks/bench_distributed.py --quick    # 4,000 objects, 1 repeat, nothing written

At 6,000 objects (the default until 2026-12-05) each run took 9 s and its fixed costs (the
workers' start, the tasks' transfers) outweighed the work: two workers measured 0.61x one
process there, and 1.20x at 40,000.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_score
import common

from plasticc_jax import distributed, score_output
from plasticc_jax.synthetic import write_synthetic

TEST_ROWS, TEST_OBJECTS = 453_653_104, 3_492_890  # the PLAsTiCC test set
PART_MB = 16.0
log = logging.getLogger("bench_distributed")


def _reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM) in MiB."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024.0


def write_inputs(folder: Path, n_objects: int) -> list[tuple[Path, Path]]:
    """Two (light curves, metadata) files of n_objects / 2 objects each (Kaggle format)."""
    files = []
    for index in range(2):
        meta, lcs = write_synthetic(
            folder / f"file{index}",
            n_objects // 2,
            fmt="kaggle",
            seed=index + 1,
            first_object_id=1_000_000 * (index + 1),
        )
        files.append((lcs, meta))
    return files


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 objects, 1 repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--objects", type=int, default=40_000, help="objects in the input")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # every worker's start and stop
    from plasticc_jax.score import score

    n_objects = 4_000 if args.quick else args.objects
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log.info("building a default-architecture run (1 epoch)")
        run_dir = bench_score.build_run(work / "project")
        log.info("writing %d objects in two plain CSV files", n_objects)
        files = write_inputs(work / "input", n_objects)
        lightcurves = [lc for lc, _ in files]
        metadata = [meta for _, meta in files]
        size_mb = sum(p.stat().st_size for p in lightcurves) / 1e6

        def one_process(output: Path) -> float:
            start = time.perf_counter()
            score(run_dir, lightcurves, metadata, output)
            return time.perf_counter() - start

        def on_cluster(address: str, output: Path, inputs: list[Path] = lightcurves) -> dict:
            start = time.perf_counter()
            used_metadata = metadata[: len(inputs)]
            score(run_dir, inputs, used_metadata, output, dask=address, part_mb=PART_MB)
            manifest = json.loads((output / score_output.MANIFEST).read_text())
            return {**manifest, "wall": time.perf_counter() - start}

        with distributed.connect("local:1") as one, distributed.connect("local:2") as two:
            log.info("warming up (one untimed run each)")
            one_process(work / "warm.parquet")
            first = {
                n: on_cluster(c.scheduler.address, work / f"warm{n}.parquet")
                for n, c in ((1, one), (2, two))
            }
            times: dict[str, list[float]] = {"one process": [], "1 worker": [], "2 workers": []}
            manifests: list[dict] = []
            for repeat in range(repeats):
                times["one process"].append(one_process(work / f"one{repeat}.parquet"))
                for n, client in ((1, one), (2, two)):
                    result = on_cluster(client.scheduler.address, work / f"d{n}-{repeat}.parquet")
                    times[f"{n} worker" + ("s" if n > 1 else "")].append(result["wall"])
                    if n == 2:
                        manifests.append(result)
                log.info("repeat %d: %s", repeat, {k: round(v[-1], 2) for k, v in times.items()})
            # Peak RSS per worker: half the input (one file), then all of it.
            peaks = {}
            for label, inputs in (("half", lightcurves[:1]), ("full", lightcurves)):
                two.run(_reset_peak)
                on_cluster(two.scheduler.address, work / f"rss-{label}.parquet", inputs)
                peaks[label] = max(two.run(_peak_mib).values())

    objects = first[2]["objects"] + first[2]["rejected"]
    rows = sum(part["rows"] for part in first[2]["parts"])
    n_parts = len(first[2]["parts"])
    median = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: objects / seconds for name, seconds in median.items()}
    rows_rate = rows / median["2 workers"]
    seconds = {
        key: statistics.median(m["seconds"][key] for m in manifests)
        for key in ("plan", "driver", "finish", "rank_parts", "total")
    }
    driver_s = seconds["plan"] + seconds["driver"] + seconds["finish"]
    wall2 = median["2 workers"]
    workload = (
        f"{objects:,} objects, {rows:,} rows ({size_mb:.0f} MB of CSV in 2 files, "
        f"{n_parts} parts of {PART_MB:g} MB), default-architecture run"
    )
    machine_note = f"{os.cpu_count()} CPU cores shared with other jobs; median of {repeats}"
    result_rows = [
        {
            "stage": "distributed",
            "workload": f"score --dask local:2 vs local:1, {workload}",
            "this_project": round(rate["2 workers"], 1),
            "alternative": round(rate["1 worker"], 1),
            "ratio": round(rate["2 workers"] / rate["1 worker"], 2),
            "unit": "objects/s (alternative: 1 worker)",
            "note": f"2 workers {median['2 workers']:.1f} s, 1 worker {median['1 worker']:.1f} s "
            f"wall ({machine_note})",
        },
        {
            "stage": "distributed",
            "workload": "score --dask local:1 vs score in one process (same input)",
            "this_project": round(rate["1 worker"], 1),
            "alternative": round(rate["one process"], 1),
            "ratio": round(rate["1 worker"] / rate["one process"], 2),
            "unit": "objects/s (alternative: one process, 2 gridding threads)",
        },
        {
            "stage": "distributed",
            "workload": "score --dask local:2 vs score in one process (same input)",
            "this_project": round(rate["2 workers"], 1),
            "alternative": round(rate["one process"], 1),
            "ratio": round(rate["2 workers"] / rate["one process"], 2),
            "unit": "objects/s (alternative: one process, 2 gridding threads)",
        },
        {
            "stage": "distributed",
            "workload": "driver overhead, 2 workers: its own serial work (plan, id check, ranks, "
            "rejections, manifest)",
            "this_project": round(driver_s, 3),
            "alternative": round(wall2, 2),
            "ratio": round(driver_s / wall2, 3),
            "unit": "s (alternative: the run's wall time; ratio: share)",
            "note": f"plan {seconds['plan']:.3f} s, ids + ranks {seconds['driver']:.3f} s, "
            f"rejections + manifest {seconds['finish']:.3f} s",
        },
        {
            "stage": "distributed",
            "workload": "driver overhead, 2 workers: the second pass that writes the ranks",
            "this_project": round(seconds["rank_parts"], 3),
            "alternative": round(wall2, 2),
            "ratio": round(seconds["rank_parts"] / wall2, 3),
            "unit": "s (alternative: the run's wall time; ratio: share)",
        },
        {
            "stage": "distributed",
            "workload": f"peak RSS per worker, 2 workers: {rows:,} rows (alternative: one file, "
            "half of them)",
            "this_project": round(peaks["full"], 1),
            "alternative": round(peaks["half"], 1),
            "ratio": round(peaks["half"] / peaks["full"], 2),
            "unit": "MiB peak RSS (VmHWM) of the larger worker",
            "note": "ratio near 1: memory per worker does not grow with the input",
        },
        {
            "stage": "distributed",
            "workload": f"projected: full PLAsTiCC test set ({TEST_ROWS:,} rows, "
            f"{TEST_OBJECTS:,} objects), score --dask local:2 at {rows_rate:,.0f} rows/s",
            "this_project": round(TEST_ROWS / rows_rate / 60, 1),
            "alternative": round(TEST_ROWS / (rows / median["one process"]) / 60, 1),
            "ratio": round(median["one process"] / wall2, 2),
            "unit": "minutes (alternative: one process)",
            "note": f"per worker {rows / median['1 worker']:,.0f} rows/s: N workers take about "
            f"{TEST_ROWS / (rows / median['1 worker']) / 60:,.0f} / N minutes if scaling stays "
            "as measured; the unblinded test set's 11 gzip files are 11 parts at most (the "
            "Kaggle test_set.csv, plain, is cut into parts)",
        },
    ]
    for row in result_rows:
        text = f"{row['this_project']} vs {row['alternative']} ({row['ratio']}) {row['unit']}"
        print(f"{row['workload']}: {text}")
    if args.quick:
        print("quick run: results not written (run without --quick for benchmarks/results)")
    else:
        common.write_rows("distributed", result_rows)
    return result_rows


if __name__ == "__main__":
    main()
