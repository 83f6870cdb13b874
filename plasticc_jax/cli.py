"""The `plasticc-jax` command line: parses options and calls one stage function.

Every stage is `stage(config, workdir)`; relative paths in the config resolve against workdir.
User mistakes (`UserError`) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from plasticc_jax import config as config_lib
from plasticc_jax.errors import UserError

log = logging.getLogger("plasticc_jax")

# Convenience flags (the seed pipeline's interface) and the config fields they set.
SHORTCUTS: dict[str, str] = {
    "protocol": "data.protocol",
    "latent_dim": "model.latent_dim",
    "batch_size": "train.batch_size",
    "max_epochs": "train.max_epochs",
    "run_dir": "run_dir",
}


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="preset name or path (configs/*.py)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set data.anomaly_classes=6,64 (repeatable)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("."), help="project folder")
    for flag, target in SHORTCUTS.items():
        parser.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, help=f"same as --set {target}=..."
        )


def _add_dask_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster: its scheduler (tcp://host:8786), a scheduler file (.json), "
        "or local:N for N worker processes on this machine (README: Beyond one machine)",
    )
    parser.add_argument(
        "--part-mb",
        type=float,
        default=None,
        help="with --dask: MB of plain CSV per task (default 64; a gzip file is one task)",
    )


def build_config(args: argparse.Namespace) -> config_lib.Config:
    config = config_lib.load_preset(args.config)
    overrides = list(args.overrides)
    for flag, target in SHORTCUTS.items():
        if getattr(args, flag, None) is not None:
            overrides.append(f"{target}={getattr(args, flag)}")
    return config_lib.resolve(config_lib.apply_overrides(config, overrides))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plasticc-jax", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in [
        ("download", "fetch the default data (the PLAsTiCC training set) into data/raw"),
        ("prepare", "turn light-curve CSVs into npz tensors, splits and statistics"),
        ("train", "train the VAE and write a run directory with checkpoints"),
        ("evaluate", "encode, fit the Isolation Forest, write scores, metrics and figures"),
    ]:
        stage = commands.add_parser(name, help=text, description=text)
        _add_config_args(stage)
        if name == "prepare":
            _add_dask_args(stage)

    score = commands.add_parser("score", help="score new light-curve files with a trained run")
    score.add_argument("--run", type=Path, required=True, help="run directory of a trained model")
    score.add_argument("--lightcurves", type=Path, nargs="+", required=True, help="CSV(.gz) files")
    score.add_argument("--metadata", type=Path, nargs="+", required=True, help="metadata CSV(.gz)")
    score.add_argument("--output", type=Path, required=True, help="output table (.parquet/.csv)")
    score.add_argument("--workers", type=int, default=None, help="threads gridding the input")
    _add_dask_args(score)

    doctor = commands.add_parser("doctor", help="report JAX, its backend and devices; test each")
    doctor.add_argument("--expect-gpu", action="store_true", help="fail unless JAX sees a GPU")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "doctor":
        from plasticc_jax.doctor import doctor

        return doctor(expect_gpu=args.expect_gpu)
    if args.command == "score":
        from plasticc_jax.doctor import log_backend
        from plasticc_jax.score import score

        log_backend()
        score(
            args.run,
            args.lightcurves,
            args.metadata,
            args.output,
            workers=args.workers,
            dask=args.dask,
            part_mb=args.part_mb,
        )
        return 0

    config = build_config(args)
    workdir = args.workdir.resolve()
    if args.command in ("train", "evaluate"):
        from plasticc_jax.doctor import log_backend

        log_backend()
    if args.command == "download":
        from plasticc_jax.download import download

        download(config, workdir)
    elif args.command == "prepare":
        from plasticc_jax.prepare import prepare

        prepare(config, workdir, dask=args.dask, part_mb=args.part_mb)
    elif args.command == "train":
        from plasticc_jax.train import train

        train(config, workdir)
    elif args.command == "evaluate":
        from plasticc_jax.evaluate import evaluate

        evaluate(config, workdir)
    return 0


def _not_jax_info(record: logging.LogRecord) -> bool:
    """Hide JAX's INFO lines, e.g. each backend it could not start ("Unable to initialize..."),
    and Dask's (every worker and connection opened and closed)."""
    if record.levelno >= logging.WARNING:
        return True
    return not record.name.startswith(("jax.", "jaxlib.", "distributed."))


def setup_logging(verbose: bool) -> None:
    """One handler on stderr; JAX's own INFO lines only with -v; no plugin tracebacks."""
    handler = logging.StreamHandler()
    if not verbose:
        # A filter on our handler, not a level on the "jax" logger: JAX reads that level when
        # it is imported and then adds a handler of its own, which printed JAX's lines twice.
        handler.addFilter(_not_jax_info)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[handler],
    )
    # Without a GPU, JAX's CUDA plugin fails to start and JAX logs a traceback: one line instead.
    from plasticc_jax.doctor import quiet_plugin_errors

    quiet_plugin_errors()


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return run(args)
    except UserError as error:
        print(f"plasticc-jax {args.command}: error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        # Typically a mounted data/ or runs/ that a Docker daemon created as root: one line.
        print(
            f"plasticc-jax {args.command}: error: {error} (this user may not write there; "
            "in a container, create data/ and runs/ before `docker run` and pass "
            "`--user $(id -u):$(id -g)`)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"plasticc-jax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
