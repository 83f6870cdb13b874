"""`plasticc-jax doctor`: the report on this machine's JAX, and its verdicts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from plasticc_jax import doctor as doctor_lib
from plasticc_jax.cli import main

HAS_GPU = any(d.platform == "gpu" for d in jax.devices())
needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the fallback to the CPU")


@pytest.fixture(autouse=True)
def outside_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the container's variables themselves (the suite may run in the image)."""
    monkeypatch.delenv(doctor_lib.CONTAINER_ENV, raising=False)
    monkeypatch.delenv(doctor_lib.VARIANT_ENV, raising=False)


def test_reports_versions_and_every_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor_lib.doctor(expect_gpu=False) == 0
    out = capsys.readouterr().out
    assert f"jax {jax.__version__}, jaxlib " in out
    assert f"default backend: {jax.default_backend()}; {len(jax.devices())} device(s)" in out
    for device in jax.devices():
        assert f"device {device.id}: platform={device.platform} kind={device.device_kind}" in out
    assert out.count("jit matmul ok") == len(jax.devices())
    assert "ERROR" not in out


def test_matmul_check_agrees_with_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, error = doctor_lib.check_matmul(jax.devices()[0], size=64)
    assert ok
    assert 0 <= error <= doctor_lib.MATMUL_RTOL
    # A device whose products are off is caught (found by a review: nothing showed the check
    # compares with anything).
    matmul = jax.numpy.matmul
    monkeypatch.setattr(jax.numpy, "matmul", lambda x, y, **kw: matmul(x, y, **kw) * 1.001)
    ok, error = doctor_lib.check_matmul(jax.devices()[0], size=64)
    assert not ok and error == pytest.approx(0.001, rel=0.01)


@needs_no_gpu
def test_expected_gpu_on_cpu_fails_with_causes(capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor_lib.doctor(expect_gpu=True) == 1
    out = capsys.readouterr().out
    assert "ERROR: a GPU was expected (--expect-gpu) but JAX is running on cpu" in out
    assert "JAX's CUDA backend says:" in out
    assert "driver" in out
    assert "JAX_PLATFORMS" in out
    # The devices are still reported and tested before the verdict.
    assert "platform=cpu" in out and "jit matmul ok" in out


@needs_no_gpu
def test_inside_container_a_gpu_is_always_expected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(doctor_lib.CONTAINER_ENV, "1")
    assert doctor_lib.doctor(expect_gpu=False) == 1
    out = capsys.readouterr().out
    assert "inside the container image: yes" in out
    assert "(the project's container image)" in out
    assert "--gpus all" in out
    assert "NVIDIA Container Toolkit" in out


@needs_no_gpu
def test_a_gpu_named_in_jax_platforms_is_expected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog
) -> None:
    """Found by a review: `JAX_PLATFORMS=cuda` on a CPU-only JAX ran on the CPU, `doctor` said
    OK and the stages logged it at INFO. (JAX's devices are already started: the variable is
    read here for what the user asked.)"""
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert doctor_lib.doctor(expect_gpu=False) == 1
    assert "a GPU was expected (JAX_PLATFORMS names it)" in capsys.readouterr().out
    with caplog.at_level("WARNING", logger="plasticc_jax.doctor"):
        doctor_lib.log_backend()
    assert "JAX runs on the CPU" in caplog.text


def test_hints_name_the_missing_cuda_wheels_only_when_missing() -> None:
    without = doctor_lib.no_gpu_hints(in_container=False, has_cuda_plugin=False)
    assert any("jax[cuda12]" in hint for hint in without)
    assert not any("--gpus all" in hint for hint in without)
    inside = doctor_lib.no_gpu_hints(in_container=True, has_cuda_plugin=True)
    assert not any("jax[cuda12]" in hint for hint in inside)
    assert any("--gpus all" in hint for hint in inside)
    assert any("driver" in hint for hint in inside)


@pytest.mark.parametrize(
    ("fake", "verdict"),
    [
        (lambda device: (False, 0.5), "WRONG RESULT (relative error 5.0e-01)"),
        (lambda device: 1 / 0, "FAILED: ZeroDivisionError"),
    ],
)
def test_a_device_that_computes_wrongly_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake, verdict: str
) -> None:
    monkeypatch.setattr(doctor_lib, "check_matmul", fake)
    assert doctor_lib.doctor(expect_gpu=False) == 1
    out = capsys.readouterr().out
    assert verdict in out
    assert f"ERROR: {len(jax.devices())} device(s) failed the matmul check." in out


