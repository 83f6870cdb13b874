"""Encode + score throughput: objects/s from prepared tensors to anomaly scores.

What is timed, per batch size: `scoring.model_outputs` (one jit-compiled float32 pass of the
encoder and of the decoder at z = mu: reconstruction likelihood, KL, chi-square, the head's
probabilities) followed by `Detector.score` (the fused components, as `score` computes them:
their calibration, the fusion and the nearest class), on N objects already in memory as gridded
tensors. Also timed alone, at the largest batch size: the VAE pass and the detector, so a missed
target says which part limits it. The extrapolated time to score the full PLAsTiCC test set (3.5
million objects) is N_TEST / rate.

By default the run is the default preset's network and detector trained for one epoch on
synthetic light curves: the network's cost does not depend on how well it is trained, but the
trees' does (their depth and leaves follow the data: synthetic classes are told apart by small
trees), so `--run` measures an evaluated run instead, on its own test split repeated to N
objects; the README's figures come from the default run on the real training set.
Target: 20,000 objects/s on 2 CPU cores.

    python benchmarks/bench_score.py            # full: 65,536 objects, 5 repeats
    python benchmarks/bench_score.py --quick    # 8,192 objects, 3 repeats (a check, seconds)
    python benchmarks/bench_score.py --run runs/default-rare   # after make prepare train evaluate
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from plasticc_jax import config as config_lib
from plasticc_jax import config_io, runs, scoring, synthetic
from plasticc_jax.dataset import LightCurveArrays, load_split

N_TEST = 3_500_000  # objects in the PLAsTiCC test set
TARGET = 20_000.0  # objects/s on 2 CPU cores


def build_run(workdir: Path) -> Path:
    """A default-architecture run (1 epoch on 2,000 synthetic objects) with its detector."""
    from plasticc_jax.evaluate import evaluate
    from plasticc_jax.prepare import prepare
    from plasticc_jax.train import train

    synthetic.write_synthetic(workdir / "data" / "raw", 2000, seed=0)
    config = config_io.load_preset("default")
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, max_epochs=1),
        eval=dataclasses.replace(config.eval, umap=False, baselines=False, n_draws=2),
    )
    config = config_lib.resolve(config)
    prepare(config, workdir)
    train(config, workdir)
    return evaluate(config, workdir)


def tile(arrays: LightCurveArrays, n: int) -> LightCurveArrays:
    """`n` objects made by repeating the given ones (shapes and dtypes as prepared)."""
    index = np.resize(np.arange(len(arrays)), n)
    return arrays.take(index)


def compute_bound(vae: Any, arrays: LightCurveArrays, batch: int) -> dict[str, Any]:
    """The VAE pass's floating-point rate (XLA's count of its operations) against a plain
    matrix product's on the same cores, and the objects/s the pass would reach at that rate: how
    far a faster implementation of this network could go on this machine."""
    import jax
    import jax.numpy as jnp

    from plasticc_jax import batches

    inputs, _ = next(batches.padded_batches(vae.encoder.inputs(arrays), batch))
    cost = vae._forward.lower(vae.params, inputs).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    a, w = jnp.ones((batch, 1024), jnp.float32), jnp.ones((1024, 512), jnp.float32)
    product = jax.jit(jnp.matmul)
    pass_s = common.median_time(lambda: jax.block_until_ready(vae._forward(vae.params, inputs)))
    product_s = common.median_time(lambda: product(a, w).block_until_ready())
    rate, peak = flops / pass_s, 2.0 * a.shape[0] * a.shape[1] * w.shape[1] / product_s
    ceiling = peak / (flops / batch)
    print(
        f"  VAE pass {flops / batch / 1e6:.2f} MFLOP/object at {rate / 1e9:.1f} GFLOP/s, "
        f"{rate / peak:.0%} of a plain matmul's {peak / 1e9:.1f}: at most {ceiling:,.0f} "
        "objects/s for the pass alone on these cores"
    )
    return {
        "stage": "score",
        "workload": f"VAE pass FLOP rate vs a {batch}x1024 @ 1024x512 matmul",
        "this_project": round(rate / 1e9, 2),
        "alternative": round(peak / 1e9, 2),
        "ratio": round(rate / peak, 2),
        "unit": "GFLOP/s (alternative: the plain matmul)",
        "mflop_per_object": round(flops / batch / 1e6, 3),
        "ceiling_objects_per_s": round(ceiling, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8,192 objects, 3 repeats")
    parser.add_argument("--run", type=Path, help="an evaluated run (default: a synthetic one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from plasticc_jax.detector import Detector
    from plasticc_jax.encoder import load_vae

    n = 8192 if args.quick else 65_536
    repeats = 3 if args.quick else 5
    batch_sizes = (1024, 4096) if args.quick else (256, 1024, 4096, 16384)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            run_dir, split = build_run(Path(tmp)), "train"
            dataset_dir = Path(tmp) / "data" / "processed" / "rare"
        else:
            run_dir, split = args.run.resolve(), "test"
            dataset_dir = run_dir.parent.parent / runs.read_config(run_dir).data.dataset_dir
        which = f"run {run_dir.name}" if args.run else "synthetic run"
        arrays = tile(load_split(dataset_dir, split), n)
        vae = load_vae(run_dir)
        detector = Detector.load(run_dir / "models", scoring_only=True)

        def detect(outputs: dict[str, np.ndarray]) -> np.ndarray:
            evidence = scoring.evidence(outputs, vae.stats, vae.encoder.classes)
            return detector.score(evidence, fused_only=True)["anomaly_score"]

        for batch in batch_sizes:

            def pipeline(batch: int = batch) -> np.ndarray:
                return detect(scoring.model_outputs(vae, arrays, batch))

            seconds = common.median_time(pipeline, repeats=repeats, warmup=1)
            rate = n / seconds
            rows.append(
                {
                    "stage": "score",
                    "workload": f"encode + detector, batch {batch}, {n:,} objects ({which})",
                    "this_project": round(rate, 1),
                    "alternative": TARGET,
                    "ratio": round(rate / TARGET, 2),
                    "unit": "objects/s (alternative: the 20,000/s target)",
                    "extrapolated_3p5M_s": round(N_TEST / rate, 1),
                    "batch_size": batch,
                    "n_objects": n,
                }
            )
            print(
                f"batch {batch:6d}: {rate:10,.0f} objects/s; 3.5M objects in "
                f"{N_TEST / rate / 60:.1f} min",
                flush=True,
            )
        # Where the time goes, at the largest batch size.
        batch = batch_sizes[-1]
        outputs = scoring.model_outputs(vae, arrays, batch)
        parts = {
            "VAE pass (encoder, decoder, KL, chi2)": lambda: scoring.model_outputs(
                vae, arrays, batch
            ),
            "detector (components, calibration, fusion)": lambda: detect(outputs),
        }
        profile = {name: common.median_time(part, repeats, 1) for name, part in parts.items()}
        total = sum(profile.values())
        for name, seconds in profile.items():
            share = seconds / total
            rows.append(
                {
                    "stage": "score",
                    "workload": f"profile, batch {batch}: {name} ({which})",
                    "this_project": round(n / seconds, 1) if seconds > 0 else None,
                    "alternative": None,
                    "ratio": None,
                    "unit": "objects/s",
                    "share_of_time": round(share, 3),
                    "note": f"{100 * share:.0f}% of encode+score time",
                }
            )
            print(f"  {name:34s} {n / max(seconds, 1e-9):12,.0f} objects/s ({100 * share:.0f}%)")
        rows.append(compute_bound(vae, arrays, batch))
    if not args.quick:
        common.write_rows("score" if args.run is None else "score_run", rows)
    else:
        print("quick run: results not written (run without --quick for benchmarks/results)")
    return rows


if __name__ == "__main__":
    main()
