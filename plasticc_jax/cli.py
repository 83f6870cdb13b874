"""The `plasticc-jax` command line: parses options and calls one stage function.

Every stage is `stage(config, workdir)`; relative paths in the config resolve against workdir.
User mistakes (`UserError`) print one line (one per invalid config value) and exit with status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import logging
import math
import os
import resource
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from plasticc_jax import __version__, config_io, interrupts, plasticc, processes
from plasticc_jax import config as config_lib
from plasticc_jax.doctor import (
    CACHE_DIR_ENV,
    check_xla_flags,
    jax_setting_problem,
    keep_cpu_platform,
    out_of_memory_problem,
    use_compilation_cache,
)
from plasticc_jax.errors import UserError
from plasticc_jax.interrupts import Terminated
from plasticc_jax.io_utils import CONTAINER_HINT, WRITE_ERRNOS, folder_lock

log = logging.getLogger("plasticc_jax")
DESCRIPTION = (
    "Find unknown transients in survey light curves: prepare PLAsTiCC-format files, train the "
    "VAE, fit and evaluate the detector, then score, replay or review new data (README.md)."
)

# Convenience flags (the seed pipeline's interface) and the config fields they set.
SHORTCUTS: dict[str, str] = {
    "protocol": "data.protocol",
    "latent_dim": "model.latent_dim",
    "batch_size": "train.batch_size",
    "max_epochs": "train.max_epochs",
    "run_dir": "run_dir",
}
# The shortcuts each stage reads; every stage accepts all of them, so that one ARGS of make
# serves `make prepare train evaluate`.
SHORTCUTS_USED: dict[str, tuple[str, ...]] = {
    "download": (),
    "prepare": ("protocol",),
    "train": tuple(SHORTCUTS),
    "evaluate": ("protocol", "run_dir"),
    "validate": tuple(SHORTCUTS),
}


def _number(kind: type, check: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)` that passes `check`, else a usage error saying `wanted`."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"{text!r}: give {wanted}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a whole number of 1 or more")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_finite_float = _number(float, math.isfinite, "a finite number")
_port = _number(int, lambda v: 0 <= v <= 65535, "a port from 0 (any free one) to 65535")


def _folder(text: str) -> Path:
    """A folder's path: an existing file there is a usage error (stages would fail later)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file: give a folder")
    return path


def _add_config_args(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="preset name (WORKDIR/configs/NAME.py, else the package's plasticc_jax/configs/) "
        "or a preset file's path (default: default; `evaluate --run-dir` without "
        "it: the run's own config, evaluation settings included)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set data.anomaly_classes=6,64 (repeatable)",
    )
    parser.add_argument(
        "--workdir", type=_folder, default=Path("."), help="project folder (default: here)"
    )
    for flag, target in SHORTCUTS.items():
        text = f"same as --set {target}=..."
        if flag == "protocol":
            text += f" ({' or '.join(plasticc.PROTOCOLS)})"
        if flag not in SHORTCUTS_USED[stage]:
            text += f" (not used by {stage}: accepted so that one make ARGS serves every stage)"
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=text)


def _add_dask_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster: its scheduler (tcp://host:8786), a scheduler file (.json), "
        "or local:N for N worker processes on this machine (README: Beyond one machine)",
    )
    parser.add_argument(
        "--part-mb",
        type=_positive_float,
        default=None,
        help="with --dask: MB of plain CSV per task (default 64; a gzip file is one task)",
    )


def build_config(
    args: argparse.Namespace, base: config_lib.Config | None = None
) -> config_lib.Config:
    """The preset (or `base`, a run's own config) with the command line's settings."""
    project = getattr(args, "workdir", None) or Path(".")
    config = base if base is not None else config_io.load_preset(args.config or "default", project)
    overrides = list(args.overrides)
    for flag, target in SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        shortcut = f"{target}={value}"
        # The flag wins over a --set of the same field; where they disagree, say so (the --set
        # was dropped without a word: `make ... ARGS="--set data.protocol=sn"` trained rare).
        given = [o for o in args.overrides if o.partition("=")[0].strip() == target]
        if given and config_io.apply_overrides(config, given[-1:]) != config_io.apply_overrides(
            config, [shortcut]
        ):
            log.warning(
                "--%s %s wins over --set %s (the same setting): give one of them",
                flag.replace("_", "-"),
                value,
                given[-1],
            )
        overrides.append(shortcut)
    given = config_io.apply_overrides(config, overrides)
    protocol = _given(args, "protocol")
    if base is None and protocol is not None and given.data.anomaly_classes:
        # Found by a review of the presets: the protocol was dropped without a word.
        unknown = "" if protocol in plasticc.PROTOCOLS else " (no such protocol)"
        log.warning(
            "protocol %s%s is not used: data.anomaly_classes sets the classes (every other "
            "training class known, unless data.known_classes says otherwise)",
            protocol,
            unknown,
        )
    return config_lib.resolve(given)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, as every other user mistake (argparse prints the usage first);
    `--help` still shows it. The command's sub-parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown option names the command whose help lists them."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            message = f"unrecognized arguments: {' '.join(extras)}"
            self.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")
        return parsed


