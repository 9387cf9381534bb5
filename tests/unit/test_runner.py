"""The runner on the host: output lines, failures reported with a copyable command and the tail."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bootkiln.console import Reporter
from bootkiln.core.runner import TAIL_LINES, Builder, Host, Runner
from bootkiln.errors import CommandFailed, EnvironmentProblem, Fault, format_argv


def quiet_runner() -> tuple[Runner, io.StringIO]:
    buffer = io.StringIO()
    return Runner(Reporter(console=Console(file=buffer, width=200))), buffer


def test_failing_command_raises_with_status_tail_and_command() -> None:
    argv = [sys.executable, "-c", "import sys; print('a'); print('b'); sys.exit(4)"]
    runner, _ = quiet_runner()
    with pytest.raises(CommandFailed) as caught:
        runner.run(argv, stage="unit", where=Host(), hint="look at a and b")
    error = caught.value
    assert error.status == 4
    assert error.tail == ["a", "b"]
    assert error.stage == "unit"
    assert error.where == "on the host"
    assert error.argv == argv
    assert error.hint == "look at a and b"
    assert error.fault is Fault.ENVIRONMENT
    assert "exit status 4" in error.message
    details = error.details()
    assert f"command: {shlex.join(argv)}" in details
    assert "exit status: 4" in details
    assert details[-2:] == ["  a", "  b"]


def test_successful_command_returns_its_lines_and_prints_them_prefixed() -> None:
    runner, buffer = quiet_runner()
    lines = runner.run([sys.executable, "-c", "print('one'); print(); print('two\\r')"], stage="unit",
                       where=Host())
    assert lines == ["one", "", "two"]
    printed = buffer.getvalue().splitlines()
    assert printed[0].endswith("unit | one")
    assert printed[2].endswith("unit | two")


def test_stderr_is_part_of_the_tail() -> None:
    runner, _ = quiet_runner()
    with pytest.raises(CommandFailed) as caught:
        runner.run([sys.executable, "-c", "import sys; sys.stderr.write('oops\\n'); sys.exit(1)"], stage="s",
                   where=Host())
    assert caught.value.tail == ["oops"]


def test_tail_keeps_only_the_last_lines() -> None:
    runner, _ = quiet_runner()
    with pytest.raises(CommandFailed) as caught:
        runner.run([sys.executable, "-c", "import sys\nfor i in range(40): print(i)\nsys.exit(9)"], stage="s",
                   where=Host())
    assert caught.value.tail == [str(i) for i in range(40 - TAIL_LINES, 40)]


def test_host_cwd_and_env_are_used(tmp_path: Path) -> None:
    runner, _ = quiet_runner()
    lines = runner.run([sys.executable, "-c", "import os; print(os.getcwd()); print(os.environ.get('BK_X'))"],
                       stage="s", where=Host(cwd=tmp_path, env={"BK_X": "42"}))
    assert lines == [str(tmp_path), "42"]


def test_missing_binary_is_an_environment_problem_with_the_hint() -> None:
    runner, _ = quiet_runner()
    with pytest.raises(EnvironmentProblem) as caught:
        runner.run(["/nonexistent/bootkiln-no-such-tool", "--x"], stage="s", where=Host(),
                   missing_hint="apt-get install no-such-tool")
    assert "/nonexistent/bootkiln-no-such-tool" in caught.value.message
    assert caught.value.hint == "apt-get install no-such-tool"
    with pytest.raises(EnvironmentProblem) as caught:
        runner.run(["bootkiln-no-such-tool"], stage="s", where=Host())
    assert "install bootkiln-no-such-tool" in caught.value.hint


def test_a_container_step_without_an_engine_is_refused() -> None:
    runner, _ = quiet_runner()
    with pytest.raises(EnvironmentProblem, match="without a Docker engine"):
        runner.run(["true"], stage="s", where=Builder(image="bootkiln-builder:x"))


def test_format_argv_quotes_for_a_shell() -> None:
    argv = ["echo", "two words", "it's", "$HOME", "plain"]
    formatted = format_argv(argv)
    assert formatted == "echo 'two words' 'it'\"'\"'s' '$HOME' plain"
    assert shlex.split(formatted) == argv


def test_builder_describes_image_and_network() -> None:
    assert Builder(image="img:1", network="host").describe() == "in builder container img:1, network host"
