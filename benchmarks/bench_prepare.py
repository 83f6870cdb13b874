"""prepare: rows/s and peak RSS from PLAsTiCC CSV to tensors, against the pandas-groupby way.

Measured, each a median of several runs in fresh processes (peak RSS is the kernel's figure for
the process, from wait4):

- this project's `prepare` (config defaults: 50k-row chunks, 2 worker threads) on the real
  training set (1,421,705 rows) and on generated files in the same format (unblinded, gzip) of
  about 2 million and 20 million rows; its peak RSS must stay about flat between the two;
- the straightforward way, on a subset of the real training set (N random objects) in the same
  run: `pandas.read_csv`, `groupby("object_id")`, and per object the same grid and features, once
  binning each observation in a Python loop (the textbook code) and once with per-object NumPy
  (`np.add.at`), which is a stronger baseline. Rates are per row, so the subset size does not
  favour either side (both are linear in rows).

Run: `python benchmarks/bench_prepare.py` (the full form, minutes: it generates the 20M-row file
once into benchmarks/out/) or `--quick` (seconds, small files, prints only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
ROWS_PER_OBJECT = 140  # synthetic.write_synthetic's average
log = logging.getLogger("bench_prepare")


def real_data() -> Path | None:
    """The real training set: $PLASTICC_JAX_MIRROR, data/raw, or the shared copy."""
    candidates = [os.environ.get("PLASTICC_JAX_MIRROR", ""), ROOT / "data" / "raw"]
    candidates.append(ROOT.parent / "shared" / "data" / "plasticc_snmachine")
    for folder in map(Path, filter(None, candidates)):
        if (folder / "plasticc_train_lightcurves.csv.gz").is_file():
            return folder
    return None


def synthetic(rows: int) -> Path:
    """A generated unblinded-format training set of about `rows` rows (made once, then reused)."""
    from plasticc_jax.synthetic import write_synthetic

    n_objects = max(rows // ROWS_PER_OBJECT, 10)
    folder = OUT / f"synthetic-{n_objects}"
    if not (folder / "DONE").is_file():
        log.info("generating %s (%d objects, about %d rows)...", folder, n_objects, rows)
        shutil.rmtree(folder, ignore_errors=True)
        tmp = OUT / f".tmp-synthetic-{n_objects}"
        shutil.rmtree(tmp, ignore_errors=True)
        write_synthetic(tmp, n_objects, fmt="unblinded", seed=0)
        (tmp / "DONE").touch()
        tmp.rename(folder)
    return folder


def subset(real: Path, n_objects: int) -> Path:
    """A seeded random sample of `n_objects` objects of the real training set, same format.

    Random, not the first objects: the file starts with the deep-drilling-field objects, which
    have twice the observations of the rest, and rows per object changes the per-row rate.
    """
    folder = OUT / f"real-subset-{n_objects}"
    if not (folder / "DONE").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        lcs = pd.read_csv(real / "plasticc_train_lightcurves.csv.gz")
        ids = lcs["object_id"].unique()
        keep = np.random.default_rng(0).choice(ids, min(n_objects, ids.size), replace=False)
        lcs[lcs["object_id"].isin(keep)].to_csv(
            folder / "plasticc_train_lightcurves.csv.gz", index=False
        )
        meta = pd.read_csv(real / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
        meta[meta["object_id"].isin(keep)].to_csv(
            folder / "plasticc_train_metadata.csv.gz", index=False
        )
        (folder / "DONE").touch()
    return folder


# ---------------------------------------------------------------------------------------------
# The straightforward way (the alternative), run in a child process by `measure_pandas`.


def pandas_way(raw: Path, per_observation: bool) -> int:
    """Grid and features as `gridding` makes them, written the straightforward way.

    Returns the number of light-curve rows read.
    """
    from plasticc_jax.config import DataConfig

    data = DataConfig()
    n_t, before = data.n_time_bins, data.window_before
    width = (data.window_before + data.window_after) / n_t
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
    meta = meta.set_index("object_id")
    out = []
    for object_id, lc in lcs.groupby("object_id", sort=False):
        mjd, band = lc["mjd"].to_numpy(), lc["passband"].to_numpy()
        flux, err = lc["flux"].to_numpy(), lc["flux_err"].to_numpy()
        detected = lc["detected_bool"].to_numpy().astype(bool)
        snr = flux / err
        candidates = np.flatnonzero(detected) if detected.any() else np.arange(len(lc))
        t0 = mjd[candidates[np.argmax(snr[candidates])]]
        amplitude = max(np.abs(flux).max(), 1.0)
        sum_w, sum_wf = np.zeros((6, n_t)), np.zeros((6, n_t))
        if per_observation:
            for m, b, f, e in zip(mjd, band, flux, err, strict=True):
                t = int((m - t0 + before) // width)
                if 0 <= t < n_t:
                    w = 1.0 / (e * e)
                    sum_w[b, t] += w
                    sum_wf[b, t] += w * f
        else:
            t = np.floor((mjd - t0 + before) / width).astype(int)
            ok = (t >= 0) & (t < n_t)
            np.add.at(sum_w, (band[ok], t[ok]), 1.0 / err[ok] ** 2)
            np.add.at(sum_wf, (band[ok], t[ok]), flux[ok] / err[ok] ** 2)
        mask = sum_w > 0
        safe = np.where(mask, sum_w, 1.0)
        grid_flux = np.where(mask, sum_wf / safe, 0.0) / amplitude
        grid_err = np.where(mask, 1.0 / np.sqrt(safe), 0.0) / amplitude
        features = [np.log10(amplitude), np.log10(len(lc))]
        for b in range(6):
            sel = band == b
            if sel.any():
                w = 1.0 / err[sel] ** 2
                features += [
                    (w * flux[sel]).sum() / w.sum() / amplitude,
                    flux[sel].std() / amplitude,
                    detected[sel].mean(),
                ]
            else:
                features += [0.0, 0.0, 0.0]
        row = meta.loc[object_id]
        features += [row["ddf_bool"], row["hostgal_photoz"], row["distmod"], row["mwebv"]]
        out.append((grid_flux.astype(np.float32), grid_err.astype(np.float32), mask, features))
    return len(lcs)


_PANDAS_CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
import bench_prepare
start = time.perf_counter()
rows = bench_prepare.pandas_way(Path({raw!r}), {per_observation!r})
print(json.dumps({{"seconds": time.perf_counter() - start, "rows": rows}}))
"""

