"""A check that fails is the image's fault: exit status 4 and the failing checks named, not 'environment'."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bootkiln.console import Reporter
from bootkiln.core.runner import Runner
from bootkiln.errors import CommandFailed, Fault, ImageChecksFailed
from bootkiln.verify.imagetest import run_checks

CHECKS = '''
def test_vim_is_installed():
    assert False, "vim is not installed"

def test_sshd_runs():
    pass

class TestUsers:
    def test_alice_exists(self):
        assert False
'''


def pytest_argv(*paths: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *map(str, paths)]


def test_failing_checks_are_the_images_fault_and_are_named(tmp_path: Path) -> None:
    checks = tmp_path / "test_site.py"
    checks.write_text(CHECKS)
    with pytest.raises(ImageChecksFailed) as caught:
        run_checks(Runner(Reporter(quiet_output=True)), pytest_argv(checks), tmp_path)
    error = caught.value
    assert error.fault is Fault.CHECKS
    assert error.fault.exit_code == 4
    assert error.message == "2 checks failed"
    assert error.details() == [f"failed: {checks}::test_vim_is_installed",
                               f"failed: {checks}::TestUsers::test_alice_exists"]


def test_checks_that_pass_raise_nothing(tmp_path: Path) -> None:
    checks = tmp_path / "test_site.py"
    checks.write_text("def test_fine():\n    pass\n")
    run_checks(Runner(Reporter(quiet_output=True)), pytest_argv(checks), tmp_path)


def test_checks_pytest_cannot_run_stay_a_command_failure(tmp_path: Path) -> None:
    """No checks collected (exit 5) or bad arguments (exit 4) are not the image's fault."""
    with pytest.raises(CommandFailed) as caught:
        run_checks(Runner(Reporter(quiet_output=True)), pytest_argv(tmp_path / "absent.py"), tmp_path)
    assert caught.value.status != 1
    assert caught.value.fault is Fault.ENVIRONMENT


def test_every_fault_has_its_own_exit_status() -> None:
    codes = [fault.exit_code for fault in Fault]
    assert len(set(codes)) == len(codes)
    assert Fault.CHECKS.exit_code == 4