def make_parser() -> argparse.ArgumentParser:
    # Not from __doc__, which `python -OO` strips (found by a type check).
    parser = OneLineParser(prog="plasticc-jax", description=DESCRIPTION)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and the traceback of an error"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in [
        ("download", "fetch the default data (the PLAsTiCC training set) into data/raw"),
        ("prepare", "turn light-curve CSVs into npz tensors, splits and statistics"),
        ("train", "train the VAE and write a run directory with checkpoints"),
        ("evaluate", "encode, fit the anomaly detector, write scores, metrics and figures"),
        ("validate", "choose the detector: leave-one-known-class-out validation (no test data)"),
    ]:
        stage = commands.add_parser(name, help=text, description=text)
        _add_config_args(stage, name)
        if name == "prepare":
            _add_dask_args(stage)

    score = commands.add_parser(
        "score",
        help="score new light-curve files with a trained run",
        description="Score light-curve files (all, or as of a date) with a trained, evaluated "
        "run: one row per object, not sorted by score (its `rank`: 1 is the most anomalous), "
        "with its rejections beside (docs/evaluation.md).",
    )
    score.add_argument("--run", type=Path, required=True, help="run directory (evaluated)")
    score.add_argument("--lightcurves", type=Path, nargs="+", required=True, help="CSV(.gz) files")
    score.add_argument("--metadata", type=Path, nargs="+", required=True, help="metadata CSV(.gz)")
    score.add_argument("--output", type=Path, required=True, help="output table (.parquet/.csv)")
    score.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="threads gridding the input (default: the run's data.workers)",
    )
    _add_dask_args(score)
    score.add_argument(
        "--as-of",
        type=_finite_float,
        default=None,
        metavar="MJD",
        help="score each object detected by this MJD with only its observations up to it "
        "(docs/early.md)",
    )
    score.add_argument(
        "--threshold-from",
        type=Path,
        metavar="VAL_REPLAY",
        help="with --as-of: flag by thresholds set on this replay of the run's val split (made "
        "with replay --split val), per days since the first detection and depth, as replay "
        "--threshold-from does (default: the detector's threshold; docs/early.md)",
    )
    score.add_argument(
        "--review-labels",
        type=Path,
        nargs="?",
        const=True,
        metavar="LABELS",
        help="also rank the output with a review's answers (review_score, review_rank): its "
        "labels file or the page's CSV export; default file: <run>/review/labels.jsonl",
    )

    replay = commands.add_parser(
        "replay",
        help="replay light-curve files night by night: re-score objects with new data, write "
        "each night's candidates (resumes after an interruption)",
        description="Replay light-curve files night by night as a broker would (docs/early.md).",
    )
    replay.add_argument("lightcurves", type=Path, nargs="+", help="light-curve CSV(.gz) files")
    replay.add_argument("--run", type=Path, required=True, help="run directory (evaluated)")
    replay.add_argument("--metadata", type=Path, nargs="+", required=True, help="metadata files")
    replay.add_argument("--output", type=Path, required=True, help="output folder")
    replay.add_argument(
        "--close-after",
        type=float,
        default=None,
        metavar="NIGHTS",
        help="close an object after this many nights without an observation; later data for "
        "it is rejected (default: never close)",
    )
    replay.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="replay only the objects of this split of the run's prepared dataset",
    )
    replay.add_argument("--last-night", type=int, help="stop after this night")
    replay.add_argument(
        "--threshold-from",
        type=Path,
        metavar="VAL_REPLAY",
        help="flag by thresholds set on this replay of the run's val split (made with --split "
        "val), per days since the first detection and depth, so that the flag's rate holds "
        "across the ages of a light curve (default: the detector's threshold; docs/early.md)",
    )
    replay.add_argument(
        "--groups",
        type=int,
        default=1,
        metavar="K",
        help="for an input larger than memory: replay the objects in K groups, one after the "
        "other (memory holds about 100 bytes a row of one group), each night's candidates "
        "merged at the end (default 1: all at once, each night written as it is replayed)",
    )
    replay.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="J",
        help="with --groups K: replay J <= K groups at once, each in a process of its own (memory "
        "holds J groups; about one process a core; default 1)",
    )
    replay.add_argument(
        "--workdir", type=_folder, default=Path("."), help="project folder (default: here)"
    )

    review = commands.add_parser(
        "review",
        help="review candidates in a local web page; each answer re-ranks the rest",
        description="Serve a local page showing the next candidate of a run's score table; "
        "every answer is saved at once and re-ranks the rest (active anomaly detection).",
    )
    review.add_argument("--run", type=Path, required=True, help="run directory (evaluated)")
    review.add_argument("--scores", type=Path, help="score table to review (default: the run's)")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on")
    review.add_argument("--port", type=_port, default=0, help="port (0: a free one)")
    review.add_argument("--no-browser", action="store_true", help="do not open a browser")
    review.add_argument("--labels", type=Path, help="labels file (<run>/review/labels.jsonl)")
    review.add_argument("--top", type=int, help="review only the top N of the static ranking")
    review.add_argument("--workdir", type=_folder, help="project folder (default: from the run)")
    review.add_argument(
        "--lightcurves",
        type=Path,
        nargs="+",
        help="the light-curve files a --scores table of new objects was scored from: shows "
        "their light curves (the run's prepared dataset holds only its own objects')",
    )
    review.add_argument("--metadata", type=Path, nargs="+", help="with --lightcurves: metadata")
    review.add_argument(
        "--as-of",
        type=_finite_float,
        metavar="MJD",
        help="with --lightcurves: the date the table was scored as of (score --as-of; a "
        "replay's candidates/night=N: that night's end, unless given)",
    )
    review.add_argument(
        "--simulate",
        action="store_true",
        help="no page: a simulated expert (the test split's true labels) measures the active "
        "loop against the static ranking (reports/review_simulation.*)",
    )
    review.add_argument(
        "--validation",
        action="store_true",
        help="with --simulate: the simulated expert on the leave-one-known-class-out validation "
        "(known classes only), comparing the candidate active policies "
        "(<run>/validation/review_validation.*)",
    )
    review.add_argument(
        "--draws",
        type=int,
        help="--simulate: pools per fraction (default 20; with --validation: per fold, 4)",
    )

    doctor = commands.add_parser(
        "doctor",
        help="report JAX, its backend and devices; test each",
        description="Report JAX, its backend and devices, and run a small computation on each.",
    )
    doctor.add_argument("--expect-gpu", action="store_true", help="fail unless JAX sees a GPU")
    return parser


