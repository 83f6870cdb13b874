"""Shared fixtures, and the settings of the test session.

The shared project (`raw_files`, `project`, `tiny_run`): synthetic PLAsTiCC files, prepared,
trained and evaluated (without figures) through the command line with the tiny preset. It is
built once per session by a child process: under pytest-xdist (`make test` runs the test files in
two workers, which share it) the controller starts it at once, while the workers start and
collect, and the workers then say whether the collected tests need it; without xdist it starts
as soon as the collected tests are known to need it. Either way it is made while the first tests
run; tests that need it run last. It is read only: a test that changes a dataset or a run works
on a copy (`copy_project`).

JAX settings (environment variables, so every process of the session inherits them; a variable
already set wins): JAX runs on the CPU (`JAX_PLATFORMS=`, empty, runs the tests on a GPU,
without the CPU-only flags that follow); XLA compiles without its optimisations (`TEST_XLA_FLAGS`),
because compiling is most of the time of a test and the programs are tiny (measured: the tiny
train step compiles in about 1 s instead of 6), and runs each program on one thread, as the two
workers already fill the two cores (measured, `make test` side by side, three pairs: 0.93x the
time, 0.89-0.94x); compiled programs go to a cache of this session
only, so a program is compiled once, also when another process trains the same model. The session
folder (`PLASTICC_JAX_TEST_SESSION`: the cache and the shared project) is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _test_xla_flags() -> str:
    """`TEST_XLA_FLAGS` for the installed XLA: one that does not know a flag aborts the process
    at its first computation (jaxlib 0.12, Python 3.12 and later, knows no fusion emitters flag:
    a test session there crashed without a word)."""
    flags = [
        "--xla_backend_optimization_level=0",
        "--xla_cpu_parallel_codegen_split_count=1",
        "--xla_cpu_multi_thread_eigen=false",
    ]
    major_minor = tuple(int(part) for part in version("jaxlib").split(".")[:2])
    if major_minor < (0, 12):
        flags.insert(1, "--xla_cpu_use_fusion_emitters=false")
    return " ".join(flags)


TEST_XLA_FLAGS = _test_xla_flags()
_OWNER = "PLASTICC_JAX_TEST_SESSION" not in os.environ  # xdist workers inherit the folder
if _OWNER:
    os.environ["PLASTICC_JAX_TEST_SESSION"] = tempfile.mkdtemp(prefix="plasticc-jax-tests-")
SESSION = Path(os.environ["PLASTICC_JAX_TEST_SESSION"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One OpenMP thread a process: the two workers already fill the two cores, and oversubscribed
# OpenMP pools spin (measured: a 10-tree gradient-boosted fit 2.3 s instead of 0.2 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
if os.environ["JAX_PLATFORMS"] == "cpu":  # XLA's CUDA plugin aborts on the CPU-only flags
    os.environ.setdefault("XLA_FLAGS", TEST_XLA_FLAGS)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(SESSION / "jax-cache"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

# The project is imported after the settings above (JAX reads them when it is first imported).
from plasticc_jax import cli, config_io  # noqa: E402
from plasticc_jax import config as config_lib  # noqa: E402
from plasticc_jax.io_utils import atomic_path  # noqa: E402
from plasticc_jax.synthetic import write_synthetic  # noqa: E402

N_OBJECTS = 400
# The shared copy of the real PLAsTiCC training set beside the checkout, or the mirror; tests
# that use it skip when it is absent. Never copied into the repository.
REAL_DATA = Path(
    os.environ.get(
        "PLASTICC_JAX_MIRROR",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "plasticc_snmachine",
    )
)
SHARED = SESSION / "project"  # the shared project folder
# How the shared run (`tiny_run`) is evaluated: without figures (the test of the figures
# evaluates a copy with them).
SHARED_OVERRIDES = ("eval.figures=false",)
_SHARED_FIXTURES = frozenset({"raw_files", "project", "tiny_run", "tiny_early_run"})
# The shared early-detection run (`tiny_early_run`): the tiny preset with the settings of the
# `early` preset (staged rows, partial light curves; no Gaussian-process features, and the
# preset's components and fusion), on the same synthetic files.
_EARLY = config_io.load_preset("early")
EARLY_OVERRIDES = (
    "name=tiny-early",
    "data.processed_dir=data/processed-early",
    "data.stages=5,20",
    "train.partial_curves=true",
    f"data.gp_features={str(_EARLY.data.gp_features).lower()}",
    f"eval.components={','.join(_EARLY.eval.components)}",
    f"eval.fusion={','.join(_EARLY.eval.fusion)}",
)
# What the collected tests need of the shared project ("project", "early" or "none"), written
# by the xdist workers after collecting; the controller's builder reads it.
WANTED = SESSION / "wanted"
# The files of the shared project that take longest (review servers, a browser, scores of the
# run), longest first: handed out first among those, so that the two workers end together.
_LONGEST_SHARED = ("test_review.py", "test_integrity.py", "test_review_browser.py")
_BUILD_TIMEOUT_S = 600
_builder: subprocess.Popen | None = None
_builder_waits = False  # the builder waits for `WANTED`


def rewrite_shard(path: Path, arrays: dict) -> None:
    """Write a changed shard as prepare writes one: its SHA-256 in the dataset's manifest too
    (a shard changed behind the manifest's back is refused; tests that feed bad data use this)."""
    from plasticc_jax.io_utils import sha256_file
    from plasticc_jax.shards import write_npz

    write_npz(path, arrays)
    manifest_path = path.parent.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shard_sha256"][f"shards/{path.name}"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def running(pid: int) -> bool:
    """Whether process `pid` runs: not ended, nor a zombie that nobody has reaped (an orphan's,
    where the container's first process does not reap: /proc still lists it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return status.split("State:")[1].split()[0] != "Z"


def tiny_config(*overrides: str) -> config_lib.Config:
    """The tiny preset with `section.field=value` overrides, resolved."""
    preset = config_io.load_preset("tiny")
    return config_lib.resolve(config_io.apply_overrides(preset, list(overrides)))


def copy_project(source: Path, dest: Path, *, run: bool = False) -> Path:
    """Copy a project's prepared data (and, with `run`, its tiny-preset run) to change it safely.

    Only that run is copied: the builder may still be writing the early run beside it.
    """
    shutil.copytree(source / "data" / "processed", dest / "data" / "processed")
    (dest / "data" / "raw").symlink_to(source / "data" / "raw")
    if run:
        run_path = tiny_config().run_path
        shutil.copytree(source / run_path, dest / run_path)
    return dest


# ---------------------------------------------------------------------------------------------
# The shared project: built by a child process, waited for by the fixtures.


def build_shared_project(workdir: Path, early: bool | None) -> None:
    """Write, prepare, train and evaluate the shared project (runs in the builder process).

    Leaves `prepared` after prepare and `done` after evaluate (`failed` with the traceback if
    anything fails), and `detector_fits.npz`: the classes of the objects every fit of the
    detector's components saw. Then, with `early`, the early-detection run (`EARLY_OVERRIDES`),
    and `early_done`. `early` None: started before the tests were collected; what they need is
    read from `WANTED` (and the build stops if they need nothing).
    """

    def wanted(stage: str) -> bool:
        """Whether the collected tests need `stage` ("project" or "early"). The project is
        built while the workers collect (unless they said they need nothing); the early run
        waits for their answer."""
        if early is not None:
            return stage == "project" or early
        while stage == "early" and not WANTED.exists():
            time.sleep(0.05)
        return not WANTED.exists() or stage in WANTED.read_text().split()

    try:
        write_synthetic(workdir / "data" / "raw", N_OBJECTS, fmt="unblinded", seed=0)
        args = ["--config", "tiny", "--workdir", str(workdir)]
        assert cli.main(["prepare", *args]) == 0, "prepare failed"
        (workdir / "prepared").touch()
        if not wanted("project"):
            return
        assert cli.main(["train", *args]) == 0, "train failed"
        shared_args = [*args, *(a for o in SHARED_OVERRIDES for a in ("--set", o))]
        from plasticc_jax import detector

        fits: list[np.ndarray] = []
        original = detector.fit_components

        def recording(evidence, labels, names, config):
            fits.append(np.array(labels))
            return original(evidence, labels, names, config)

        detector.fit_components = recording
        assert cli.main(["evaluate", *shared_args]) == 0, "evaluate failed"
        np.savez(workdir / "detector_fits.npz", *fits)
        detector.fit_components = original
        (workdir / "done").touch()
        if not wanted("early"):
            return
        early_args = [*args, *(a for o in EARLY_OVERRIDES for a in ("--set", o))]
        for stage in ("prepare", "train", "evaluate"):
            assert cli.main([stage, *early_args]) == 0, f"{stage} (early) failed"
        (workdir / "early_done").touch()
    except BaseException:
        (workdir / "failed").write_text(traceback.format_exc())
        raise


def _start_builder(early: bool | None) -> None:
    """Start the builder unless a process of this session already did (the first one wins);
    `early`: the collected tests need the early-detection run too (None: not known yet)."""
    global _builder, _builder_waits
    try:
        os.mkdir(SHARED)
    except FileExistsError:
        return
    _builder_waits = early is None
    code = f"import conftest; conftest.build_shared_project(conftest.SHARED, {early})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    with open(SESSION / "builder.log", "wb") as log:
        _builder = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log, env=env)


def _wait_for(marker: str) -> Path:
    """The shared project, once the builder has left `marker` (`prepared`, `done` or
    `early_done`)."""
    deadline = time.monotonic() + _BUILD_TIMEOUT_S
    while not (SHARED / marker).exists():
        if (SHARED / "failed").exists() or time.monotonic() > deadline:
            log = (SESSION / "builder.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"building the shared project failed:\n{log}", pytrace=False)
        time.sleep(0.05)
    return SHARED


_SLOW_MODULE = re.compile(r"^pytestmark = pytest\.mark\.slow\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With `-m "not slow"` (`make test`), a module marked slow as a whole is not even imported
    (its imports, Dask's for one, cost each worker a second)."""
    slow_only = config.option.markexpr == "not slow" and collection_path.suffix == ".py"
    return True if slow_only and _SLOW_MODULE.search(collection_path.read_text()) else None


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test`), the controller starts the build at once, while the
    workers start and collect (seconds); they then say what the collected tests need."""
    if _OWNER and getattr(config.option, "numprocesses", None) and not config.option.collectonly:
        _start_builder(early=None)


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what this session does not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the shared project go last (and start its build, unless the xdist controller
    did); the others keep their order.

    `make test` hands out whole files (`--dist loadfile --no-loadscope-reorder`), so a file with
    any such test goes after every file without one: the workers run those while the project is
    built. Of those, the files that take longest go first, so that the workers end together.
    """
    needs = [_SHARED_FIXTURES & set(getattr(i, "fixturenames", ())) for i in items]
    shared = [i for i, fixtures in zip(items, needs, strict=True) if fixtures]
    early = any("tiny_early_run" in fixtures for fixtures in needs)
    if not _OWNER:  # an xdist worker: tell the controller's builder (they all collect the same)
        with atomic_path(WANTED) as tmp:
            tmp.write_text(("project early" if early else "project") if shared else "none")
    if shared:
        waiting, files = set(shared), {i.path for i in shared}
        longest = {name: rank for rank, name in enumerate(_LONGEST_SHARED)}
        items[:] = sorted(
            items,
            key=lambda i: (
                i.path in files,
                longest.get(i.path.name, len(longest)),
                i in waiting,
            ),
        )
        if not config.option.collectonly:
            _start_builder(early=early)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _builder is not None and _builder_waits and not WANTED.exists():
        _builder.kill()  # started by the controller; no worker said what the tests need
    if _builder is not None:
        # The process that started the build may run out of tests first (an xdist worker whose
        # files use no shared project): it waits for the build that the others wait on. Ctrl-C
        # reaches the builder too (same process group), so an interrupted session ends at once.
        try:
            _builder.wait(timeout=_BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _builder.kill()
            _builder.wait()
    if _OWNER:  # the xdist controller, or pytest without xdist
        shutil.rmtree(SESSION, ignore_errors=True)


@pytest.fixture(scope="session")
def raw_files() -> tuple[Path, Path]:
    """(metadata, light-curve) files of N_OBJECTS synthetic objects of every training class."""
    raw = _wait_for("prepared") / "data" / "raw"
    return raw / "plasticc_train_metadata.csv.gz", raw / "plasticc_train_lightcurves.csv.gz"


@pytest.fixture(scope="session")
def project() -> Path:
    """A project folder: the synthetic files in data/raw, prepared (tiny preset)."""
    return _wait_for("prepared")


@dataclass(frozen=True)
class TinyRun:
    """The shared run: its folders, config and outputs, and the classes every fit of the
    detector's components saw (the first fit is the detector's own, then the out-of-fold ones)."""

    workdir: Path
    run_dir: Path
    dataset_dir: Path
    config: config_lib.Config
    table: pd.DataFrame
    metrics: dict
    detector_params: dict
    detector_fits: list[np.ndarray]


def _load_run(marker: str, *overrides: str) -> TinyRun:
    """A run of the shared project, once the builder has left `marker`."""
    workdir = _wait_for(marker)
    config = tiny_config(*overrides)
    run_dir = workdir / config.run_path
    with np.load(workdir / "detector_fits.npz") as fits:
        detector_fits = [fits[f"arr_{i}"] for i in range(len(fits.files))]
    return TinyRun(
        workdir=workdir,
        run_dir=run_dir,
        dataset_dir=workdir / config.data.dataset_dir,
        config=config,
        table=pd.read_parquet(run_dir / "scores.parquet"),
        metrics=json.loads((run_dir / "metrics.json").read_text()),
        detector_params=json.loads((run_dir / "models" / "detector.json").read_text()),
        detector_fits=detector_fits,
    )


@pytest.fixture(scope="session")
def tiny_run() -> TinyRun:
    """The shared project trained and evaluated through the command line (tiny preset)."""
    return _load_run("done")


@pytest.fixture(scope="session")
def tiny_early_run() -> TinyRun:
    """The shared project's early-detection run (`EARLY_OVERRIDES`: staged rows, partial light
    curves), trained and evaluated through the command line; `detector_fits` is empty."""
    return replace(_load_run("early_done", *EARLY_OVERRIDES), detector_fits=[])


# A process holding a folder lock (`io_utils.folder_lock`), as another command would.
HOLD = """
import sys, time
from plasticc_jax.io_utils import folder_lock
with folder_lock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared"):
    print("locked", flush=True)
    time.sleep(120)
"""


def hold_lock(folder: Path, stage: str, mode: str) -> subprocess.Popen:
    """A process that holds the lock of `folder` until killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), stage, mode], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child
