"""The command line's own behaviour: help, config overrides, and clean errors for user mistakes."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plasticc_jax import cli
from plasticc_jax.config import Config
from plasticc_jax.errors import UserError

COMMANDS = (
    "download",
    "prepare",
    "train",
    "validate",
    "evaluate",
    "score",
    "replay",
    "doctor",
    "review",
)


def parse(*argv: str) -> Config:
    return cli.build_config(cli.make_parser().parse_args(list(argv)))


def test_every_command_is_registered() -> None:
    parser = cli.make_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: plasticc-jax {command}")
    if command in ("download", "prepare", "train", "evaluate"):
        for flag in ("--config", "--set", "--workdir", "--protocol", "--latent-dim", "--run-dir"):
            assert flag in out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_a_protocol_that_classes_of_ones_own_replace_is_said(caplog) -> None:
    """Found by a review: `--protocol sn --set data.anomaly_classes=64` dropped the protocol
    without a word, and took an unknown one too."""
    with caplog.at_level(logging.WARNING, logger="plasticc_jax"):
        config = parse("train", "--protocol", "nope", "--set", "data.anomaly_classes=64")
        parse("train", "--protocol", "sn")
        parse("train", "--set", "data.anomaly_classes=64")
    assert config.data.anomaly_classes == (64,)
    assert [r.getMessage() for r in caplog.records] == [
        "protocol nope (no such protocol) is not used: data.anomaly_classes sets the classes "
        "(every other training class known, unless data.known_classes says otherwise)"
    ]


def test_the_command_line_starts_without_docstrings() -> None:
    """Found by a type check: its description was the module's docstring, which `python -OO`
    strips: an AttributeError before any option was read."""
    done = subprocess.run(
        [sys.executable, "-OO", "-m", "plasticc_jax", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert " ".join(cli.DESCRIPTION.split()) in " ".join(done.stdout.split())  # wrapped


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plasticc_jax", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"plasticc-jax \S+\n", done.stdout), done.stdout


def test_preset_and_set_overrides() -> None:
    config = parse(
        "train",
        "--config",
        "tiny",
        "--set",
        "train.seed=3",
        "--set",
        "data.anomaly_classes=6,64",
        "--set",
        "eval.umap=true",
        "--set",
        "name=mine",
        "--set",
        "eval.fusion=latent_knn: 3, recon_chi2 :1",  # spaces around a colon, as a preset's
    )
    assert config.name == "mine"
    assert config.eval.fusion == ("latent_knn:3", "recon_chi2:1")
    assert config.train.seed == 3
    assert config.eval.umap is True
    assert config.data.anomaly_classes == (6, 64)
    # resolve() fills the derived fields: known classes without the anomalies, the run directory.
    assert config.data.known_classes and not {6, 64} & set(config.data.known_classes)
    assert config.run_dir == f"runs/mine-{config.data.tag}"
    assert config.model.latent_dim == 4  # untouched fields keep the preset's values


def test_list_settings_lose_no_item() -> None:
    """A list setting is read item by item: `()` and a trailing comma as in Python, and an empty
    item between commas refused (it was dropped: `6,,64` read as two classes)."""
    assert parse("train", "--set", "data.anomaly_classes=6,").data.anomaly_classes == (6,)
    assert parse("train", "--config", "tiny", "--set", "data.stages=()").data.stages == ()
    with pytest.raises(UserError, match="empty item"):
        parse("train", "--set", "data.anomaly_classes=6,,64")
    # Items separated by spaces: refused (found by an audit: `64 32` was read as one item, 6432).
    assert parse("train", "--set", "model.hidden=[64, 32]").model.hidden == (64, 32)
    with pytest.raises(UserError, match=r"model.hidden='64 32': separate the items with commas"):
        parse("train", "--set", "model.hidden=64 32")


def test_each_protocol_gets_its_own_validated_fusion() -> None:
    """`sn`'s fusion may not come from `rare`'s validation, whose folds hold out `sn`'s anomaly
    classes; an explicit fusion is kept, and a protocol of one's own gets `rare`'s."""
    from plasticc_jax.config import VALIDATED_FUSION

    assert parse("train").eval.fusion == VALIDATED_FUSION["rare"]
    assert parse("train", "--protocol", "sn").eval.fusion == VALIDATED_FUSION["sn"]
    assert VALIDATED_FUSION["sn"] != VALIDATED_FUSION["rare"]
    given = parse("train", "--protocol", "sn", "--set", "eval.fusion=latent_knn:1")
    assert given.eval.fusion == ("latent_knn:1",)
    own = parse("train", "--set", "data.anomaly_classes=6,64")
    assert own.eval.fusion == VALIDATED_FUSION["rare"]


def test_a_class_set_is_the_same_in_any_order() -> None:
    """Found by the class-set audit: `64,95` and `95,64` were two datasets and two runs, and `sn`'s
    classes given in another order were a set of one's own, with `rare`'s fusion."""
    from plasticc_jax.config import VALIDATED_FUSION

    one = parse("train", "--set", "data.anomaly_classes=64,95")
    other = parse("train", "--set", "data.anomaly_classes=95,64")
    assert one.data == other.data and one.run_dir == other.run_dir
    assert one.data.anomaly_classes == (64, 95)
    sn = parse(
        "train",
        "--set",
        "data.known_classes=42,62,90",
        "--set",
        "data.anomaly_classes=95,88,67,64,52,15",
    )
    assert sn.data == parse("train", "--protocol", "sn").data
    assert sn.data.tag == "sn" and sn.eval.fusion == VALIDATED_FUSION["sn"]
    rare = parse("train", "--protocol", "sn", "--set", "data.anomaly_classes=95,64,53,6")
    assert rare.data.tag == "rare" and rare.eval.fusion == VALIDATED_FUSION["rare"]
    # A run recorded before (its lists as given, `sn`'s classes as a `rare` set of one's own)
    # has the same classes: `evaluate --run-dir` named them as settings given and not used.
    import dataclasses

    from plasticc_jax.config import differences

    older = dataclasses.replace(one, data=dataclasses.replace(one.data, anomaly_classes=(95, 64)))
    assert differences(one, older, ("data",)) == []
    older_sn = dataclasses.replace(
        sn, data=dataclasses.replace(sn.data, protocol="rare", known_classes=(90, 62, 42))
    )
    assert differences(sn, older_sn, ("data",)) == []
    assert differences(one, sn, ("data",))  # other classes still differ


def test_the_report_names_where_the_fusion_came_from() -> None:
    """Found by an audit: report.md said every fusion was "chosen by the leave-one-known-class-out
    validation", also rare's filled in for classes of one's own (`--set
    data.anomaly_classes=64,95`, validated on none of their folds; evaluate warned) and one
    given in eval.fusion."""
    from plasticc_jax import report
    from plasticc_jax.config import VALIDATED_FUSION, fusion_origin

    assert fusion_origin(parse("train")) == "validated"
    assert fusion_origin(parse("train", "--protocol", "sn")) == "validated"
    assert fusion_origin(parse("train", "--set", "data.anomaly_classes=64,95")) == "rare"
    assert fusion_origin(parse("train", "--set", "data.known_classes=90,42,16")) == "rare"
    assert fusion_origin(parse("train", "--set", "eval.fusion=latent_knn:1")) == "given"
    given = parse(
        "train", "--protocol", "sn", "--set", "eval.fusion=" + ",".join(VALIDATED_FUSION["rare"])
    )
    assert fusion_origin(given) == "given"
    assert "not validated on these classes" in report.FUSION_ORIGINS["rare"]


def test_shortcut_flags() -> None:
    config = parse(
        "train",
        "--protocol",
        "sn",
        "--latent-dim",
        "8",
        "--batch-size",
        "16",
        "--max-epochs",
        "3",
        "--run-dir",
        "runs/x",
    )
    assert config.data.protocol == "sn"
    assert config.model.latent_dim == 8
    assert config.train.batch_size == 16
    assert config.train.max_epochs == 3
    assert config.run_dir == "runs/x"


def test_shortcut_flag_wins_over_set(caplog: pytest.LogCaptureFixture) -> None:
    assert parse("train", "--set", "model.latent_dim=4", "--latent-dim", "8").model.latent_dim == 8
    # Not without a word (an audit: `make ... ARGS="--set data.protocol=sn"` trained rare).
    assert "--latent-dim 8 wins over --set model.latent_dim=4" in caplog.text
    caplog.clear()
    assert parse("train", "--set", "model.latent_dim=08", "--latent-dim", "8").model.latent_dim == 8
    assert "wins over" not in caplog.text  # the same value: nothing to say


def test_presets_resolve_outside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse("prepare", "--config", "tiny").name == "tiny"  # the package's own
    (tmp_path / "configs").mkdir()  # a folder's own presets come first
    (tmp_path / "configs" / "tiny.py").write_text(
        "from plasticc_jax.config import Config\n\n"
        "def get_config():\n    return Config(name='local-tiny')\n"
    )
    assert parse("prepare", "--config", "tiny").name == "local-tiny"
    assert parse("prepare", "--config", "seed").name == "seed"
    (tmp_path / "elsewhere").mkdir()  # the project folder's, named by --workdir
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert parse("prepare", "--config", "tiny", "--workdir", "..").name == "local-tiny"
    assert parse("prepare", "--config", "tiny").name == "tiny"
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "mine.py"
    preset.write_text(
        "from plasticc_jax.config import Config\n\n"
        "def get_config():\n    return Config(name='from-file')\n"
    )
    assert parse("prepare", "--config", str(preset)).name == "from-file"
    (tmp_path / "mine.txt").write_text("")
    with pytest.raises(UserError, match="a preset is a Python file"):
        parse("prepare", "--config", str(tmp_path / "mine.txt"))
    # A preset that fails to load is one line naming the file (and line), not a traceback.
    for text, message in [
        ("def get_config(:\n", r"mine.py, line 1: the preset failed to load \(SyntaxError"),
        ("CONFIG = 1\n", r"mine.py: the preset failed to load \(AttributeError"),
        ("import no_such_module\n", r"mine.py: the preset failed to load \(ModuleNotFoundError"),
        ("import sys\nsys.exit(3)\n", r"mine.py: the preset failed to load \(SystemExit: 3"),
    ]:
        preset.write_text(text)
        with pytest.raises(UserError, match=message):
            parse("prepare", "--config", str(preset))
    # A list where the config has a tuple is one (it failed in training, unhashable: an audit);
    # a value of the wrong type is named.
    preset.write_text(
        "from plasticc_jax.config import Config, ModelConfig\n\n"
        "def get_config():\n    return Config(model=ModelConfig(hidden=[64, 32]))\n"
    )
    config = parse("prepare", "--config", str(preset))
    assert config.model.hidden == (64, 32)
    hash(config.model)
    # A path without its ending, as a folder's name (found by a review: configs/configs/mine.py
    # was looked for).
    assert parse("prepare", "--config", str(preset.with_suffix(""))) == config
    preset.write_text(
        "from plasticc_jax.config import Config, TrainConfig\n\n"
        "def get_config():\n    return Config(train=TrainConfig(max_epochs='5'))\n"
    )
    with pytest.raises(UserError, match=r"mine.py: get_config\(\) returned train.max_epochs='5'"):
        parse("prepare", "--config", str(preset))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "train.nope=1"], "unknown config field 'train.nope'"),
        (["--set", "train.seed"], "is not of the form section.field=value"),
        (["--set", "train.seed=abc"], "train.seed='abc': expected int"),
        (["--set", "train=1"], "is a section"),
        (["--latent-dim", "big"], "model.latent_dim='big': expected int"),
        (["--protocol", "nope"], "unknown protocol 'nope'"),
        (["--config", "nope"], "no config preset 'nope'"),
        # The setting or preset meant, where a name is mistyped (an audit: none was suggested).
        (["--set", "train.max_epoch=3"], "'train.max_epoch' (did you mean train.max_epochs?)"),
        (["--set", "max_epochs=3"], "'max_epochs' (did you mean train.max_epochs?)"),
        (["--set", "trian.seed=3"], "'trian.seed' (did you mean train.seed?)"),
        (["--set", "data.batch_size=3"], "(did you mean train.batch_size or eval.batch_size?)"),
        (["--config", "TINY"], "'TINY' (did you mean tiny?)"),
        (["--config", "nope"], "presets: default, early, gpu, seed, tiny)"),
        # A path's folder's other files were listed as presets (tests/*.py for this one).
        (["--config", "tests/nope.py"], "no such file; give a preset file's path, or the name"),
        (["--config", "tests/nope"], "no config preset 'tests/nope' (looked for tests/nope.py;"),
        (["--set", "name=../../etc"], "name='../../etc': must be a non-empty name without /"),
        (["--set", "data.anomaly_classes=90", "--set", "data.known_classes=90,42"], "both known"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["train", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("plasticc-jax train: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_user_mistake_in_a_real_process() -> None:
    """The installed entry point's path: no traceback, exit status 2, one line on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "plasticc_jax", "evaluate", "--set", "model.depth=3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    # One line of ours, the last (a dependency's import-time warning, on a GPU host, may come
    # before it), and no traceback.
    lines = done.stderr.splitlines()
    assert [line for line in lines if "plasticc" in line.replace("_", "-")] == lines[-1:]
    assert lines[-1].startswith("plasticc-jax evaluate: error: unknown config field 'model.depth'")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("error", "container", "hint"),
    [
        # A data/ that Docker created as root, mounted into a container run as a user.
        (PermissionError(13, "Permission denied", "/project/data/raw"), True, "--user"),
        # The same outside a container: no word of Docker (a review).
        (PermissionError(13, "Permission denied", "/data/raw"), False, "may not read or write"),
        # An output under /proc, where a folder exists but nothing can be created.
        (FileNotFoundError(2, "No such file or directory", "/proc/.tmp-score-1"), False, ""),
    ],
)
def test_a_refused_write_gives_one_line_and_exit_1(
    error: OSError,
    container: bool,
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refused(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "run", refused)
    monkeypatch.setattr(cli, "in_container", lambda: container)
    assert cli.main(["prepare"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"plasticc-jax prepare: error: [Errno {error.errno}]")
    assert error.filename in lines[0] and hint in lines[0]
    assert ("docker" in lines[0]) == container


def test_an_input_this_user_may_not_read_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unreadable = tmp_path / "lightcurves.csv"
    unreadable.write_text("object_id\n")

    def refused(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", str(unreadable))

    monkeypatch.setattr(cli, "run", refused)
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)  # as root it could read it
    assert cli.main(["prepare"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.endswith(f"'{unreadable}' (this user may not read it)")


def test_bad_command_line_syntax_is_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "plasticc-jax train: error: unrecognized arguments: --no-such-flag "
        "(see plasticc-jax train --help)\n"
    )


def test_score_path_and_number_mistakes_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a bad-input audit: each of these was a traceback or was silently accepted.
    All are refused before the run is read (an empty folder stands for it here)."""
    lcs, meta, a_file = tmp_path / "lc.csv", tmp_path / "meta.csv", tmp_path / "a-file"
    for path in (lcs, meta, a_file):
        path.write_text("object_id\n")
    (tmp_path / "run").mkdir()
    score = ["score", "--run", str(tmp_path / "run"), "--lightcurves", str(lcs), "--metadata"]
    cases = [
        ([*score, str(meta), "--output", str(a_file / "x.parquet")], "a-file is a file"),
        ([*score, str(tmp_path), "--output", str(tmp_path / "x.csv")], "is a folder"),
        ([*score, str(meta), "--output", "x.csv", "--as-of", "2460000.5"], "Julian date"),
        ([*score, str(meta), "--output", "x.csv", "--as-of", "-5"], "outside the survey"),
        ([*score, str(meta), "--output", "x.csv", "--as-of", "1e20"], "outside the survey"),
        ([*score, str(meta), "--output", "x.csv", "--as-of", "1e300"], "1e+300 is outside"),
        ([*score, str(meta), "--output", "x.csv", "--threshold-from", "v"], "needs --as-of"),
        (
            [*score, str(meta), "--output", "v/x.csv", "--as-of", "60000", "--threshold-from", "v"],
            "--output v/x.csv lies in --threshold-from v",
        ),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    for flag, value in [("--workers", "0"), ("--as-of", "nan"), ("--part-mb", "-1")]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*score, str(meta), "--output", "x.csv", flag, value])
        assert exit_info.value.code == 2
        assert f"argument {flag}: '{value}': give" in capsys.readouterr().err


def test_settings_a_stage_will_not_use_are_listed() -> None:
    """evaluate keeps the run's data, model and training settings: what it ignores is named."""
    from plasticc_jax.config import differences

    run = parse("evaluate")
    assert differences(parse("evaluate"), run, ("data", "model", "train")) == []
    given = parse("evaluate", "--set", "model.latent_dim=64", "--set", "eval.knn_neighbours=5")
    assert differences(given, run, ("data", "model", "train")) == [
        "model.latent_dim=64 (the run's: 16)"
    ]


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["score", "--as-of", "abc"], ["replay"], ["nope"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "--help)" in err, err


def test_sigterm_is_one_line_like_ctrl_c(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Found by an audit: `docker stop`, `kill` or a batch system's limit ended a run with no
    word (and no cleanup of what Ctrl-C cleans up)."""
    import os
    import signal
    import time

    def killed(args: argparse.Namespace) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "run", killed)
    assert cli.main(["doctor"]) == 143
    assert capsys.readouterr().err.strip() == "plasticc-jax doctor: terminated"
    assert signal.getsignal(signal.SIGTERM) is before  # restored


@pytest.mark.parametrize(
    "signum, said, status", [("SIGTERM", "terminated", 143), ("SIGINT", "interrupted", 130)]
)
def test_a_signal_as_the_program_exits_is_its_one_line(signum: str, said: str, status: int) -> None:
    """After its command, while the process exits (the libraries' exit handlers: here one that
    takes seconds), SIGTERM killed it without a word (-15, seen at the end of `prepare --dask`)
    and Ctrl-C raised where nothing catches it (-2)."""
    import os
    import signal
    import time

    script = "import atexit, sys, time; from plasticc_jax import cli; "
    script += "atexit.register(time.sleep, 30); cli.run = lambda args: print('done', flush=True) "
    script += "or 0; sys.argv = ['plasticc-jax', 'doctor']; sys.exit(cli.main())"
    program = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert program.stdout is not None and program.stdout.readline() == b"done\n"
        time.sleep(0.5)  # into the exit handler's sleep
        os.kill(program.pid, getattr(signal, signum))
        _, err = program.communicate(timeout=20)
    finally:
        program.kill()
    assert (program.returncode, err.decode().strip()) == (status, f"plasticc-jax doctor: {said}")


def test_a_signal_whose_exception_was_swallowed_still_stops_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Found by an audit: Ctrl-C or SIGTERM landing in a garbage-collector callback (JAX's,
    while it compiles) printed "Exception ignored" and the command ran to its end, exit 0."""
    import os
    import signal
    import time

    from plasticc_jax import interrupts

    def swallowed(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except interrupts.Terminated:
            pass  # as Python does to an exception raised in a garbage-collector callback
        return 0

    monkeypatch.setattr(cli, "run", swallowed)
    assert cli.main(["doctor"]) == 143
    assert capsys.readouterr().err.strip() == "plasticc-jax doctor: terminated"
    interrupts.check()  # forgotten once the command ended: a notebook's next call goes on
    monkeypatch.setattr(cli, "run", lambda args: 0)
    assert cli.main(["doctor"]) == 0  # the next command starts with nothing received


def test_a_signal_dropped_in_a_collector_callback_stops_the_command_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Found by an audit: a Ctrl-C in `score`'s first seconds landed in JAX's garbage-collector
    callback, where Python prints and drops it, and the scoring ran to its end before the
    command said "interrupted". The signal is now delivered again and raises in the next step."""
    import signal
    import time

    class Collected:
        def __del__(self) -> None:  # a collector callback: what it raises is dropped
            signal.raise_signal(signal.SIGINT)

    steps = []

    def long_run(args: argparse.Namespace) -> int:
        Collected()  # freed at once
        for step in range(500):
            steps.append(step)
            time.sleep(0.01)
        return 0

    monkeypatch.setattr(cli, "run", long_run)
    assert cli.main(["doctor"]) == 130
    assert capsys.readouterr().err.strip().endswith("plasticc-jax doctor: interrupted")
    # Stopped within moments (a step or two on a quiet machine), not after the run's 500 steps;
    # the bound leaves the redelivering timer thread time on a loaded one (once, 20 steps of 10
    # ms were not enough at a load average of 5 on 2 cores).
    assert len(steps) < 100


def test_dask_reports_of_an_interruption_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an audit: SIGTERM to the whole process group of `score --dask local:2` (systemd,
    a batch system) stopped the workers too, and Dask logged 35-49 lines of warnings and
    tracebacks about them before the one line "terminated"."""
    import signal

    from plasticc_jax import interrupts

    def record(name: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, "Restarting worker", (), None)

    assert cli._not_after_a_signal(record("distributed.nanny"))  # no signal: shown
    monkeypatch.setattr(interrupts, "_received", [signal.SIGTERM])
    assert not cli._not_after_a_signal(record("distributed.nanny"))
    assert not cli._not_after_a_signal(record("asyncio"))
    assert cli._not_after_a_signal(record("plasticc_jax.score"))  # ours: shown


def test_an_import_that_a_ctrl_c_cut_short_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Found with `replay --jobs`: Ctrl-C in a command's first seconds, while it imported JAX's
    Orbax, printed the traceback of tensorstore's "ImportError: initialization failed"."""
    import os
    import signal
    import time

    def cut_short(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None  # as a compiled module does
        return 0

    monkeypatch.setattr(cli, "run", cut_short)
    assert cli.main(["doctor"]) == 130
    assert capsys.readouterr().err.strip() == "plasticc-jax doctor: interrupted"
    # The same error without a signal received is not hidden.
    monkeypatch.setattr(cli, "run", lambda args: (_ for _ in ()).throw(ImportError("no such")))
    with pytest.raises(ImportError, match="no such"):
        cli.main(["doctor"])


def test_what_orbax_reports_after_a_failed_read_is_not_printed() -> None:
    """Found by an audit: after a damaged checkpoint's one-line error, Orbax's background reads
    printed up to 200 tracebacks of its closed event loop (through `sys.unraisablehook`)."""
    import asyncio
    import types

    shown: list[types.SimpleNamespace] = []
    hook = cli._without_checkpoint_aftermath(shown.append)
    for error, where in (
        (RuntimeError("Event loop is closed"), None),
        (Exception("Encountered error while reading array index: (slice(0, 16, 1),)"), None),
        (AttributeError("no attribute '_ssock'"), asyncio.BaseEventLoop.__del__),
        (KeyboardInterrupt(), None),  # raised in JAX's garbage-collector callback, recorded
        (RuntimeError("a failure of our own"), None),
    ):
        hook(types.SimpleNamespace(exc_type=type(error), exc_value=error, object=where))
    assert [str(u.exc_value) for u in shown] == ["a failure of our own"]


def test_orbax_threads_tracebacks_of_a_failed_write_are_not_printed() -> None:
    """Found by an audit: a checkpoint save on a full disk printed about a hundred lines of
    Orbax's background threads' tracebacks before the one-line error (which names the failure);
    a step's damaged `_CHECKPOINT_METADATA`, which nothing reads, an ERROR line."""

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, "f.py", 1, msg, (), None)

    thread = (
        "[process=%d][thread=%s][operation_id=%s] _SignalingThread.run() raised an exception: %s"
    )
    metadata = "Failed to json parse Metadata file: %s, file content: %s, error: %s"
    assert not cli._not_orbax_noise(record("absl", thread))
    assert not cli._not_orbax_noise(record("absl", metadata))
    assert cli._not_orbax_noise(record("absl", "another error of Orbax"))
    assert cli._not_orbax_noise(record("plasticc_jax.train", thread))


def test_a_damaged_compilation_cache_entry_says_what_to_do(monkeypatch, caplog) -> None:
    """Found by an audit: JAX warned of a damaged cache entry on every run, with its own file
    and line and no remedy; `doctor` said the cache was fine."""
    shown: list[str] = []
    show = cli._plain_warnings(lambda message, *args: shown.append(message))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/cache/jax")
    damaged = (
        "Error reading persistent compilation cache entry for 'jit_train_step': error: Error -5 "
        "while decompressing data: incomplete or truncated stream"
    )
    with caplog.at_level(logging.WARNING, logger="plasticc_jax"):
        show(UserWarning(damaged), UserWarning, "compiler.py", 782)
        show("another warning", UserWarning, "x.py", 1)
        # scikit-learn's warning of its own threads' race (seen in the tests' output).
        show(UserWarning(cli._SKLEARN_RACE + " `sklearn.utils.parallel.Parallel` ..."), UserWarning)
    assert shown == ["another warning"]
    assert caplog.messages == [
        "/cache/jax holds a damaged entry (jit_train_step): it is compiled anew on every run; "
        "delete that folder to rebuild the cache (error: Error -5 while decompressing data: "
        "incomplete or truncated stream)"
    ]


def test_a_file_over_the_file_systems_size_limit_is_not_told_to_make_room(monkeypatch):
    """EFBIG (a FAT32 stick's 4 GiB) is no full disk: room does not help, another disk does."""
    import errno
    import resource

    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(cli.resource, "getrlimit", lambda which: unlimited)

    full = cli._file_system_problem(OSError(errno.ENOSPC, "No space left on device", "/x/a"))
    large = cli._file_system_problem(OSError(errno.EFBIG, "File too large", "/x/a"))
    assert full == "No space left on device writing /x/a: make room there and run again"
    assert large.startswith("File too large writing /x/a: that file system takes no file")


def test_a_file_over_this_processs_size_limit_names_that_limit(tmp_path, monkeypatch):
    """Found by a review: under `ulimit -f` (Python ignores SIGXFSZ) a write fails with EFBIG,
    and the message said the file system takes no file this large: write to another one,
    where every file system refuses it alike."""
    import errno
    import resource

    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "try:\n    with open(sys.argv[1], 'wb') as file:\n        file.write(bytes(8192))\n"
        "except OSError as error:\n    print(error.errno)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big")], capture_output=True, text=True
    )
    assert out.stdout.strip() == str(errno.EFBIG)  # what such a write gives
    monkeypatch.setattr(cli.resource, "getrlimit", lambda which: (4096, resource.RLIM_INFINITY))
    large = cli._file_system_problem(OSError(errno.EFBIG, "File too large", "/x/a"))
    assert large == (
        "File too large writing /x/a: this process may write no file over 4096 bytes (the "
        "shell's `ulimit -f`): raise that limit and run again"
    )


def test_anomalies_of_a_kind_without_known_classes_are_named() -> None:
    """Found by an audit: with every galactic class an anomaly (`--set
    data.anomaly_classes=6,16,53,65,92`) the galactic objects were scored against the
    extragalactic known ones and evaluate reported a mean class AUROC of 1.000 without a word:
    the kind alone told them apart. Evaluate now warns naming these classes."""
    from plasticc_jax.config import alone_in_their_kind

    assert alone_in_their_kind(parse("train").data) == ()
    assert alone_in_their_kind(parse("train", "--protocol", "sn").data) == ()
    galactic = parse("train", "--set", "data.anomaly_classes=6,16,53,65,92")
    assert alone_in_their_kind(galactic.data) == (6, 16, 53, 65, 92)
    narrowed = parse(
        "train", "--set", "data.known_classes=90,42", "--set", "data.anomaly_classes=64,16"
    )
    assert alone_in_their_kind(narrowed.data) == (16,)
    assert alone_in_their_kind(parse("train", "--set", "data.known_classes=90,16").data) == ()


def test_validate_names_a_known_class_alone_in_its_kind() -> None:
    """Found by an audit: `validate --set data.known_classes=90,42,16` held EB out against SN Ia
    and SN II alone (AUROC 1.000 by the kind) without a word, and that fold weighs in the mean."""
    from plasticc_jax import validate

    assert validate.lone_known_classes(parse("train")) == []
    assert validate.lone_known_classes(parse("train", "--protocol", "sn")) == []
    narrowed = parse("train", "--set", "data.known_classes=90,42,16")
    assert validate.lone_known_classes(narrowed) == [16]


def test_the_unraisable_hook_is_wrapped_once_per_process() -> None:
    """Found by a review of the tests: every in-process `cli.main` wrapped the hook again."""
    before = sys.unraisablehook
    try:
        cli.setup_logging(False)
        first = sys.unraisablehook
        cli.setup_logging(False)
        assert sys.unraisablehook is first
    finally:
        sys.unraisablehook = before


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("evaluate", "does not exist (no trained run there)"),
        ("train", "no prepared dataset at"),
        ("validate", "no prepared dataset at"),
    ],
)
def test_a_stage_without_its_input_leaves_nothing_behind(
    command: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a review of the installed package: they created runs/ and a lock file there."""
    assert cli.main([command, "--config", "tiny", "--workdir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
