"""`plasticc-jax doctor`: which JAX is installed, which devices it sees, and whether each computes.

The JAX counterpart of the original pipeline's CUDA check. It prints a short report (plain lines on
stdout: this command's output is the report), runs a small jit-compiled matrix product on every
device and compares it with NumPy, and explains the usual causes when a GPU was expected but JAX
fell back to the CPU. A GPU is expected with `--expect-gpu` and always inside the cuda variant of
the project's container image, which sets `PLASTICC_JAX_CONTAINER=1`.

It also keeps the CUDA plugin quiet where there is no GPU: JAX logs the plugin's failed start
(`cuInit`) with a full traceback, which `PluginErrors` turns into one remembered reason, and
`log_backend` says in one line where the other commands run and why.
"""

from __future__ import annotations

import glob
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import subprocess
import traceback
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)

# Set in the Dockerfile: inside the cuda variant of the image a CPU-only JAX is a failure, not a
# choice; the cpu variant (PLASTICC_JAX_IMAGE_VARIANT=cpu) runs on the CPU by design.
CONTAINER_ENV = "PLASTICC_JAX_CONTAINER"
VARIANT_ENV = "PLASTICC_JAX_IMAGE_VARIANT"
# Environment variables that change which devices JAX uses or how it takes GPU memory.
JAX_ENV = (
    "JAX_PLATFORMS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
    "XLA_FLAGS",
)
# JAX's persistent compilation cache (its own environment variables, read when JAX is imported):
# a program compiled once is reused by every later command (a compile of the default training
# step is most of the first epoch's 20 s on 2 CPU cores); least recently used entries are
# dropped beyond CACHE_MAX_BYTES.
CACHE_DIR_ENV, CACHE_SIZE_ENV = "JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE"
CACHE_MAX_BYTES = 1 << 30
# pip distributions that give JAX its CUDA backend (jax[cuda12] / jax[cuda13]).
CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt")
MATMUL_SIZE = 256
# Relative error allowed against NumPy (float64) for a float32 product at HIGHEST precision.
MATMUL_RTOL = 1e-4

CONTAINER_HINTS = (
    "the container was started without `--gpus all` (docker run --gpus all ...; Podman: "
    "--device nvidia.com/gpu=all after `nvidia-ctk cdi generate`; `make docker-*` pass it)",
    "the NVIDIA Container Toolkit is missing or not configured on the host "
    "(`nvidia-ctk runtime configure --runtime=docker`, then restart Docker); "
    "`docker run --rm --gpus all <image> nvidia-smi` must list the GPU",
)
DRIVER_HINTS = (
    "the NVIDIA driver is too old for the CUDA 12 wheels (they need driver >= 525; "
    "`nvidia-smi` prints the driver version), or no NVIDIA GPU or driver is present",
    "JAX_PLATFORMS is set to `cpu`, or CUDA_VISIBLE_DEVICES hides every GPU",
)


def cuda_install() -> str:
    """The pip command that adds JAX's CUDA backend to this install (its plugin must have the
    same version as jaxlib); in a checkout, `pip install -e '.[cuda]'` does the same."""
    try:
        pinned = f"=={importlib.metadata.version('jax')}"
    except importlib.metadata.PackageNotFoundError:
        pinned = ""
    return f"`pip install 'jax[cuda12]{pinned}'` (in a checkout: `pip install -e '.[cuda]'`)"