_PREPARE_CHILD = """
import dataclasses, json, sys, time
from pathlib import Path
from plasticc_jax import config as config_lib, config_io
from plasticc_jax.prepare import prepare
config = config_io.load_preset("default")
data = dataclasses.replace(config.data, raw_dir={raw!r})
config = config_lib.resolve(dataclasses.replace(config, data=data))
start = time.perf_counter()
out = prepare(config, Path({work!r}))
seconds = time.perf_counter() - start
manifest = json.loads((out / "manifest.json").read_text())
rows = sum(f["rows"] for f in manifest["inputs"]["files"] if f["kind"] == "lightcurves")
print(json.dumps({{"seconds": seconds, "rows": rows, "objects": manifest["input_objects"]}}))
"""


def _median_runs(make_code, repeats: int) -> dict:
    """Median seconds and peak RSS over `repeats` fresh child processes."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=OUT) as work:
            _, rss, stdout = common.python_measured(make_code(work))
        runs.append({**json.loads(stdout.strip().splitlines()[-1]), "rss": rss})
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "seconds": seconds,
        "rows": runs[0]["rows"],
        "objects": runs[0].get("objects"),
        "rows_per_s": runs[0]["rows"] / seconds,
        "peak_rss_mib": statistics.median(r["rss"] for r in runs),
        "runs": len(runs),
    }


def measure_prepare(raw: Path, repeats: int) -> dict:
    raw = Path(raw).resolve()
    return _median_runs(lambda work: _PREPARE_CHILD.format(raw=str(raw), work=work), repeats)


def measure_pandas(raw: Path, per_observation: bool, repeats: int) -> dict:
    return _median_runs(
        lambda _: _PANDAS_CHILD.format(
            here=str(HERE), raw=str(raw), per_observation=per_observation
        ),
        repeats,
    )


def _settings() -> str:
    from plasticc_jax.config import DataConfig

    data = DataConfig()
    return f"chunk_rows={data.chunk_rows}, workers={data.workers} (threads), gzip input"


SETTINGS = _settings()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one run, print only")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    OUT.mkdir(parents=True, exist_ok=True)
    repeats = 1 if args.quick else args.repeats
    sizes = (100_000, 500_000) if args.quick else (2_000_000, 20_000_000)
    subset_objects = 150 if args.quick else 1000

    rows: list[dict] = []
    real = real_data()
    if real is not None:
        ours = measure_prepare(real, repeats)
        log.info("prepare, real training set: %s", ours)
        part = subset(real, subset_objects)
        for per_observation, how in ((True, "per-observation Python loop"), (False, "np.add.at")):
            alt = measure_pandas(part, per_observation, repeats)
            log.info("pandas groupby + %s, %d objects: %s", how, subset_objects, alt)
            rows.append(
                {
                    "stage": "prepare",
                    "workload": f"real training set ({ours['rows']:,} rows, {ours['objects']:,} "
                    f"objects) vs pandas groupby + {how} ({alt['rows']:,}-row subset)",
                    "this_project": round(ours["rows_per_s"]),
                    "alternative": round(alt["rows_per_s"]),
                    "ratio": round(ours["rows_per_s"] / alt["rows_per_s"], 1),
                    "unit": "rows/s",
                    "peak_rss_mib": round(ours["peak_rss_mib"]),
                    "alternative_peak_rss_mib": round(alt["peak_rss_mib"]),
                    "seconds": round(ours["seconds"], 2),
                    "settings": SETTINGS,
                    "note": "this project: the whole `prepare` (hashing, parsing, gridding, "
                    "features, splits, npz shards) in a fresh process; alternative: read_csv + "
                    f"groupby + the same grid and features ({how}), no writing",
                }
            )
    else:
        log.warning("real training set not found: skipping its figures and the ratio")

    measured = []
    for size in sizes:
        folder = synthetic(size)
        result = measure_prepare(folder, repeats)
        log.info("prepare, generated %s: %s", folder.name, result)
        measured.append(result)
        rows.append(
            {
                "stage": "prepare",
                "workload": f"generated file, {result['rows']:,} rows ({result['objects']:,} "
                "objects)",
                "this_project": round(result["rows_per_s"]),
                "alternative": None,
                "ratio": None,
                "unit": "rows/s",
                "peak_rss_mib": round(result["peak_rss_mib"]),
                "seconds": round(result["seconds"], 2),
                "settings": SETTINGS,
            }
        )
    small, large = measured
    rows.append(
        {
            "stage": "prepare",
            "workload": f"peak RSS at {large['rows']:,} rows (alternative: at {small['rows']:,})",
            "this_project": round(large["peak_rss_mib"]),
            "alternative": round(small["peak_rss_mib"]),
            "ratio": round(small["peak_rss_mib"] / large["peak_rss_mib"], 2),
            "unit": "MiB peak RSS",
            "note": "ratio near 1: memory does not grow with the input "
            f"({large['rows'] / small['rows']:.0f}x more rows)",
        }
    )
    for row in rows:
        print(json.dumps(row))
    if not args.quick:
        print(common.write_rows("prepare", rows))
    return rows


if __name__ == "__main__":
    main()