def test_cli_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    assert "OK: JAX computes correctly" in capsys.readouterr().out


@needs_no_gpu
def test_cli_expect_gpu_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    # The entry point passes main's status to the shell (tests/test_cli.py, in a real process).
    assert main(["doctor", "--expect-gpu"]) == 1
    assert "a GPU was expected" in capsys.readouterr().out


def _log_plugin_failure() -> None:
    """What JAX does when the CUDA plugin cannot start (no GPU): logger.exception."""
    try:
        raise RuntimeError("jaxlib/cuda/versions_helpers.cc:113: operation cuInit(0) failed")
    except RuntimeError:
        logging.getLogger(doctor_lib.PLUGIN_LOGGER).exception(
            "Jax plugin configuration error: Exception when calling %s.initialize()",
            "jax_plugins.xla_cuda12",
        )


def test_a_cuda_plugin_that_cannot_start_becomes_one_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(doctor_lib.PLUGIN_ERRORS, "reasons", {})
    doctor_lib.quiet_plugin_errors()
    doctor_lib.quiet_plugin_errors()  # idempotent: one filter
    logger = logging.getLogger(doctor_lib.PLUGIN_LOGGER)
    assert logger.filters.count(doctor_lib.PLUGIN_ERRORS) == 1
    with caplog.at_level(logging.DEBUG):
        _log_plugin_failure()
        logger.warning("another warning")
    # The failure is kept as a reason and its traceback only at DEBUG; other records pass.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)
    assert "another warning" in caplog.text
    reason = "RuntimeError: jaxlib/cuda/versions_helpers.cc:113: operation cuInit(0) failed"
    assert doctor_lib.PLUGIN_ERRORS.cuda_reason() == reason

    # With the plugin installed, the reason for the CPU names the GPU that is missing...
    monkeypatch.setattr(doctor_lib, "_cuda_plugins", lambda: {"jax-cuda12-plugin": "0.12.0"})
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(doctor_lib, "_gpu_visible", lambda: False)
    assert doctor_lib.cpu_reason() == "no NVIDIA GPU is visible here (no /dev/nvidia*)"
    monkeypatch.setenv(doctor_lib.CONTAINER_ENV, "1")
    assert "--gpus all" in doctor_lib.cpu_reason()
    # ... or the plugin's own words when a GPU is there but CUDA did not start.
    monkeypatch.setattr(doctor_lib, "_gpu_visible", lambda: True)
    assert reason in doctor_lib.cpu_reason()


def test_cpu_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_lib, "_cuda_plugins", dict)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert "CPU-only install" in doctor_lib.cpu_reason()
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert doctor_lib.cpu_reason() == "JAX_PLATFORMS=cpu selects it"
    monkeypatch.setenv(doctor_lib.CONTAINER_ENV, "1")
    monkeypatch.setenv(doctor_lib.VARIANT_ENV, "cpu")
    assert "cpu variant" in doctor_lib.cpu_reason()


