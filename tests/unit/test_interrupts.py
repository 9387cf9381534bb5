"""SIGINT, SIGTERM and SIGHUP unwind a task as Ctrl-C does: cleanups run, one message, status 128 + signal.

The signal cases run in a child Python: before this was handled, SIGTERM killed the process outright,
and it must not take pytest with it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from bootkiln import interrupts
from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter

# A task that makes a "scratch folder", says it is ready, then waits for a signal from the test.
TASK = """
import os, signal, sys, time
from pathlib import Path
from bootkiln import interrupts
from bootkiln.commands.guard import guarded

scratch = Path(sys.argv[1])
interrupts.add_cleanup(lambda: ["container bootkiln-made-as-the-signal-landed"])

def action(reporter):
    with reporter.stage("busybox", "key 0123"):
        scratch.mkdir()
        try:
            print("ready", flush=True)
            time.sleep(30)
        finally:
            scratch.rmdir()

code = guarded(action)
print("handler restored:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
sys.exit(code)
"""


def wait_until_ready(child: subprocess.Popen[str]) -> str:
    """The child's output up to its "ready" line."""
    assert child.stdout is not None
    seen = ""
    while line := child.stdout.readline():
        seen += line
        if line.strip() == "ready":
            return seen
    child.kill()
    raise AssertionError(f"the task ended before it was ready:\n{seen}")


def hangup_by_default() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def all_signals_live() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    hangup_by_default()


def run_task(tmp_path: Path, signum: int,
             preexec: Callable[[], object] | None = None) -> tuple[int, str]:
    scratch = tmp_path / "scratch"
    # A shell started by nohup (as a CI job may be) passes SIGHUP on ignored, and bootkiln rightly keeps
    # it so: start the task as a terminal would, unless the test says otherwise.
    child = subprocess.Popen([sys.executable, "-c", TASK, str(scratch)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, preexec_fn=preexec or hangup_by_default)
    first = wait_until_ready(child)
    child.send_signal(signum)
    output, _ = child.communicate(timeout=30)
    assert not scratch.exists(), "the task's finally block did not run"
    return child.returncode, first + output


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                                (signal.SIGINT, 130)])
def test_signal_unwinds_the_task_and_exits_with_128_plus_the_signal(tmp_path: Path, signum: int,
                                                                     status: int) -> None:
    # SIGINT (pytest run in the background) and SIGHUP (under nohup) may be inherited as ignored:
    # these cases need them live.
    code, output = run_task(tmp_path, signum, preexec=all_signals_live)
    name = signal.Signals(signum).name
    assert code == status, output
    assert f"busybox interrupted by {name} after" in output
    assert "no partial result was kept" in output
    assert "container bootkiln-made-as-the-signal-landed" in output, "registered cleanups run after an interrupt"
    assert "failed" not in output
    assert output.count("interrupted") == 1, output
    assert "handler restored: True" in output
    assert "Traceback" not in output


def test_an_ignored_sighup_stays_ignored(tmp_path: Path) -> None:
    """`nohup` ignores SIGHUP so a closed terminal spares the build: bootkiln must keep it that way."""
    child = subprocess.Popen([sys.executable, "-c", TASK, str(tmp_path / "scratch")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_until_ready(child)
    child.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=1.5)
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=30)
    assert child.returncode == 143, output
    assert "interrupted by SIGTERM" in output


def test_bare_keyboard_interrupt_counts_as_sigint() -> None:
    assert interrupts.as_interrupted(KeyboardInterrupt()).exit_code == 130
    assert interrupts.as_interrupted(KeyboardInterrupt()).signal_name == "SIGINT"
    assert interrupts.Interrupted(signal.SIGHUP).exit_code == 129


def reporter_with_buffer() -> tuple[Reporter, io.StringIO]:
    buffer = io.StringIO()
    return Reporter(console=Console(file=buffer, no_color=True, width=200)), buffer


def test_an_interrupted_stage_is_not_reported_as_failed() -> None:
    reporter, buffer = reporter_with_buffer()
    with pytest.raises(KeyboardInterrupt), reporter.stage("outer"), reporter.stage("busybox"):
        raise interrupts.Interrupted(signal.SIGTERM)
    assert "failed" not in buffer.getvalue()
    assert reporter.interrupted_stage is not None and reporter.interrupted_stage.name == "busybox"
    reporter.interrupted("SIGTERM", "cleaned")
    output = buffer.getvalue()
    assert "busybox interrupted by SIGTERM after" in output and output.count("interrupted") == 1


def test_a_failing_cleanup_is_reported_and_the_status_kept(capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable() -> list[str]:
        raise ConnectionError("engine gone")

    def action(reporter: Reporter) -> None:
        raise interrupts.Interrupted(signal.SIGTERM)

    interrupts.add_cleanup(unreachable)
    try:
        assert guarded(action) == 143
    finally:
        interrupts.remove_cleanup(unreachable)
    output = capsys.readouterr().out
    assert "interrupted by SIGTERM" in output and "engine gone" in output and "lease lapses" in output


def test_signals_are_held_while_the_interrupt_is_reported() -> None:
    before = signal.getsignal(signal.SIGTERM)
    hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # not ignored, whatever started pytest (nohup)
    try:
        with interrupts.signals_deferred() as noted:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, hangup)
    assert noted == [signal.SIGTERM, signal.SIGHUP]
    assert signal.getsignal(signal.SIGTERM) is before


def test_off_the_main_thread_nothing_is_installed() -> None:
    import threading

    seen: list[object] = []

    def body() -> None:
        with interrupts.signals_interrupt():
            seen.append("ran")

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == ["ran"]


# A task that runs a host command (as mmdebstrap or pytest run) which says its PID and waits.
HOST_COMMAND_TASK = """
import sys
from bootkiln.commands.guard import guarded
from bootkiln.core.runner import Host, Runner

command = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]

def action(reporter):
    Runner(reporter).run(command, stage="host", where=Host(passthrough=sys.argv[1] == "passthrough"))

sys.exit(guarded(action))
"""


@pytest.mark.parametrize("mode", ["prefixed", "passthrough"])
def test_a_host_command_does_not_outlive_a_terminated_task(mode: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", HOST_COMMAND_TASK, mode], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    pid = int(line.rpartition("|")[2].strip() if "|" in line else line.strip())
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=30)
    assert child.returncode == 143, line + output
    assert "interrupted by SIGTERM" in output
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