def run(args: argparse.Namespace) -> int:
    check_xla_flags()  # before JAX's first computation
    if getattr(args, "part_mb", None) is not None and getattr(args, "dask", None) is None:
        log.warning("--part-mb is for --dask (the size of each task): ignored without it")
    if args.command == "doctor":
        from plasticc_jax.doctor import doctor

        return doctor(expect_gpu=args.expect_gpu)
    if args.command == "score":
        from plasticc_jax.score import score

        if args.review_labels is not None and args.dask is not None:
            # rerank_scored rewrites one table file; --dask writes a Parquet dataset (a folder).
            raise UserError(
                "--review-labels needs one score table file, and --dask writes a Parquet "
                "dataset (a folder): run score without --dask, or write the dataset "
                "(pd.read_parquet) to one .parquet file and rank it with "
                "plasticc_jax.review.rescore.rerank_scored"
            )
        rerank = None
        if args.review_labels is not None:
            from plasticc_jax.review.labels import LABELS_FILE
            from plasticc_jax.review.rescore import check_labels, rerank_scored

            labels = args.run / LABELS_FILE if args.review_labels is True else args.review_labels
            check_labels(labels)  # before scoring: a bad labels file must not cost a whole run

            def rerank(output: Path) -> None:
                try:
                    rerank_scored(args.run, output, labels)
                except UserError as error:  # the scores themselves are written: say so
                    raise UserError(
                        f"{error} (the scores are written, without the review's ranking: {output})"
                    ) from None

        # score logs the backend itself, after the checks that need no JAX. The re-ranking runs
        # under the output's lock that scoring took: another score cannot replace the table in
        # between (its lock was released and taken again).
        score(
            args.run,
            args.lightcurves,
            args.metadata,
            args.output,
            workers=args.workers,
            dask=args.dask,
            part_mb=args.part_mb,
            as_of=args.as_of,
            threshold_from=args.threshold_from,
            then=rerank,
        )
        return 0
    if args.command == "review":
        return review(args)
    if args.command == "replay":
        return replay(args)

    workdir = args.workdir.resolve()
    base = None
    run_dir = _given(args, "run_dir")
    if args.command == "evaluate" and args.config is None and run_dir is not None:
        # `evaluate --run-dir RUN` (or --set run_dir=RUN): the run as it was trained, its
        # evaluation settings too (the default preset's were used: an early run fused with the
        # default fusion); --set and --config still choose others.
        from plasticc_jax import runs

        base = runs.read_config(workdir / run_dir)
        _warn_of_another_protocol(args, base)
    config = build_config(args, base)
    _refuse_missing_input(args.command, config, workdir)
    if args.command in ("train", "evaluate"):
        # The stage takes the run directory's lock too; taking it before JAX is imported refuses
        # a second writer at once.
        with folder_lock(workdir / config.run_path, args.command):
            return _run_stage(args.command, config, workdir)
    dask = getattr(args, "dask", None)
    return _run_stage(args.command, config, workdir, dask, getattr(args, "part_mb", None))


