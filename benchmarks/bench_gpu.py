"""GPU figures, one prepared script for a lent GPU machine: train and encode throughput.

1. `plasticc-jax train` with the default and gpu presets on the prepared real training set
   (`data/processed/rare`, prepared on another machine and copied): epoch time and samples/s
   from the run's metrics.jsonl (median over epochs after the first), first-epoch time (compile).
2. The training harness of bench_train.py (JAX against the same network in PyTorch, both on the
   GPU) for the two MLPs, as a ratio.
3. Encode throughput: `TrainedVae.evaluate` (one jit pass of encoder and decoder) on the test
   split tiled to 262,144 objects, at several batch sizes; the Isolation Forest runs on the CPU.

    python benchmarks/bench_gpu.py --epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train
import common

from plasticc_jax import config as config_lib
from plasticc_jax import config_io
from plasticc_jax.dataset import load_split
from plasticc_jax.encoder import load_vae
from plasticc_jax.train import train

N_TEST = 3_500_000


def train_rows(workdir: Path, epochs: int) -> tuple[list[dict], Path]:
    rows, run = [], None
    for preset in ("default", "gpu"):
        config = config_io.load_preset(preset)
        config = dataclasses.replace(
            config,
            run_dir=str(workdir / f"runs/{preset}"),
            train=dataclasses.replace(config.train, max_epochs=epochs, patience=epochs),
        )
        start = time.perf_counter()
        run_dir = train(config_lib.resolve(config), Path("."))
        wall = time.perf_counter() - start
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rate = statistics.median(r["samples_per_s"] for r in log[1:])
        rows.append(
            {
                "stage": "gpu",
                "workload": f"`plasticc-jax train --config {preset}`, real train split, "
                f"{len(log)} epochs (first epoch {log[0]['epoch_seconds']:.1f} s incl. compile, "
                f"wall {wall:.0f} s incl. checkpoints)",
                "this_project": round(rate),
                "alternative": None,
                "ratio": None,
                "unit": "samples/s (median epoch after the first, train + val)",
            }
        )
        run = run if run is not None else run_dir
    return rows, run


def encode_rows(run_dir: Path) -> list[dict]:
    vae = load_vae(run_dir, max_batch=65536)
    test = load_split(Path("data/processed/rare"), "test")
    arrays = test.take(np.resize(np.arange(len(test)), 262_144))
    rows = []
    for batch in (4096, 16384, 65536):
        seconds = common.median_time(lambda b=batch: vae.evaluate(arrays, b), repeats=5)
        rows.append(
            {
                "stage": "gpu",
                "workload": f"encode (VAE pass) 262,144 objects, batch {batch}",
                "this_project": round(len(arrays) / seconds),
                "alternative": None,
                "ratio": None,
                "unit": "objects/s",
                "note": f"3.5M-object test set: {N_TEST / (len(arrays) / seconds):.0f} s of VAE",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows, run_dir = train_rows(Path(tmp), args.epochs)
        rows += encode_rows(run_dir)
    for row in bench_train.main(["--arch", "mlp", "mlp-wide", "--epochs", "5", "--rounds", "1"]):
        rows.append({**row, "stage": "gpu"})
    for row in rows:
        print(row, flush=True)
    print(common.write_rows("gpu", rows))


if __name__ == "__main__":
    main()
