"""Shared benchmark plumbing: the machine's description, medians, peak memory, result files.

Each `benchmarks/bench_<stage>.py` writes its rows to `benchmarks/results/<stage>.json`;
`benchmarks/report.py` turns all of them into `benchmarks/RESULTS.md`. Figures are medians of
several runs, and comparisons are measured side by side in the same process run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """E.g. `2 CPU cores (x86_64), no GPU` or `NVIDIA H100 80GB HBM3 + 16 CPU cores`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    desc = f"{cores} CPU cores ({platform.machine()})"
    try:
        import jax

        gpus = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    except Exception:
        gpus = []
    return f"{gpus[0]} + {desc}" if gpus else f"{desc}, no GPU"


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS in MiB, stdout).

    Peak RSS is the kernel's account of the child (wait4). Linux carries it across exec, so it
    includes the size of this (parent) process at the spawn: use `python_measured` for memory.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        return wall, usage.ru_maxrss / 1024.0, out.read().decode()


def python_measured(code: str) -> tuple[float, float, str]:
    """Run a Python snippet in a fresh interpreter: (wall seconds, peak RSS in MiB, stdout).

    The peak is the child's own VmHWM, read by the child as it ends. The kernel's ru_maxrss is not
    used here: Linux carries it across exec, so a child spawned by a large benchmark process
    would report at least the parent's size.
    """
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".status") as status:
        tail = f"\nimport shutil\nshutil.copyfile('/proc/self/status', {status.name!r})\n"
        wall, max_rss, out = run_measured([sys.executable, "-c", code + tail])
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    hwm = fields.get("VmHWM", "").split()
    return wall, (int(hwm[0]) / 1024.0 if hwm else max_rss), out


def write_rows(stage: str, rows: list[dict[str, Any]]) -> Path:
    """Save result rows for one stage. Each row: stage, workload, this_project, alternative,
    ratio, unit, plus any extra keys; machine and date are added here."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = {"machine": machine(), "date": datetime.date.today().isoformat()}
    path = RESULTS_DIR / f"{stage}.json"
    path.write_text(json.dumps([{**row, **stamp} for row in rows], indent=2) + "\n")
    return path