def _refuse_missing_input(command: str, config: config_lib.Config, workdir: Path) -> None:
    """The error of a stage whose input was never made (no run to evaluate, no dataset to train
    on), before the run's lock leaves a lock file in a folder the stage would not write."""
    if command == "evaluate" and not (workdir / config.run_path).is_dir():
        from plasticc_jax import runs

        runs.read_config(workdir / config.run_path)
    dataset_dir = workdir / config.data.dataset_dir
    if command == "train" and not dataset_dir.is_dir():  # one being prepared: the lock says so
        from plasticc_jax import dataset

        dataset.read_manifest(dataset_dir)


def _given(args: argparse.Namespace, shortcut: str) -> str | None:
    """The value given for a shortcut's field, as `build_config` reads it: the flag, else the
    last --set of the field (None: not given)."""
    flag = getattr(args, shortcut, None)
    if flag is not None:
        return str(flag)
    given = [o.partition("=") for o in args.overrides]
    sets = [value.strip() for key, _, value in given if key.strip() == SHORTCUTS[shortcut]]
    return sets[-1] if sets else None


def _warn_of_another_protocol(args: argparse.Namespace, run: config_lib.Config) -> None:
    """`evaluate --run-dir RUN --protocol sn` of a `rare` run evaluates `rare` (its network was
    trained without `sn`'s anomalies): said, where it was silent (found by an audit)."""
    asked = _given(args, "protocol")
    if asked and asked != run.data.protocol:
        log.warning(
            "evaluate uses the run's own protocol, %s, not %s given now: evaluate a run trained "
            "for %s (plasticc-jax train --protocol %s)",
            run.data.protocol,
            asked,
            asked,
            asked,
        )


def _run_stage(
    command: str,
    config: config_lib.Config,
    workdir: Path,
    dask: str | None = None,
    part_mb: float | None = None,
) -> int:
    if command in ("train", "evaluate", "validate"):
        from plasticc_jax.doctor import log_backend

        log_backend()
    if command == "download":
        from plasticc_jax.download import download

        download(config, workdir)
    elif command == "prepare":
        from plasticc_jax.prepare import prepare

        prepare(config, workdir, dask=dask, part_mb=part_mb)
    elif command == "train":
        from plasticc_jax.train import train

        train(config, workdir)
    elif command == "evaluate":
        from plasticc_jax.evaluate import evaluate

        evaluate(config, workdir)
    elif command == "validate":
        from plasticc_jax.validate import validate

        validate(config, workdir)
    return 0


