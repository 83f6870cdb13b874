"""Training throughput: the JAX/Flax VAE against the same network in PyTorch, side by side.

The networks are the presets' without their classification head (the PyTorch seed has none).

For each architecture, one process measures (a) the JAX train step (this project's
`make_train_step`, jit-compiled, state donated) and (b) the same layers, loss, AdamW schedule and
gradient clipping written in PyTorch (eager, the seed pipeline's framework), on the same batches
of the same data, with the same thread count. Figures are the median samples/s over several
epochs after compilation / warm-up; the compile time of the JAX step is reported separately.

Architectures:
- `mlp` (the default preset: hidden (512, 256), latent 16),
- `mlp-wide` (the gpu preset's network: hidden (1024, 512, 256), latent 64),
- `conv` (an alternative we compared: a 1-D convolutional encoder over time, same decoder).

Data: the prepared train split of the default dataset when `data/processed/rare` exists, else
random arrays of the same shape (4,787 objects, 6 x 64 grid, 30 features; throughput does not
depend on the values).

    python benchmarks/bench_train.py            # full: 7 timed epochs per framework
    python benchmarks/bench_train.py --quick    # 2 epochs on 1,024 objects (smoke run, prints only)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from plasticc_jax import batches, config_io, train
from plasticc_jax import config as config_lib
from plasticc_jax.config import Config, ModelConfig
from plasticc_jax.dataset import load_split
from plasticc_jax.models import LightCurveDecoder, Reconstruction, encoder_inputs
from plasticc_jax.train_step import create_model, init_state, make_optimizer, make_train_step

ROOT = Path(__file__).resolve().parent.parent
N_BANDS = 6


# ---------------------------------------------------------------------------------------------
# Data.


def fixed_batches(
    data: dict[str, np.ndarray], batch_size: int, order: np.ndarray
) -> Iterator[dict[str, np.ndarray]]:
    """Training batches as `train` makes them: all of one shape, padding rows of weight 0."""
    for batch, _ in batches.padded_batches(data, batch_size, order, min_size=batch_size):
        yield batch


def load_data(config: Config, n_objects: int | None) -> tuple[dict[str, np.ndarray], str]:
    dataset = ROOT / config.data.dataset_dir
    if (dataset / "manifest.json").is_file():
        arrays = load_split(dataset, "train")
        stats = train.feature_stats(arrays)
        data = batches.model_inputs(arrays, stats, config.data.n_time_bins)
        source = "real PLAsTiCC train split"
    else:
        rng = np.random.default_rng(0)
        n, t = 4787, config.data.n_time_bins
        mask = rng.random((n, N_BANDS, t)) < 0.1
        data = {
            "flux": np.where(mask, rng.normal(size=mask.shape), 0).astype(np.float32),
            "flux_err": np.where(mask, rng.uniform(0.01, 0.3, mask.shape), 0).astype(np.float32),
            "mask": mask,
            "features": rng.normal(size=(n, 30)).astype(np.float32),
        }
        source = "random arrays shaped like the PLAsTiCC train split"
    if n_objects is not None:
        data = {k: v[:n_objects] for k, v in data.items()}
    return data, f"{source}, {len(data['flux'])} objects"


# ---------------------------------------------------------------------------------------------
# The alternative architecture in JAX: a 1-D convolutional encoder, the default decoder.


class ConvEncoder(nnx.Module):
    """Two strided 1-D convolutions over time (channels: flux, log1p err, mask per band)."""

    def __init__(self, n_times: int, n_features: int, model: ModelConfig, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3 * N_BANDS, 32, kernel_size=(5,), strides=(2,), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(5,), strides=(2,), rngs=rngs)
        flat = 64 * math.ceil(math.ceil(n_times / 2) / 2)
        self.dense = nnx.Linear(flat + n_features, model.hidden[-1], rngs=rngs)
        self.norm = nnx.LayerNorm(model.hidden[-1], rngs=rngs)
        self.mu = nnx.Linear(model.hidden[-1], model.latent_dim, rngs=rngs)
        self.logvar = nnx.Linear(model.hidden[-1], model.latent_dim, rngs=rngs)
        self.classifier = None  # no classification head, as the loss asks (`losses`)

    def __call__(self, flux, flux_err, mask, features):
        batch, n_bands, n_times = flux.shape
        grid = encoder_inputs(flux, flux_err, mask, features)[:, : 3 * n_bands * n_times]
        x = grid.reshape(batch, 3 * n_bands, n_times).transpose(0, 2, 1)  # (batch, T, C)
        x = nnx.gelu(self.conv2(nnx.gelu(self.conv1(x))))
        h = jnp.concatenate([x.reshape(batch, -1), features], axis=-1)
        h = nnx.gelu(self.norm(self.dense(h)))
        return self.mu(h), jnp.clip(self.logvar(h), -12.0, 8.0)


class ConvVae(nnx.Module):
    def __init__(self, n_times: int, n_features: int, model: ModelConfig, *, rngs: nnx.Rngs):
        self.encoder = ConvEncoder(n_times, n_features, model, rngs=rngs)
        self.decoder = LightCurveDecoder(N_BANDS, n_times, n_features, model, rngs=rngs)

    def __call__(self, flux, flux_err, mask, features, key) -> tuple[Any, Any, Reconstruction]:
        mu, logvar = self.encoder(flux, flux_err, mask, features)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
        return mu, logvar, self.decoder(z)


# ---------------------------------------------------------------------------------------------
# JAX measurement.


def bench_jax(
    model: nnx.Module, config: Config, data: dict[str, np.ndarray], epochs: int
) -> dict[str, float]:
    tc = config.train
    n = len(data["flux"])
    steps = math.ceil(n / tc.batch_size)
    graphdef, params = nnx.split(model)
    params = nnx.to_pure_dict(params)
    tx, schedule = make_optimizer(tc, steps)
    state = init_state(params, tx)
    rng = jax.random.key(0)
    step = jax.jit(make_train_step(graphdef, tx, schedule, tc, steps), donate_argnums=0)
    first = next(fixed_batches(data, tc.batch_size, np.arange(n)))
    start = time.perf_counter()
    compiled = step.lower(state, jax.device_put(first), rng).compile()
    compile_s = time.perf_counter() - start
    rates = []
    for epoch in range(epochs + 1):  # the first epoch warms caches and is not counted
        order = np.random.default_rng(epoch).permutation(n)
        start = time.perf_counter()
        for batch in fixed_batches(data, tc.batch_size, order):
            state, metrics = compiled(state, jax.device_put(batch), rng)
        jax.block_until_ready((state, metrics))
        if epoch:
            rates.append(n / (time.perf_counter() - start))
    n_params = sum(p.size for p in jax.tree.leaves(state.params))
    return {"samples_per_s": statistics.median(rates), "compile_s": compile_s, "params": n_params}


# ---------------------------------------------------------------------------------------------
# The same networks in PyTorch.


def bench_torch(
    kind: str, config: Config, data: dict[str, np.ndarray], epochs: int, threads: int
) -> dict[str, float] | None:
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mc, tc = config.model, config.train
    n_times, n_features = data["flux"].shape[2], data["features"].shape[1]
    cells = N_BANDS * n_times
    log_2pi = math.log(2 * math.pi)

    def mlp(sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
        return nn.Sequential(*layers)

    class Vae(nn.Module):
        def __init__(self):
            super().__init__()
            width = mc.hidden[-1]
            if kind == "conv":
                self.conv = nn.Sequential(
                    nn.Conv1d(3 * N_BANDS, 32, 5, stride=2, padding=2),
                    nn.GELU(),
                    nn.Conv1d(32, 64, 5, stride=2, padding=2),
                    nn.GELU(),
                )
                flat = 64 * math.ceil(math.ceil(n_times / 2) / 2)
                self.body = mlp([flat + n_features, width])
            else:
                self.body = mlp([3 * cells + n_features, *mc.hidden])
            self.mu = nn.Linear(width, mc.latent_dim)
            self.logvar = nn.Linear(width, mc.latent_dim)
            self.dec = mlp([mc.latent_dim, *reversed(mc.hidden)])
            self.mean = nn.Linear(mc.hidden[0], cells)
            self.sigma = nn.Linear(mc.hidden[0], cells)
            self.fmean = nn.Linear(mc.hidden[0], n_features)
            self.flog = nn.Parameter(torch.zeros(n_features))

        def forward(self, flux, err, mask, feat):
            b = flux.shape[0]
            grid = torch.cat(
                [torch.where(mask, flux, 0), torch.where(mask, err.log1p(), 0), mask.float()], dim=1
            )  # (b, 3 * bands, T)
            if kind == "conv":
                h = torch.cat([self.conv(grid).flatten(1), feat], dim=1)
            else:
                h = torch.cat([grid.reshape(b, -1), feat], dim=1)
            h = self.body(h)
            mu, logvar = self.mu(h), self.logvar(h).clamp(-12, 8)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            d = self.dec(z)
            sigma = nn.functional.softplus(self.sigma(d)) + mc.min_model_sigma
            return (
                mu,
                logvar,
                self.mean(d).view(b, N_BANDS, n_times),
                sigma.view(b, N_BANDS, n_times),
                self.fmean(d),
            )

    model = Vae().to(device)
    n = len(data["flux"])
    steps = math.ceil(n / tc.batch_size)
    total, warmup = max(1, config.train.max_epochs * steps), round(tc.warmup_epochs * steps)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)

    def lr_factor(step: int) -> float:  # optax.warmup_cosine_decay_schedule, end 1% of peak
        if step < warmup:
            return step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    step_count = 0

    def train_step(batch: dict[str, np.ndarray]) -> None:
        nonlocal step_count
        t = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
        beta = tc.beta * min(1.0, (step_count + 1) / max(1.0, tc.kl_warmup_epochs * steps))
        mu, logvar, mean, sigma, fmean = model(t["flux"], t["flux_err"], t["mask"], t["features"])
        obs = t["mask"]
        var = t["flux_err"].square() + sigma.square()
        x = torch.where(obs, t["flux"], mean)
        nll = torch.where(obs, 0.5 * (log_2pi + var.log() + (x - mean).square() / var), 0)
        nll = nll.sum(dim=(1, 2))
        fvar = torch.exp(2 * model.flog)
        fnll = (0.5 * (log_2pi + fvar.log() + (t["features"] - fmean).square() / fvar)).sum(-1)
        kl = 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(-1)
        n_values = obs.float().sum(dim=(1, 2)) + n_features
        w = t["weight"]
        loss = (w * (nll + fnll + beta * kl)).sum() / (w * n_values).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm)
        opt.step()
        sched.step()
        step_count += 1

    rates = []
    for epoch in range(epochs + 1):
        order = np.random.default_rng(epoch).permutation(n)
        start = time.perf_counter()
        for batch in fixed_batches(data, tc.batch_size, order):
            train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            rates.append(n / (time.perf_counter() - start))
    return {"samples_per_s": statistics.median(rates), "device": str(device)}


# ---------------------------------------------------------------------------------------------


def architectures(default: Config) -> dict[str, tuple[Config, Any]]:
    # Without the classification head (trained on the known classes' labels): the PyTorch
    # seed's network has none, and the benchmark's batches carry no labels.
    default = dataclasses.replace(
        default, model=dataclasses.replace(default.model, classifier_head=False)
    )
    gpu = config_io.load_preset("gpu")
    wide = dataclasses.replace(default, model=dataclasses.replace(gpu.model, classifier_head=False))
    n_times = default.data.n_time_bins

    def mlp(config: Config, n_features: int) -> nnx.Module:
        return create_model(config, N_BANDS, n_times, n_features)

    def conv(config: Config, n_features: int) -> nnx.Module:
        return ConvVae(n_times, n_features, config.model, rngs=nnx.Rngs(0))

    return {"mlp": (default, mlp), "mlp-wide": (wide, mlp), "conv": (default, conv)}


def measure(framework: str, arch: str, quick: bool, epochs: int) -> dict[str, Any]:
    """One framework on one architecture, in this process (run in a child by `main`)."""
    default = config_lib.resolve(config_io.load_preset("default"))
    data, source = load_data(default, 1024 if quick else None)
    config, build = architectures(default)[arch]
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if framework == "jax":
        result = bench_jax(build(config, data["features"].shape[1]), config, data, epochs)
        device = jax.devices()[0]
        result["device"] = f"{device.platform} ({device.device_kind})"
    else:
        result = bench_torch(arch, config, data, epochs, threads or 1) or {}
    return {**result, "source": source, "threads": threads}


def _child(framework: str, arch: str, quick: bool, epochs: int) -> dict[str, Any]:
    # A fresh interpreter per measurement: XLA's and PyTorch's thread pools spin-wait after
    # work, so running both in one process slows whichever runs second by several times.
    argv = [sys.executable, __file__, "--child", framework, "--arch", arch, "--epochs", str(epochs)]
    _, _, out = common.run_measured(argv + (["--quick"] if quick else []))
    return json.loads(out.strip().splitlines()[-1])


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its compile time goes with it)."""
    if not runs or "samples_per_s" not in runs[0]:
        return runs[0] if runs else {}
    return sorted(runs, key=lambda r: r["samples_per_s"])[len(runs) // 2]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs on 1,024 objects")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (default 7)")
    parser.add_argument("--arch", nargs="*", default=None, help="subset of mlp mlp-wide conv")
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating jax/torch rounds (default 3, quick 1)"
    )
    parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 7)
    rounds = args.rounds or (1 if args.quick else 3)
    if args.child:
        print(json.dumps(measure(args.child, args.arch[0], args.quick, epochs)))
        return []
    default = config_lib.resolve(config_io.load_preset("default"))
    rows = []
    for name, (config, _) in architectures(default).items():
        if args.arch and name not in args.arch:
            continue
        # Alternate the two frameworks so that a burst of other load on the machine hits both.
        jax_runs, torch_runs = [], []
        for _ in range(rounds):
            jax_runs.append(_child("jax", name, args.quick, epochs))
            torch_runs.append(_child("torch", name, args.quick, epochs))
        jax_result = _median_run(jax_runs)
        torch_result = _median_run(torch_runs)
        torch_rate = torch_result.get("samples_per_s")
        hidden = ",".join(map(str, config.model.hidden))
        row = {
            "stage": "train",
            "workload": (
                f"{name} VAE (hidden {hidden}, latent {config.model.latent_dim}, "
                f"batch {config.train.batch_size}), {jax_result['source']}"
            ),
            "this_project": round(jax_result["samples_per_s"], 1),
            "alternative": round(torch_rate, 1) if torch_rate else None,
            "ratio": round(jax_result["samples_per_s"] / torch_rate, 2) if torch_rate else None,
            "unit": "samples/s (alternative: same network in PyTorch)",
            "compile_s": round(jax_result["compile_s"], 2),
            "params": int(jax_result["params"]),
            "epochs_timed": epochs,
            "rounds": rounds,
            "jax_device": jax_result["device"],
            "torch_device": torch_result.get("device"),
            "threads": jax_result["threads"],
        }
        print(
            f"{name:9s} jax {row['this_project']:9.0f}/s (compile {row['compile_s']:.1f} s)  "
            f"torch {row['alternative'] or float('nan'):9.0f}/s  ratio {row['ratio']}",
            flush=True,
        )
        rows.append(row)
    if not args.arch and not args.quick:  # a smoke run leaves the recorded results alone
        common.write_rows("train", rows)
    return rows


if __name__ == "__main__":
    main()
