"""Wall time of `make prepare train evaluate` on the default data, from a prepared venv.

Runs the three stages in a scratch copy of the working folder's data (the raw files are reused
from data/raw, so no download is timed) and reports each stage's wall time and the total.
Target: under 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    raw = ROOT / "data" / "raw"
    cli = [sys.executable, "-m", "plasticc_jax"]
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "data").mkdir()
            if raw.is_dir():
                shutil.copytree(raw, work / "data" / "raw")
            times = {}
            for stage in ("prepare", "train", "evaluate"):
                start = time.perf_counter()
                common.run_measured([*cli, stage, "--workdir", str(work)])
                times[stage] = time.perf_counter() - start
            rows.append(times)
    median = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in rows[0]}
    total = sum(median.values())
    out = [
        {
            "stage": "end_to_end",
            "workload": f"`make {s}` (default preset, real training set)",
            "this_project": round(t, 1),
            "alternative": None,
            "ratio": None,
            "unit": "s",
        }
        for s, t in median.items()
    ]
    out.append(
        {
            "stage": "end_to_end",
            "workload": "`make prepare train evaluate` total",
            "this_project": round(total, 1),
            "alternative": 300.0,
            "ratio": round(300.0 / total, 2),
            "unit": "s (alternative = the 5-min target)",
        }
    )
    for row in out:
        print(f"{row['workload']}: {row['this_project']} s", flush=True)
    print(common.write_rows("end_to_end", out))


if __name__ == "__main__":
    main()