def replay(args: argparse.Namespace) -> int:
    from plasticc_jax import runs
    from plasticc_jax.dataset import load_split, read_manifest
    from plasticc_jax.doctor import log_backend
    from plasticc_jax.replay import replay as run_replay

    log_backend()
    objects, fingerprint = None, None
    if args.split:
        dataset = args.workdir / runs.read_config(args.run).data.dataset_dir
        if not (dataset / "manifest.json").is_file():
            raise UserError(
                f"--split {args.split}: no prepared dataset at {dataset}; the run's dataset is "
                "found from the project folder: give it with --workdir (now "
                f"{args.workdir.resolve()})"
            )
        objects = load_split(dataset, args.split).object_id
        fingerprint = read_manifest(dataset).get("fingerprint")
    manifest = run_replay(
        args.run,
        args.lightcurves,
        args.metadata,
        args.output,
        close_after=args.close_after,
        objects=objects,
        last_night=args.last_night,
        groups=args.groups,
        jobs=args.jobs,
        split=args.split,
        dataset=fingerprint,
        threshold_from_replay=args.threshold_from,
    )
    nights = manifest["nights"]
    if not manifest["rows"]:  # every object rejected at load (found by a review: "night -1")
        rejected = sum(manifest["rejected_at_load"].values())
        print(
            f"nothing replayed: no observations to replay ({rejected} objects rejected at load: "
            f"{args.output / 'rejected_at_load.csv'})"
        )
        return 0
    print(
        f"replayed through night {manifest['finished_through']}: {len(nights)} nights with data, "
        f"{sum(n['rescored'] for n in nights)} re-scorings, "
        f"{sum(n['flagged'] for n in nights)} flagged; {args.output / 'manifest.json'}"
    )
    return 0


def review(args: argparse.Namespace) -> int:
    """`plasticc-jax review`: serve the page until Ctrl-C, or run the simulated expert."""
    if args.validation and not args.simulate:
        raise UserError("--validation goes with --simulate")
    # Options of the page: --simulate serves none (they were ignored without a word).
    page = {
        "--scores": args.scores is not None,
        "--top": args.top is not None,
        "--labels": args.labels is not None,
        "--host": args.host != "127.0.0.1",
        "--port": args.port != 0,
        "--no-browser": args.no_browser,
        "--workdir": args.workdir is not None and not args.validation,
        "--lightcurves": args.lightcurves is not None,
        "--metadata": args.metadata is not None,
        "--as-of": args.as_of is not None,
    }
    ignored = [flag for flag, given in page.items() if given]
    if args.simulate and ignored:
        reviews = (
            "the known classes' validation folds"
            if args.validation
            else "the run's own test split with its true labels"
        )
        raise UserError(
            f"{', '.join(ignored)}: not with --simulate, which serves no page and reviews "
            f"{reviews}, keeping no answers"
            + (" (--workdir goes with --validation)" if "--workdir" in ignored else "")
        )
    if args.draws is not None and not args.simulate:
        raise UserError("--draws goes with --simulate")
    if args.draws is not None and args.draws < 1:
        raise UserError(f"--draws {args.draws}: at least one draw")
    if args.validation:
        from plasticc_jax.review.validation import N_DRAWS, simulate_validation

        result = simulate_validation(args.run, n_draws=args.draws or N_DRAWS, workdir=args.workdir)
        best = result["policies"][result["best"]]
        print(
            f"best policy on the validation: {result['best']} ({best['policy']}), "
            f"{best['found'][str(result['n_shown'])]:.1f} anomalies in the first "
            f"{result['n_shown']} shown, {best['ratio']:.2f}x the static ranking; "
            f"{args.run / 'validation' / 'review_validation.md'}"
        )
        return 0
    if args.simulate:
        from plasticc_jax.review.simulate import N_DRAWS as TEST_DRAWS
        from plasticc_jax.review.simulate import simulate

        summary = simulate(args.run, n_draws=args.draws or TEST_DRAWS)
        target = summary["target"]
        verdict = "met" if target["met"] else "missed"
        print(
            f"active loop: {target['active_mean']:.1f} anomalies in the first {target['shown']} "
            f"shown, static ranking {target['static_mean']:.1f} "
            f"({100 * target['anomaly_fraction']:g}% pool; goal {verdict}); "
            f"{args.run / 'reports' / 'review_simulation.md'}"
        )
        return 0
    from plasticc_jax.early import check_as_of
    from plasticc_jax.io_utils import check_input_files
    from plasticc_jax.review.pool import CurveFiles
    from plasticc_jax.review.server import browser_opened, open_review

    files = None
    if (args.lightcurves is None) != (args.metadata is None):
        raise UserError("--lightcurves and --metadata go together (the files scored)")
    if args.as_of is not None and args.lightcurves is None:
        raise UserError("--as-of goes with --lightcurves (the files scored as of that date)")
    if args.lightcurves is not None:
        check_input_files([*args.lightcurves, *args.metadata])
        if args.as_of is not None:
            check_as_of(args.as_of, "--as-of")
        files = CurveFiles(tuple(args.lightcurves), tuple(args.metadata), args.as_of)
    server = open_review(
        args.run,
        args.scores,
        host=args.host,
        port=args.port,
        labels=args.labels,
        workdir=args.workdir,
        top=args.top,
        files=files,
    )
    if not _loopback(args.host):
        log.warning("%s", _exposed_warning(args.host, str(server.server_address[0])))
    print(f"review the candidates at {server.url}  (Ctrl-C stops)", flush=True)
    with server, contextlib.ExitStack() as browser:
        if not args.no_browser:
            browser.enter_context(browser_opened(server.url, server.session.store.path.parent))
        try:
            server.serve_forever()
        except KeyboardInterrupt as interrupt:
            print(f"review stopped; the answers are in {server.session.store.path}")
            if isinstance(interrupt, Terminated):  # `docker stop`, a time limit: 143 (an audit)
                raise
            interrupts.clear()  # Ctrl-C is how the server is stopped: not an interruption
    return 0


