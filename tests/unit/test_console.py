"""Error reports and exit codes: whose fault, what happened, the details, and what to try."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter
from bootkiln.errors import BootkilnError, CommandFailed, EnvironmentProblem, Fault, InputError, InternalError


def recording_reporter() -> tuple[Reporter, io.StringIO]:
    buffer = io.StringIO()
    return Reporter(console=Console(file=buffer, width=200)), buffer


def test_error_prints_fault_message_and_hint() -> None:
    reporter, buffer = recording_reporter()
    reporter.error(InputError("profile.toml: key 'debian.suitee': unknown key", hint="fix the key"))
    assert buffer.getvalue().splitlines() == [
        "error (bad input): profile.toml: key 'debian.suitee': unknown key",
        "hint: fix the key",
    ]


def test_error_prints_details_between_message_and_hint() -> None:
    reporter, buffer = recording_reporter()
    error = CommandFailed(stage="rootfs", where="on the host", argv=["mmdebstrap", "two words"], status=2,
                          tail=["E: boom"], hint="check the mirror")
    reporter.error(error)
    assert buffer.getvalue().splitlines() == [
        "error (environment): stage rootfs: command failed with exit status 2 (on the host)",
        "  command: mmdebstrap 'two words'",
        "  exit status: 2",
        "  last 1 lines of output:",
        "    E: boom",
        "hint: check the mirror",
    ]


def test_error_without_hint_prints_no_hint_line() -> None:
    reporter, buffer = recording_reporter()
    reporter.error(InternalError("unexpected state"))
    assert buffer.getvalue().splitlines() == ["error (internal error (a bootkiln bug)): unexpected state"]


def test_markup_in_messages_is_printed_literally() -> None:
    reporter, buffer = recording_reporter()
    reporter.error(EnvironmentProblem("pulling [bold]image[/bold] failed", hint="[red]retry[/red]"))
    output = buffer.getvalue()
    assert "[bold]image[/bold]" in output
    assert "[red]retry[/red]" in output


def test_fault_exit_codes() -> None:
    assert [fault.exit_code for fault in (Fault.INPUT, Fault.ENVIRONMENT, Fault.INTERNAL)] == [2, 3, 70]
    assert BootkilnError("x").fault is Fault.INTERNAL


def test_stage_records_timing_and_failure() -> None:
    reporter, buffer = recording_reporter()
    with reporter.stage("rootfs", "key abc") as progress:
        progress.cached = True
        progress.note = "note"
    with pytest.raises(ValueError, match="bad"), reporter.stage("broken"):
        raise ValueError("bad")
    assert [(t.name, t.cached) for t in reporter.timings] == [("rootfs", True)]
    output = buffer.getvalue()
    assert "rootfs from cache in" in output
    assert "broken failed after" in output


@pytest.mark.parametrize(("error", "code"), [(InputError("i"), 2), (EnvironmentProblem("e"), 3),
                                             (InternalError("b"), 70)])
def test_guarded_maps_faults_to_exit_codes(error: BootkilnError, code: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def action(reporter: Reporter) -> None:
        raise error

    assert guarded(action) == code
    assert f"): {error.message}" in capsys.readouterr().out


def test_guarded_returns_zero_on_success_and_130_on_interrupt(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(reporter: Reporter) -> None:
        raise KeyboardInterrupt

    assert guarded(lambda reporter: None) == 0
    assert guarded(interrupted) == 130
    assert "interrupted" in capsys.readouterr().out