def named_platforms(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The platforms `JAX_PLATFORMS` names, in its order (none: JAX's default choice)."""
    return [p.strip() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]


def check_xla_flags(environ: Mapping[str, str] = os.environ) -> None:
    """XLA reads `XLA_FLAGS` as flags (`--name=value ...`), or as the name of a file of them if
    it does not start with `--`: a value that is neither aborted the process at JAX's first
    computation with XLA's own fatal line (a review). Unknown `--xla_*` flags it still aborts on.

    Raises:
        UserError: `XLA_FLAGS` neither starts with `--` nor names a file.
    """
    value = environ.get("XLA_FLAGS", "").strip()
    if value and not value.startswith("--") and not Path(value).is_file():
        raise UserError(
            f"XLA_FLAGS={value!r} is neither flags (--name=value ...) nor a file of them, which "
            "XLA would stop on: fix or unset XLA_FLAGS"
        )


def keep_cpu_platform(environ: MutableMapping[str, str] = os.environ) -> None:
    """`JAX_PLATFORMS` naming accelerators alone (`cuda`): `cpu` added after them, so that JAX
    also starts the CPU, where the Gaussian-process features are fitted (`gp_features`); the
    first named stays the default. Call before JAX is imported; child processes inherit it."""
    named = named_platforms(environ)
    if named and "cpu" not in named:
        environ["JAX_PLATFORMS"] = ",".join([*named, "cpu"])


def use_compilation_cache(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at `$XDG_CACHE_HOME/plasticc_jax/jax` (an absolute
    path; else `~/.cache/...`) unless the environment already names a folder or turns the cache off
    (`JAX_ENABLE_COMPILATION_CACHE=false`); call before JAX is imported. Child processes (Dask
    workers) inherit it. Returns the folder used, None where none is set here.
    """
    if _cache_turned_off(environ):
        return None
    if CACHE_DIR_ENV in environ:  # the user's own folder
        given = Path(environ[CACHE_DIR_ENV])
        if given.exists() and not given.is_dir():
            # JAX warned of a damaged entry at every compile, and the advice to delete the
            # cache's folder meant the user's file (found by an audit).
            log.warning(
                "%s=%s is a file, not a folder: compiling without the cache (name a folder)",
                CACHE_DIR_ENV,
                given,
            )
            environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        return None
    xdg = environ.get("XDG_CACHE_HOME", "")
    try:
        # A relative XDG_CACHE_HOME is invalid (XDG spec: ignored); it made a cache in every
        # folder a command ran from (an audit).
        base = Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache"
        folder = base / "plasticc_jax" / "jax"
        folder.mkdir(parents=True, exist_ok=True)
    except RuntimeError:  # no HOME and no passwd entry for this user: every command's traceback
        return None
    except OSError:  # a read-only home (some containers): compile every time, as before
        return None
    if not os.access(folder, os.W_OK | os.X_OK):  # JAX would warn at every compile
        return None
    environ[CACHE_DIR_ENV] = str(folder)
    environ.setdefault(CACHE_SIZE_ENV, str(CACHE_MAX_BYTES))
    return folder


def _cache_turned_off(environ: Mapping[str, str]) -> bool:
    """Whether JAX_ENABLE_COMPILATION_CACHE is one of JAX's own false values (`bool_env`): with
    "no" or "off" the cache was off, yet doctor named a folder (an audit)."""
    off = ("n", "no", "f", "false", "off", "0")
    return environ.get("JAX_ENABLE_COMPILATION_CACHE", "").lower() in off


# JAX's logger for plugin discovery, and the start of the record it writes when a plugin fails.
PLUGIN_LOGGER = "jax._src.xla_bridge"
PLUGIN_ERROR = "Jax plugin configuration error"


class PluginErrors(logging.Filter):
    """Replaces JAX's traceback for a backend plugin that cannot start by one remembered line.

    Without a GPU (no driver, or a container started without `--gpus all`) the CUDA plugin's
    `initialize()` fails in `cuInit`, and JAX logs that with `logger.exception`: a full traceback,
    on every command. On such a machine that is the expected state, not a crash, so the record is
    dropped, its reason kept for `cpu_reason`, and the traceback logged at DEBUG (shown with -v).
    """

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and str(record.msg).startswith(PLUGIN_ERROR)):
            return True
        plugin = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        error = record.exc_info[1]
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        last = lines[-1] if lines else repr(error)
        self.reasons[plugin] = f"{type(error).__name__}: {last}"[:300]
        log.debug("JAX plugin %s did not start", plugin, exc_info=record.exc_info)
        return False

    def cuda_reason(self) -> str | None:
        """Why the CUDA plugin did not start (None if it did, or was never tried)."""
        return next((r for name, r in self.reasons.items() if "cuda" in name), None)


PLUGIN_ERRORS = PluginErrors()


def quiet_plugin_errors() -> None:
    """Install `PLUGIN_ERRORS` on JAX's logger (before JAX first looks for its devices)."""
    logger = logging.getLogger(PLUGIN_LOGGER)
    if PLUGIN_ERRORS not in logger.filters:
        logger.addFilter(PLUGIN_ERRORS)


def _image_variant() -> str | None:
    """The image variant, "cpu" or "cuda", inside the project's image; None outside it."""
    if os.environ.get(CONTAINER_ENV) != "1":
        return None
    return os.environ.get(VARIANT_ENV, "cuda")


def _gpu_visible() -> bool:
    """Whether the NVIDIA driver exposes a GPU here (the device files JAX itself looks for)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def _cuda_plugins() -> dict[str, str]:
    return {name: v for name in CUDA_PLUGINS if (v := _version(name))}


def cpu_reason() -> str:
    """Why JAX runs on the CPU, in one line (call once JAX has chosen its backend)."""
    variant = _image_variant()
    if variant == "cpu":
        return "this is the image's cpu variant, which has no CUDA (build VARIANT=cuda for a GPU)"
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms and not {"cuda", "gpu"} & set(named_platforms()):
        return f"JAX_PLATFORMS={platforms} selects it"
    if not _cuda_plugins():
        return f"this JAX has no CUDA backend, a CPU-only install: {cuda_install()} adds it"
    hint = "; was the container started with `--gpus all`?" if variant else ""
    if not _gpu_visible():
        return f"no NVIDIA GPU is visible here (no /dev/nvidia*){hint}"
    reason = PLUGIN_ERRORS.cuda_reason() or _gpu_init_error() or "unknown"
    return f"JAX's CUDA backend did not start ({reason}){hint}"


def jax_devices() -> list[Any]:
    """JAX's devices.

    Raises:
        UserError: JAX cannot start a backend (`JAX_PLATFORMS` naming one this install or
            machine lacks); JAX's own error is a traceback (an AssertionError for `cuda`).
    """
    import jax

    try:
        return jax.devices()
    except (RuntimeError, AssertionError) as error:
        platforms = os.environ.get("JAX_PLATFORMS", "")
        setting = f" JAX_PLATFORMS={platforms}" if platforms else " its default backend"
        text = str(error).strip()
        first = text.splitlines()[0][:200] if text else type(error).__name__
        raise UserError(
            f"JAX cannot start{setting} ({first}): unset JAX_PLATFORMS or set it to cpu; "
            f"for a GPU, install JAX's CUDA backend, {cuda_install()}, on a machine with an "
            "NVIDIA driver"
        ) from None


def jax_setting_problem(error: BaseException) -> str | None:
    """One line for a value JAX refuses in its environment variables (`JAX_ENABLE_X64=maybe`,
    `JAX_COMPILATION_CACHE_MAX_SIZE=abc`: a ValueError from JAX's config module when JAX is
    first imported, a traceback otherwise), else None."""
    frames = traceback.extract_tb(error.__traceback__)
    if not isinstance(error, ValueError) or not frames:
        return None
    if not Path(frames[-1].filename).as_posix().endswith("jax/_src/config.py"):
        return None
    flag = re.search(r"JAX flag (\w+)", str(error))  # named as a flag, set as a variable
    variable = f" (the variable {flag.group(1).upper()})" if flag else ""
    return f"JAX refuses a setting of the environment ({error}){variable}: fix or unset it"


def out_of_memory_problem(error: BaseException) -> str | None:
    """One line for running out of memory (XLA's RESOURCE_EXHAUSTED, NumPy's MemoryError: a
    network, batch or grid too large; a traceback otherwise), else None."""
    xla = isinstance(error, RuntimeError) and "RESOURCE_EXHAUSTED" in str(error)
    if not (xla or isinstance(error, MemoryError)):
        return None
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (
        f"out of memory ({first}): a smaller batch (train.batch_size, eval.batch_size), "
        "network (model.hidden, model.latent_dim), grid (data.n_time_bins) or reading chunk "
        "(data.chunk_rows, data.workers) needs less"
    )


def log_backend() -> None:
    """Log in one line where JAX computes; on the CPU, why (a warning if a GPU was expected)."""
    devices = jax_devices()
    if devices[0].platform != "cpu":
        kinds = sorted({d.device_kind for d in devices})
        log.info("JAX runs on the %s: %d x %s", devices[0].platform.upper(), len(devices), kinds)
        return
    named = set(named_platforms())
    # Expected where the image is CUDA's, JAX_PLATFORMS names a GPU (even without JAX's CUDA
    # plugin: a review found `cuda` on a CPU-only JAX logged at INFO), or a plugin is there and
    # nothing is named.
    expected = (
        _image_variant() == "cuda"
        or bool({"cuda", "gpu"} & named)
        or (bool(_cuda_plugins()) and not named)
    )
    log.log(
        logging.WARNING if expected else logging.INFO,
        "JAX runs on the CPU: %s (details: `plasticc-jax doctor`)",
        cpu_reason(),
    )


def no_gpu_hints(in_container: bool, has_cuda_plugin: bool) -> list[str]:
    """The usual reasons why JAX runs on the CPU where a GPU was expected, likeliest first."""
    hints = [] if has_cuda_plugin else [f"JAX has no CUDA backend: {cuda_install()}"]
    if in_container:
        hints += CONTAINER_HINTS
    return hints + list(DRIVER_HINTS)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> str:
    """The GPUs and driver the NVIDIA driver reports, independent of JAX."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "not found (no NVIDIA driver visible here)"
    try:
        done = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"failed: {error}"
    text = (done.stdout or done.stderr).strip()
    return "; ".join(text.splitlines()) if text else f"exit status {done.returncode}"


def check_matmul(device: Any, size: int = MATMUL_SIZE) -> tuple[bool, float]:
    """Run a jit-compiled float32 matrix product on `device` and compare it with NumPy.

    Args:
        device: a `jax.Device`.
        size: the matrices are (size, size).

    Returns:
        (ok, relative error): the largest absolute difference divided by the largest absolute
        value of the float64 NumPy product.
    """
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    # HIGHEST: on GPUs the default float32 matmul may use TF32, which differs from NumPy at 1e-3.
    product = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
    result = np.asarray(product(jax.device_put(a, device), jax.device_put(b, device)))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    error = float(np.max(np.abs(result - expected)) / np.max(np.abs(expected)))
    return bool(np.isfinite(error) and error <= MATMUL_RTOL), error


def _gpu_init_error() -> str | None:
    """Why JAX has no CUDA backend, in JAX's own words (None if it has one)."""
    import jax

    reason = PLUGIN_ERRORS.cuda_reason()
    if reason:
        return reason
    try:
        jax.devices("cuda")
    except RuntimeError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return None


def doctor(expect_gpu: bool = False) -> int:
    """Print the JAX installation, its backend and devices, and test each device.

    Args:
        expect_gpu: fail unless JAX uses a GPU. Always on inside the cuda variant of the
            project's container (environment `PLASTICC_JAX_CONTAINER=1`), and where
            `JAX_PLATFORMS` names a GPU (`cuda`, `gpu`).

    Returns:
        The exit status: 0 if every device computed correctly (and a GPU was found when
        expected), 1 otherwise.
    """
    variant = _image_variant()
    in_container = variant is not None
    # Why a GPU is expected, if it is (a GPU named in JAX_PLATFORMS too: a review found `cuda`
    # on a CPU-only JAX said OK).
    expected_by = None
    if variant == "cuda":
        expected_by = "the project's container image"
    elif expect_gpu:
        expected_by = "--expect-gpu"
    elif {"cuda", "gpu"} & set(named_platforms()):
        expected_by = "JAX_PLATFORMS names it"
    quiet_plugin_errors()

    import jax
    import jaxlib

    print(f"plasticc-jax {_version('plasticc-jax') or 'not installed'}")
    print(f"python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}")
    plugins = _cuda_plugins()
    listed = ", ".join(f"{name} {v}" for name, v in plugins.items())
    print(f"CUDA plugins: {listed or 'none (CPU-only JAX)'}")
    for name, v in plugins.items():
        if v != jaxlib.__version__:
            # JAX loads a plugin only when its version matches jaxlib's.
            print(f"  warning: {name} {v} differs from jaxlib {jaxlib.__version__}")
    print(f"nvidia-smi: {_nvidia_smi()}")
    print(f"inside the container image: {f'yes ({variant} variant)' if variant else 'no'}")
    for name in JAX_ENV:
        if name in os.environ:
            print(f"{name}={os.environ[name]}")
    # Off when JAX is told so, whatever folder is named (one of the user's own included).
    cache = None if _cache_turned_off(os.environ) else os.environ.get(CACHE_DIR_ENV)
    print(f"compilation cache: {cache or 'off (every run compiles)'}")

    devices = jax_devices()
    backend = jax.default_backend()
    print(f"default backend: {backend}; {len(devices)} device(s)")
    failures = 0
    for device in devices:
        try:
            ok, error = check_matmul(device)
            verdict = f"{'ok' if ok else 'WRONG RESULT'} (relative error {error:.1e})"
        except Exception as exc:  # any failure on a device is the finding, not a crash
            ok, verdict = False, f"FAILED: {type(exc).__name__}: {exc}"
        failures += not ok
        print(
            f"  device {device.id}: platform={device.platform} kind={device.device_kind} "
            f"process={device.process_index}; {MATMUL_SIZE}x{MATMUL_SIZE} jit matmul {verdict}"
        )

    has_gpu = any(d.platform == "gpu" for d in devices)
    if not has_gpu:
        print(f"JAX runs on the CPU: {cpu_reason()}")
    if expected_by is not None and not has_gpu:
        print(f"ERROR: a GPU was expected ({expected_by}) but JAX is running on {backend}.")
        print(f"JAX's CUDA backend says: {_gpu_init_error() or 'available but not default'}")
        print("Usual causes:")
        for hint in no_gpu_hints(in_container, has_cuda_plugin=bool(plugins)):
            print(f"  - {hint}")
        return 1
    if failures:
        print(f"ERROR: {failures} device(s) failed the matmul check.")
        return 1
    print("OK: JAX computes correctly on " + ("the GPU." if has_gpu else "the CPU."))
    return 0