def _exposed_warning(host: str, bound: str) -> str:
    """The warning of a review listening beyond this machine on `host` (as given), bound to
    `bound` (the server's address): where others reach it (the URL names a wildcard address's
    loopback, `server.WILDCARD_LOOPBACK`, and any other as bound). The bound address decides:
    "", "0" and "::0" are wildcards too."""
    from plasticc_jax.review.server import WILDCARD_LOOPBACK

    where = (
        f"with this machine's name in place of {WILDCARD_LOOPBACK[bound]} in the URL below"
        if bound in WILDCARD_LOOPBACK
        else "at the URL below"
    )
    return (
        f"listening on {host}: other machines can reach the page ({where}), and its token "
        "travels in plain HTTP; keep the default 127.0.0.1 (and an SSH tunnel) unless the "
        "network is trusted"
    )


def _loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1, ::ffff:127.0.0.1, localhost)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)  # an IPv4 address written in IPv6
    return (mapped or address).is_loopback


def _not_jax_info(record: logging.LogRecord) -> bool:
    """Hide JAX's INFO lines, e.g. each backend it could not start ("Unable to initialize..."),
    and Dask's (every worker and connection opened and closed)."""
    if record.levelno >= logging.WARNING:
        return True
    return not record.name.startswith(("jax.", "jaxlib.", "distributed."))


# What Orbax logs (through absl) that the command's own outcome already says, or that does not
# matter to it: the traceback of each background thread of a failed checkpoint write (about a
# hundred lines on a full disk, before the one-line error: the failure is raised again where the
# write is awaited, and reported), and a step's damaged `_CHECKPOINT_METADATA` (Orbax's own record
# of the step, which nothing here reads: the parameters are checked by their SHA-256).
_ORBAX_NOISE = ("_SignalingThread.run() raised an exception", "Failed to json parse Metadata file")


def _not_orbax_noise(record: logging.LogRecord) -> bool:
    """Hide `_ORBAX_NOISE` (shown with -v)."""
    return not (record.name == "absl" and any(noise in str(record.msg) for noise in _ORBAX_NOISE))


# Libraries that report, in their own words and tracebacks, the interruption that the command
# reports in one line (a SIGTERM to the whole process group stops Dask's workers too).
_INTERRUPTED_LIBRARIES = ("distributed", "tornado", "asyncio")


def _not_after_a_signal(record: logging.LogRecord) -> bool:
    """Hide the libraries' records of `_INTERRUPTED_LIBRARIES` once Ctrl-C or SIGTERM came
    (shown with -v)."""
    library = record.name.partition(".")[0] in _INTERRUPTED_LIBRARIES
    return not (library and interrupts.received() is not None)


