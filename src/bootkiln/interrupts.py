"""Stopping a build by signal: SIGINT, SIGTERM and SIGHUP all unwind it the way Ctrl-C does.

`timeout`, systemd and CI cancellations send SIGTERM; a closed terminal sends SIGHUP. Python's
default for both is to die at once, which skips every `finally` block and context manager, so a
builder container went on compiling and its volume and scratch folder stayed. Here each of the
three signals raises `Interrupted` in the main thread instead (Python runs signal handlers only
there), and the cleanups that already exist for Ctrl-C run for all of them.

Some things are made before a `try` can guard them (a container created but not yet tracked when
the signal lands). Modules that make such things register a cleanup here; the task layer runs the
cleanups after an interrupt, so nothing depends on where exactly the signal arrived.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Cleanup = Callable[[], list[str]]
_cleanups: list[Cleanup] = []


class Interrupted(KeyboardInterrupt):
    """A signal asked the build to stop. A KeyboardInterrupt, so code that handles Ctrl-C handles it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        # The shell's convention for "ended by signal N": 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
        return 128 + self.signum


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A bare KeyboardInterrupt (Python's own SIGINT handler, or raised by code) counts as SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, object] | None:
    """Install `handler` for the handled signals; the previous handlers, or None off the main thread.

    A signal ignored when we start stays ignored: `nohup` ignores SIGHUP, and a shell ignores SIGINT
    for the jobs it starts in the background, so that a closed terminal or a Ctrl-C spares them.
    """
    if threading.current_thread() is not threading.main_thread():
        return None  # signal.signal works only in the main thread, which is also the only one signals reach
    return {signum: signal.signal(signum, handler) for signum in HANDLED
            if signal.getsignal(signum) is not signal.SIG_IGN}


def _restore(previous: dict[int, object] | None) -> None:
    for signum, handler in (previous or {}).items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise Interrupted; the previous handlers return afterwards.

    A second signal raises again, as a second Ctrl-C does: whatever a cleanup it cuts short leaves
    behind is removed by the registered cleanups, or at exit, or (after SIGKILL) by the next run.
    """
    previous = _install(_raise_interrupted)
    try:
        yield
    finally:
        _restore(previous)


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """While inside, the handled signals are only noted (in the yielded list): a final report is not cut short."""
    noted: list[int] = []
    previous = _install(lambda signum, frame: noted.append(signum))
    try:
        yield noted
    finally:
        _restore(previous)


def add_cleanup(cleanup: Cleanup) -> None:
    """Run `cleanup` after an interrupt; it returns the names of what it removed."""
    if cleanup not in _cleanups:
        _cleanups.append(cleanup)


def remove_cleanup(cleanup: Cleanup) -> None:
    if cleanup in _cleanups:
        _cleanups.remove(cleanup)


def run_cleanups() -> list[str]:
    """Run every registered cleanup; the names of what they removed. A failing cleanup raises after the rest ran."""
    removed: list[str] = []
    failure: Exception | None = None
    for cleanup in list(_cleanups):
        try:
            removed.extend(cleanup())
        except Exception as exc:  # one unreachable engine must not stop the other cleanups
            failure = failure or exc
    if failure is not None:
        raise failure
    return removed