@needs_no_gpu
def test_cpu_variant_of_the_image_runs_on_the_cpu_by_design(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(doctor_lib.CONTAINER_ENV, "1")
    monkeypatch.setenv(doctor_lib.VARIANT_ENV, "cpu")
    assert doctor_lib.doctor(expect_gpu=False) == 0
    out = capsys.readouterr().out
    assert "inside the container image: yes (cpu variant)" in out
    assert "JAX runs on the CPU: this is the image's cpu variant" in out
    assert "OK: JAX computes correctly on the CPU." in out


@pytest.mark.slow
@needs_no_gpu
def test_cli_prints_no_traceback_and_each_jax_warning_once() -> None:
    """The CLI's logging: a CUDA plugin failure is one line of reason, JAX warnings print once."""
    code = (
        "import logging, sys\n"
        "from plasticc_jax import cli, doctor\n"
        "cli.setup_logging(verbose=False)\n"
        "import jax\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_doctor import _log_plugin_failure\n"
        "_log_plugin_failure()\n"
        "logging.getLogger('jax._src.xla_bridge').warning('a JAX warning')\n"
        "logging.getLogger('jax._src.xla_bridge').info('a JAX info line')\n"
        "doctor.log_backend()\n"
    )
    container = {doctor_lib.CONTAINER_ENV, doctor_lib.VARIANT_ENV}
    env = {k: v for k, v in os.environ.items() if k not in container}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=doctor_lib.__file__.rsplit("/plasticc_jax/", 1)[0],
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "cuInit" not in done.stderr
    assert done.stderr.count("a JAX warning") == 1, done.stderr
    assert "a JAX info line" not in done.stderr
    assert "JAX runs on the CPU: " in done.stderr


def test_jax_platforms_of_accelerators_alone_keep_the_cpu() -> None:
    """`JAX_PLATFORMS=cuda` left JAX no CPU, where the Gaussian-process features are fitted:
    prepare failed with JAX's traceback (seen on a GPU machine)."""
    for given, kept in (
        ("cuda", "cuda,cpu"),
        ("gpu", "gpu,cpu"),
        (" cuda , tpu", "cuda,tpu,cpu"),
        ("cuda,cpu", "cuda,cpu"),
        ("cpu", "cpu"),
        ("", ""),
    ):
        environ = {"JAX_PLATFORMS": given}
        doctor_lib.keep_cpu_platform(environ)
        assert environ["JAX_PLATFORMS"] == (kept or given), given
    environ = {}
    doctor_lib.keep_cpu_platform(environ)
    assert environ == {}


def test_compilation_cache_goes_to_the_user_cache_unless_set_or_off(tmp_path) -> None:
    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    folder = doctor_lib.use_compilation_cache(environ)
    assert folder == tmp_path / "plasticc_jax" / "jax" and folder.is_dir()
    assert environ[doctor_lib.CACHE_DIR_ENV] == str(folder)
    assert environ[doctor_lib.CACHE_SIZE_ENV] == str(doctor_lib.CACHE_MAX_BYTES)
    for chosen in (
        {doctor_lib.CACHE_DIR_ENV: "/mine"},
        {"JAX_ENABLE_COMPILATION_CACHE": "false"},
        {"JAX_ENABLE_COMPILATION_CACHE": "No"},  # JAX's false values, not only 0 and false
        {"JAX_ENABLE_COMPILATION_CACHE": "off"},
    ):
        environ = {"XDG_CACHE_HOME": str(tmp_path), **chosen}
        assert doctor_lib.use_compilation_cache(environ) is None
        assert environ == {"XDG_CACHE_HOME": str(tmp_path), **chosen}
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache folder cannot be made under a file
    environ = {"XDG_CACHE_HOME": str(blocked)}
    assert doctor_lib.use_compilation_cache(environ) is None
    assert doctor_lib.CACHE_DIR_ENV not in environ


def test_a_cache_folder_of_ones_own_that_is_a_file_turns_the_cache_off(tmp_path, caplog) -> None:
    """Found by an audit: JAX_COMPILATION_CACHE_DIR naming a file made JAX warn of a damaged entry
    at every compile, and the advice was to delete that folder: the user's file."""
    mine = tmp_path / "a-file"
    mine.write_text("mine")
    environ = {doctor_lib.CACHE_DIR_ENV: str(mine)}
    with caplog.at_level("WARNING"):
        assert doctor_lib.use_compilation_cache(environ) is None
    assert environ["JAX_ENABLE_COMPILATION_CACHE"] == "false" and mine.read_text() == "mine"
    assert "is a file, not a folder: compiling without the cache" in caplog.text


def test_doctor_reports_a_cache_turned_off_as_off(capsys, monkeypatch) -> None:
    """JAX_ENABLE_COMPILATION_CACHE=off (or false) with a folder of one's own: JAX uses no
    cache, yet doctor named the folder."""
    monkeypatch.setenv(doctor_lib.CACHE_DIR_ENV, "/mine")
    for off in ("off", "false"):
        monkeypatch.setenv("JAX_ENABLE_COMPILATION_CACHE", off)
        assert doctor_lib.doctor(expect_gpu=False) == 0
        assert "compilation cache: off (every run compiles)" in capsys.readouterr().out
    monkeypatch.setenv("JAX_ENABLE_COMPILATION_CACHE", "true")
    assert doctor_lib.doctor(expect_gpu=False) == 0
    assert "compilation cache: /mine" in capsys.readouterr().out


def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch) -> None:
    """Found by an audit: XDG_CACHE_HOME=relcache made a cache folder in every folder a command
    ran from; the XDG spec calls a relative path invalid, to be ignored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = doctor_lib.use_compilation_cache({"XDG_CACHE_HOME": "relcache"})
    assert folder == tmp_path / "home" / ".cache" / "plasticc_jax" / "jax"
    assert not (tmp_path / "relcache").exists()


def test_no_home_folder_is_no_cache(monkeypatch) -> None:
    """Found by an audit: without HOME, for a user without a passwd entry (`docker run --user`),
    Path.home() raised and every command, doctor too, ended in a traceback."""

    def no_home() -> None:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(doctor_lib.Path, "home", staticmethod(no_home))
    environ: dict[str, str] = {}
    assert doctor_lib.use_compilation_cache(environ) is None
    assert environ == {}


def test_an_unwritable_cache_folder_is_not_used(tmp_path, monkeypatch) -> None:
    """Found by an audit: an existing cache folder this user may not write made JAX warn at
    every compile (root writes anywhere, so the refusal is simulated)."""
    monkeypatch.setattr(doctor_lib.os, "access", lambda path, mode: False)
    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    assert doctor_lib.use_compilation_cache(environ) is None
    assert doctor_lib.CACHE_DIR_ENV not in environ


@pytest.mark.parametrize("raised", [AssertionError(), RuntimeError("Unable to initialize backend")])
def test_a_backend_jax_cannot_start_is_one_line(
    raised: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an audit: JAX_PLATFORMS=cuda on a machine without one was JAX's traceback (an
    AssertionError; RuntimeError for an unknown name), in doctor and in every stage."""

    def fail() -> None:
        raise raised

    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setattr(jax, "devices", fail)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: JAX cannot start JAX_PLATFORMS=cuda" in err and "set it to cpu" in err