# scikit-learn's warning that its `delayed` ran outside its `Parallel`: it comes of the library's
# own race when estimators fit in threads side by side, as the detector's folds do (a task's
# `warnings.resetwarnings()` empties the process's filters while another call reads them;
# scikit-learn issue 32631), and says nothing to a user.
_SKLEARN_RACE = "`sklearn.utils.parallel.delayed` should be used with"


def _plain_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """`warnings.showwarning`, with JAX's warning of a damaged compilation-cache entry (on
    every run, with a traceback's file and line and no remedy) as one line saying what to do,
    and without scikit-learn's warning of its own threads' race (`_SKLEARN_RACE`)."""

    def explained(message: Warning | str, category: type[Warning], *args: Any) -> None:
        text = str(message)
        if text.startswith(_SKLEARN_RACE):
            return
        if not text.startswith("Error reading persistent compilation cache entry"):
            show(message, category, *args)
            return
        entry = text.split("'")[1] if text.count("'") >= 2 else "a function"
        folder = os.environ.get(CACHE_DIR_ENV, "JAX's compilation cache folder")
        log.warning(
            "%s holds a damaged entry (%s): it is compiled anew on every run; delete that folder "
            "to rebuild the cache (%s)",
            folder,
            entry,
            text.partition(": ")[2][:200],
        )

    explained.plain = True  # type: ignore[attr-defined]
    return explained


def setup_logging(verbose: bool) -> None:
    """One handler on stderr; JAX's own INFO lines only with -v; no plugin tracebacks."""
    handler = logging.StreamHandler()
    if not verbose:
        # A filter on our handler, not a level on the "jax" logger: JAX reads that level when
        # it is imported and then adds a handler of its own, which printed JAX's lines twice.
        handler.addFilter(_not_jax_info)
        handler.addFilter(_not_orbax_noise)
        handler.addFilter(_not_after_a_signal)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[handler],
    )
    # Without a GPU, JAX's CUDA plugin fails to start and JAX logs a traceback: one line instead.
    from plasticc_jax.doctor import quiet_plugin_errors

    quiet_plugin_errors()
    if not hasattr(warnings.showwarning, "plain"):  # once per process
        warnings.showwarning = _plain_warnings(warnings.showwarning)
    if not verbose and not hasattr(sys.unraisablehook, "quiets_aftermath"):  # once per process
        sys.unraisablehook = _without_checkpoint_aftermath(sys.unraisablehook)


def _without_checkpoint_aftermath(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """`hook`, silent for what Orbax's background reads report after a checkpoint read failed
    or was interrupted (its event loop closed, the other reads' errors): up to 200 tracebacks
    around the one-line error that names the damaged checkpoint (found by an audit); and for a
    signal's exception that Python could not raise (it is delivered again: `interrupts`). `-v`
    shows them."""

    def quiet(unraisable: Any) -> None:
        error = str(unraisable.exc_value)
        closed = unraisable.exc_type is RuntimeError and error == "Event loop is closed"
        # An event loop that Ctrl-C cut short while it was made, collected half built.
        half_built = getattr(unraisable.object, "__qualname__", "").endswith("EventLoop.__del__")
        read = error.startswith("Encountered error while reading array index")
        # Ctrl-C or SIGTERM raised in a garbage collector's callback (JAX's): recorded, and
        # delivered again (`interrupts`), so not lost by being silent.
        signal_raised = isinstance(unraisable.exc_value, KeyboardInterrupt)
        if not (closed or half_built or read or signal_raised):
            hook(unraisable)

    quiet.quiets_aftermath = True  # type: ignore[attr-defined]
    return quiet


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.verbose)
    keep_cpu_platform()
    use_compilation_cache()
    processes.thread_lock_for_progress_bars()
    with interrupts.handled():
        code = _run_reporting_errors(args)
    if argv is None:  # the program itself, about to exit
        interrupts.ending(args.command)
        if code and not args.verbose:
            _quiet_shutdown()
    return code


