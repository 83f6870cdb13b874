"""`plasticc-jax doctor`: the report on this machine's JAX, and its verdicts."""

from __future__ import annotations

import jax
import pytest

from plasticc_jax import doctor as doctor_lib
from plasticc_jax.cli import main

HAS_GPU = any(d.platform == "gpu" for d in jax.devices())
needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the fallback to the CPU")


@pytest.fixture(autouse=True)
def outside_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(doctor_lib.CONTAINER_ENV, raising=False)


def test_reports_versions_and_every_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor_lib.doctor(expect_gpu=False) == 0
    out = capsys.readouterr().out
    assert f"jax {jax.__version__}, jaxlib " in out
    assert f"default backend: {jax.default_backend()}; {len(jax.devices())} device(s)" in out
    for device in jax.devices():
        assert f"device {device.id}: platform={device.platform} kind={device.device_kind}" in out
    assert out.count("jit matmul ok") == len(jax.devices())
    assert "ERROR" not in out


def test_matmul_check_agrees_with_numpy() -> None:
    ok, error = doctor_lib.check_matmul(jax.devices()[0], size=64)
    assert ok
    assert 0 <= error <= doctor_lib.MATMUL_RTOL


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