@pytest.mark.parametrize(
    ("variable", "value", "reader"),
    [
        ("JAX_ENABLE_X64", "maybe", "bool_env"),
        ("JAX_COMPILATION_CACHE_MAX_SIZE", "abc", "int_env"),
    ],
)
def test_a_jax_setting_jax_refuses_is_one_line(
    variable: str,
    value: str,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by an audit: a JAX_* variable JAX cannot read was a traceback from `import jax`.
    JAX is imported already here, so its own reader of the variable raises, as at import."""
    from jax._src import config as jax_config

    def read_setting() -> None:
        getattr(jax_config, reader)(variable, 0)

    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(jax, "devices", read_setting)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "error: JAX refuses a setting of the environment" in err and value in err


def test_out_of_memory_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an audit: a network too large for the device (`--set model.latent_dim=
    100000000000`) was XLA's RESOURCE_EXHAUSTED traceback. The allocation here is XLA's own."""
    import jax.numpy as jnp

    from plasticc_jax import cli

    def allocate_too_much(args: object) -> int:
        jnp.zeros(10**14, dtype=jnp.float32).block_until_ready()
        return 0

    def allocate_too_much_numpy(args: object) -> int:
        np.zeros(10**14, dtype=np.float64)  # NumPy's MemoryError (a grid too fine, say)
        return 0

    for run, what in (
        (allocate_too_much, "RESOURCE_EXHAUSTED"),
        (allocate_too_much_numpy, "Unable"),
    ):
        monkeypatch.setattr(cli, "run", run)
        assert main(["doctor"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert f"error: out of memory ({what}" in err and "model.latent_dim" in err


def test_xla_flags_that_xla_would_stop_on_are_one_line(tmp_path) -> None:
    """Found by a review: `XLA_FLAGS=garbage` ended every command in XLA's own fatal line."""
    doctor_lib.check_xla_flags({"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"})
    flags = tmp_path / "flags.txt"
    flags.write_text("--xla_cpu_multi_thread_eigen=false\n")
    doctor_lib.check_xla_flags({"XLA_FLAGS": str(flags)})  # a file of flags
    with pytest.raises(doctor_lib.UserError, match=r"XLA_FLAGS='garbage' is neither flags"):
        doctor_lib.check_xla_flags({"XLA_FLAGS": "garbage"})
