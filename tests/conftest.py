"""Shared fixtures, and the JAX settings of the test session.

- `raw_files`: synthetic light-curve and metadata files in the unblinded PLAsTiCC format.
- `project`: a project folder with those files in `data/raw`, prepared with the tiny preset.
- `tiny_run`: that project trained and evaluated once through the command line (tiny preset).

Session fixtures are read only: a test that changes a dataset or a run works on a copy
(`copy_project`). JAX runs on the CPU, and compiles into a cache that lives for this session only
(empty at the start, removed at the end) and is shared with the processes tests start, so a
program compiled once is not compiled again, e.g. by a child process that trains the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="plasticc-jax-tests-")
    _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]
else:
    _OWN_CACHE = ""
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

from plasticc_jax import cli
from plasticc_jax import config as config_lib
from plasticc_jax.synthetic import write_synthetic

N_OBJECTS = 400


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE and not hasattr(config, "workerinput"):  # the xdist controller, or no xdist
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def tiny_config(*overrides: str) -> config_lib.Config:
    """The tiny preset with `section.field=value` overrides, resolved."""
    preset = config_lib.load_preset("tiny")
    return config_lib.resolve(config_lib.apply_overrides(preset, list(overrides)))


def copy_project(source: Path, dest: Path, *, run: bool = False) -> Path:
    """Copy a project's prepared data (and its runs, with `run`) to change it safely."""
    shutil.copytree(source / "data" / "processed", dest / "data" / "processed")
    (dest / "data" / "raw").symlink_to(source / "data" / "raw")
    if run:
        shutil.copytree(source / "runs", dest / "runs")
    return dest


@pytest.fixture(scope="session")
def raw_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(metadata, light-curve) files of N_OBJECTS synthetic objects of every training class."""
    return write_synthetic(tmp_path_factory.mktemp("raw"), N_OBJECTS, fmt="unblinded", seed=0)


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, raw_files: tuple[Path, Path]) -> Path:
    """A project folder: the synthetic files in data/raw, prepared (tiny preset)."""
    workdir = tmp_path_factory.mktemp("project")
    shutil.copytree(raw_files[0].parent, workdir / "data" / "raw")
    assert cli.main(["prepare", "--config", "tiny", "--workdir", str(workdir)]) == 0
    return workdir


@dataclass(frozen=True)
class TinyRun:
    """The shared run: its folders, config and outputs, and what the forests were fitted on."""

    workdir: Path
    run_dir: Path
    dataset_dir: Path
    config: config_lib.Config
    table: pd.DataFrame
    metrics: dict
    detector_params: dict
    forest_fits: list[np.ndarray]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, project: Path) -> TinyRun:
    """`project` copied, trained and evaluated through the command line (tiny preset)."""
    from sklearn.ensemble import IsolationForest

    workdir = copy_project(project, tmp_path_factory.mktemp("tiny-run"))
    args = ["--config", "tiny", "--workdir", str(workdir)]
    assert cli.main(["train", *args]) == 0
    fits: list[np.ndarray] = []
    # Record what every forest is fitted on. The class's own fit is wrapped (not subclassed): the
    # saved forest must stay a plain IsolationForest, the only type `score` trusts on load.
    original_fit = IsolationForest.fit

    def recording_fit(self, X, y=None, sample_weight=None):
        fits.append(np.array(X))
        return original_fit(self, X, y, sample_weight)

    IsolationForest.fit = recording_fit
    try:
        assert cli.main(["evaluate", *args]) == 0
    finally:
        IsolationForest.fit = original_fit
    config = tiny_config()
    run_dir = workdir / config.run_path
    return TinyRun(
        workdir=workdir,
        run_dir=run_dir,
        dataset_dir=workdir / config.data.dataset_dir,
        config=config,
        table=pd.read_parquet(run_dir / "scores.parquet"),
        metrics=json.loads((run_dir / "metrics.json").read_text()),
        detector_params=json.loads((run_dir / "models" / "anomaly.json").read_text()),
        forest_fits=fits,
    )