def _quiet_shutdown() -> None:
    """After the one-line error the process ends, while the background threads and coroutines
    of the libraries (Orbax's checkpoint writes, Dask's connections) wind down and print their
    own tracebacks of the same failure, hundreds of lines after a full disk. `-v` keeps them."""
    for name in ("asyncio", "absl", "distributed"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None
    warnings.simplefilter("ignore")


def _run_reporting_errors(args: argparse.Namespace) -> int:
    """`run`, with every user mistake and refusal, and an interrupt, as one line and its exit
    status."""
    try:
        return _run_reporting_mistakes(args)
    except Exception:
        # What a Ctrl-C or SIGTERM cut short may fail in its own way: an import of a library's
        # compiled module raised "initialization failed" (tensorstore's, under JAX's Orbax).
        signum = interrupts.received()
        if signum is None:
            raise
        logging.getLogger(__name__).debug("", exc_info=True)
        return _stopped(args, signum == signal.SIGTERM)


def _stopped(args: argparse.Namespace, terminated: bool) -> int:
    """The one line of an interrupted command; its exit status (130, or 143 after SIGTERM)."""
    line, status = interrupts.stop_line(args.command, terminated)
    print(line, file=sys.stderr)
    return status


def _run_reporting_mistakes(args: argparse.Namespace) -> int:
    """`run`, with every user mistake and refusal as one line and its exit status."""

    def error(*problems: str, status: int) -> int:
        for problem in problems:
            print(f"plasticc-jax {args.command}: error: {problem}", file=sys.stderr)
        return status

    try:
        code = run(args)
        interrupts.check()  # a signal whose exception was swallowed where it was raised
        return code
    except UserError as mistake:
        # One line per problem (an invalid config may have several), each saying what to do.
        return error(*(getattr(mistake, "problems", None) or [str(mistake)]), status=2)
    except PermissionError as refused:
        return error(_permission_problem(refused), status=1)
    except OSError as refused:
        # The file system refused (a path that cannot hold files, a full disk): one line naming
        # the path; the traceback with -v.
        logging.getLogger(__name__).debug("", exc_info=True)
        return error(_file_system_problem(refused), status=1)
    except KeyboardInterrupt as interrupt:
        return _stopped(args, isinstance(interrupt, Terminated))
    except ValueError as failure:
        problem = jax_setting_problem(failure)
        if problem is None:
            raise
        return error(problem, status=2)
    except (RuntimeError, MemoryError) as failure:
        problem = out_of_memory_problem(failure)
        if problem is None:
            raise
        logging.getLogger(__name__).debug("", exc_info=True)
        return error(problem, status=1)


def _file_too_large_remedy() -> str:
    """What to do about EFBIG: this process's own limit on a file's size (`ulimit -f`; Python
    ignores SIGXFSZ, so the write fails with EFBIG) if it has one, else the file system's."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return (
            f"this process may write no file over {limit} bytes (the shell's `ulimit -f`): "
            "raise that limit and run again"
        )
    return "that file system takes no file this large: write to another one"


def in_container() -> bool:
    """Whether this process runs in a Docker or Podman container (their marker files)."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def _permission_problem(error: PermissionError) -> str:
    """The one line for a refused read or write: an input file this user may not read, or a
    place it may not write (in a container, typically a mounted data/ or runs/ that the Docker
    daemon created as root)."""
    path = error.filename
    unreadable = path is not None and os.path.isfile(path) and not os.access(path, os.R_OK)
    line = f"{error} (this user may not {'read it' if unreadable else 'read or write there'}"
    if in_container() and not unreadable:
        line += f"; {CONTAINER_HINT}"
    return line + ")"


def _file_system_problem(error: OSError) -> str:
    """The one line for an OSError: a full disk, or a file where a folder goes, says so and what
    to do, naming the file."""
    if error.errno in WRITE_ERRNOS and error.filename is not None:
        remedy = (  # over a size limit for one file: room does not help
            _file_too_large_remedy()
            if error.errno == errno.EFBIG
            else "make room there and run again"
        )
        return f"{error.strerror} writing {error.filename}: {remedy}"
    if isinstance(error, IsADirectoryError) and error.filename is not None:
        # A rename onto a folder names it second (`os.replace(tmp, path)`).
        path = error.filename2 or error.filename
        return f"{path} is a folder, where a file is needed: move it or choose another path"
    if isinstance(error, (FileExistsError, NotADirectoryError)) and error.filename is not None:
        path = Path(error.filename)
        file = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if file is not None:  # "[Errno 17] File exists: 'x'" for a run folder x/run, before
            return f"{file} is a file, where a folder is needed: move it or choose another path"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
